"""The heuristic captioner on synthetic videos: exact clip captions, summaries and filter decisions."""

from __future__ import annotations

import random

import pytest
from testkit.generation import SCENES, selected_record, write_scenes

from temple_core.generation.filters import drop_reason
from temple_core.generation.plan import video_rng
from temple_core.plugins import get_plugin_manager
from temple_core.stages.generate import PairFilters

CAPTIONS = [
    "a bright red scene with no visible motion, from 0.0 s to 1.0 s",
    "a dark blue scene with no visible motion, from 1.0 s to 2.0 s",
    "a bright green scene with a lot of motion, from 2.0 s to 3.0 s",
    "a bright yellow scene with some motion, from 3.0 s to 4.0 s",
    "a bright magenta scene with no visible motion, from 4.0 s to 5.0 s",
    "a bright cyan scene with a lot of motion, from 5.0 s to 6.0 s",
]
CHOSEN = (
    "The video shows six scenes. First, " + CAPTIONS[0] + ". Then, " + CAPTIONS[1] + ". Then, " + CAPTIONS[2]
    + ". Then, " + CAPTIONS[3] + ". Then, " + CAPTIONS[4] + ". Finally, " + CAPTIONS[5] + "."
)
DIFFICULTIES = [16, 8, 4, 2]


@pytest.fixture(scope="module")
def plugins():
    return get_plugin_manager()


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    scenes = list(SCENES)
    path = write_scenes(tmp_path_factory.mktemp("videos") / "six.mp4", scenes)
    return selected_record("six", path, scenes)


def _perturbations(plugins):
    return [(name, plugins.build("perturbations", name)) for name in ("drop", "shuffle", "reverse")]


def test_clip_captions_and_chosen(plugins, video):
    captioner = plugins.build("caption_generators", "heuristic")
    assert captioner.needs_backend is False
    [record] = captioner.generate([video], None, _perturbations(plugins), DIFFICULTIES, [video_rng(0, "six", "perturb")])
    assert record.clip_captions == CAPTIONS
    assert record.chosen == CHOSEN
    assert record.generator == "heuristic"
    assert record.video_path == video.path


def test_rejected_follow_the_perturbations(plugins, video):
    captioner = plugins.build("caption_generators", "heuristic")
    [record] = captioner.generate([video], None, _perturbations(plugins), DIFFICULTIES, [video_rng(0, "six", "perturb")])
    # The same perturbations on the same stream, called directly, give the same kept indices.
    rng = video_rng(0, "six", "perturb")
    expected = [
        (name, r, perturbation(list(range(6)), r, rng).kept_indices)
        for name, perturbation in _perturbations(plugins)
        for r in DIFFICULTIES
    ]
    got = [(x["perturbation"], x["difficulty"], x["kept_indices"]) for x in record.rejected]
    assert got == expected
    for x in record.rejected:
        assert x["text"] == captioner.summarize([CAPTIONS[i] for i in x["kept_indices"]])
    by_key = {(x["perturbation"], x["difficulty"]): x for x in record.rejected}
    # drop keeps max(1, 6 // r) clips; reverse is deterministic: groups of max(1, 6 // r), reversed.
    assert [len(by_key["drop", r]["kept_indices"]) for r in DIFFICULTIES] == [1, 1, 1, 3]
    assert by_key["reverse", 16]["kept_indices"] == [5, 4, 3, 2, 1, 0]
    assert by_key["reverse", 2]["kept_indices"] == [3, 4, 5, 0, 1, 2]
    assert by_key["reverse", 2]["text"] == (
        "The video shows six scenes. First, " + CAPTIONS[3] + ". Then, " + CAPTIONS[4] + ". Then, " + CAPTIONS[5]
        + ". Then, " + CAPTIONS[0] + ". Then, " + CAPTIONS[1] + ". Finally, " + CAPTIONS[2] + "."
    )
    assert by_key["drop", 16]["text"] == f"The video shows a single scene: {CAPTIONS[by_key['drop', 16]['kept_indices'][0]]}."


def test_filter_decisions_on_heuristic_texts(plugins):
    summarize = plugins.build("caption_generators", "heuristic").summarize
    filters = PairFilters()
    # Dropping clips shortens the text: kept.
    assert drop_reason(CHOSEN, summarize(CAPTIONS[:3]), "drop", filters) is None
    # Keeping every clip (r = 1) repeats the chosen text: contained.
    assert drop_reason(CHOSEN, summarize(CAPTIONS), "drop", filters) == "contained"
    # A shuffle that happens to keep the order is the chosen text again.
    assert drop_reason(CHOSEN, summarize(CAPTIONS), "shuffle", filters) == "contained"
    # Reordering keeps the length: within the 1.5x ratio.
    assert drop_reason(CHOSEN, summarize(CAPTIONS[::-1]), "reverse", filters) is None
    # A reordering over fewer clips (a third-party perturbation) is far shorter: length ratio.
    assert drop_reason(CHOSEN, summarize(CAPTIONS[1::-1]), "shuffle", filters) == "length_ratio"
    # The drop filter wants the chosen text strictly longer.
    longer = summarize(CAPTIONS + ["a bright red scene with no visible motion, from 6.0 s to 7.0 s"])
    assert drop_reason(CHOSEN, longer, "drop", filters) == "not_longer"
    assert drop_reason(CHOSEN, "  ", "drop", filters) == "empty"
    # Each filter can be switched off from the recipe.
    off = PairFilters(drop_contained=False, longer_chosen=[], length_ratio=[])
    assert drop_reason(CHOSEN, summarize(CAPTIONS), "drop", off) is None
    assert drop_reason(CHOSEN, summarize(CAPTIONS[:1]), "shuffle", off) is None


def test_one_rng_per_video_independent_of_batch(plugins, tmp_path):
    scenes = list(SCENES)[:4]
    a = selected_record("a", write_scenes(tmp_path / "a.mp4", scenes), scenes)
    b = selected_record("b", write_scenes(tmp_path / "b.mp4", scenes[::-1]), scenes[::-1])
    captioner = plugins.build("caption_generators", "heuristic")
    both = captioner.generate([a, b], None, _perturbations(plugins), DIFFICULTIES, [video_rng(0, v, "perturb") for v in "ab"])
    alone = captioner.generate([b], None, _perturbations(plugins), DIFFICULTIES, [video_rng(0, "b", "perturb")])
    assert both[1] == alone[0]
    # A single shared stream is accepted too (callers outside the stage).
    assert len(captioner.generate([a], None, _perturbations(plugins), [2], random.Random(1))) == 1


def test_options_validate(plugins):
    options_class = type(plugins.build("caption_generators", "heuristic").options)
    with pytest.raises(ValueError, match="dark_below"):
        options_class(dark_below=0.9, bright_above=0.5)


def test_dark_above_bright_is_refused_by_validate(tmp_path):
    """Found by the recipe fuzz: the thresholds' cross-check ran only when the run started."""
    import subprocess, sys

    recipe = tmp_path / "r.yaml"
    recipe.write_text("run_dir: run\nvideos: {paths: [a.mp4]}\ngenerate:\n  captioner: {name: heuristic, dark_below: 0.9}\n")
    done = subprocess.run([sys.executable, "-m", "temple_core.cli", "validate", str(recipe)], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == ["temple: error: generate.captioner: dark_below (0.9) must not exceed bright_above (0.65)"]
