"""The generate stage with the heuristic captioner: files, filters, summary, resume, errors."""

from __future__ import annotations

import pytest
from testkit.generation import selected_run

from temple_core.errors import TempleError
from temple_core.plugins import get_plugin_manager
from temple_core.generation.prompts import PAIR_PROMPTS
from temple_core.recipe import recipe_from_data
from temple_core.records import CaptionRecord, Pair
from temple_core.stages.runner import StageContext, run_stages
from temple_core.store import read_jsonl

VIDEOS = {
    "v1": ["red_still", "dark_blue", "green_busy", "yellow_some", "magenta_still", "cyan_busy"],
    "v2": ["cyan_busy", "yellow_some", "red_still", "dark_blue"],
    "v3": ["green_busy", "magenta_still", "dark_blue", "red_still", "yellow_some"],
}


def _recipe(run_dir, **generate):
    section = {"captioner": {"name": "heuristic"}, "videos_per_batch": 2, **generate}
    return recipe_from_data({"run_dir": str(run_dir), "seed": 3, "generate": section}, plugins=get_plugin_manager())


@pytest.fixture(scope="module")
def selected(tmp_path_factory):
    return selected_run(tmp_path_factory.mktemp("gen"), VIDEOS)


def test_stage_writes_captions_and_filtered_pairs(selected, tmp_path):
    run_dir, records = selected
    [result] = run_stages(_recipe(run_dir), get_plugin_manager(), stages=["generate"], progress=False, log=lambda *_: None)
    captions = [CaptionRecord.from_dict(d) for d in read_jsonl(run_dir / "generate" / "captions.jsonl")]
    pairs = [Pair.from_dict(d) for d in read_jsonl(run_dir / "generate" / "pairs.jsonl")]
    assert [c.video_id for c in captions] == ["v1", "v2", "v3"]  # the rejected video is not captioned
    assert not list((run_dir / "generate").glob("*.rank*.jsonl"))  # shards merged
    summary = result.summary
    assert summary["videos"] == 3 and summary["pairs"] == len(pairs)
    assert summary["pairs"] + sum(summary["dropped"].values()) == 3 * 3 * 4
    assert sum(summary["pairs_by_difficulty"].values()) == len(pairs)
    by_id = {c.video_id: c for c in captions}
    for pair in pairs:
        caption = by_id[pair.video_id]
        assert pair.pair_id == f"{pair.video_id}-{pair.perturbation}-r{pair.difficulty}"
        assert pair.generator == "heuristic" and pair.prompt in PAIR_PROMPTS
        assert pair.video_path == caption.video_path  # the whole video is the training input
        assert pair.chosen == caption.chosen
        [rejected] = [r for r in caption.rejected if (r["perturbation"], r["difficulty"]) == (pair.perturbation, pair.difficulty)]
        assert pair.rejected == rejected["text"] and pair.kept_indices == rejected["kept_indices"]
        assert pair.chosen not in pair.rejected
        if pair.perturbation == "drop":
            assert len(pair.chosen) > len(pair.rejected)
    # Every missing pair has its reason; reverse never keeps the order of > 1 group, so it always stays.
    for caption in captions:
        dropped = caption.extra["dropped"]
        for r in caption.rejected:
            pid = f"{caption.video_id}-{r['perturbation']}-r{r['difficulty']}"
            assert (pid in dropped) != any(p.pair_id == pid for p in pairs)
            if r["kept_indices"] == list(range(len(caption.clip_captions))):
                assert dropped[pid] == "contained"
    assert not [k for c in captions for k in c.extra["dropped"] if "-reverse-" in k]
    assert sum(p.perturbation == "reverse" for p in pairs) == 3 * 4


def test_interrupted_run_resumes_to_the_same_pairs(selected, tmp_path):
    run_dir, records = selected
    (tmp_path / "full" / "select").mkdir(parents=True)
    (tmp_path / "full" / "select" / "videos.jsonl").write_bytes((run_dir / "select" / "videos.jsonl").read_bytes())
    full = _recipe(tmp_path / "full")
    run_stages(full, get_plugin_manager(), stages=["generate"], progress=False, log=lambda *_: None)
    expected = read_jsonl(tmp_path / "full" / "generate" / "pairs.jsonl")

    # An interrupted run: v1 finished, v2's pairs written but not its captions line, v3 untouched.
    part_dir = tmp_path / "part"
    (part_dir / "select").mkdir(parents=True)
    (part_dir / "select" / "videos.jsonl").write_bytes((run_dir / "select" / "videos.jsonl").read_bytes())
    from temple_core.store import append_jsonl

    full_captions = read_jsonl(tmp_path / "full" / "generate" / "captions.jsonl")
    shard = part_dir / "generate"
    for p in expected:
        if p["video_id"] in ("v1", "v2"):
            append_jsonl(shard / "pairs.rank0.jsonl", p)
    append_jsonl(shard / "captions.rank0.jsonl", full_captions[0])
    with open(shard / "pairs.rank0.jsonl", "ab") as handle:
        handle.write(b'{"pair_id": "v3-drop-r16", "torn')  # killed mid-line
    run_stages(_recipe(part_dir), get_plugin_manager(), stages=["generate"], progress=False, log=lambda *_: None)
    resumed = read_jsonl(part_dir / "generate" / "pairs.jsonl")
    assert resumed == expected
    assert len({p["pair_id"] for p in resumed}) == len(resumed)
    assert read_jsonl(part_dir / "generate" / "captions.jsonl") == full_captions


def test_sharded_processes_write_the_same_pairs(selected, tmp_path, monkeypatch):
    """Two ranks (run one after the other, as a launch would in parallel) give one run's pairs.
    One process cannot meet itself at a barrier; rank 1 has finished before rank 0 starts, which
    is what the barrier ensures in a real launch (tests/generation/test_launch.py)."""
    run_dir, _ = selected
    import shutil

    monkeypatch.setattr("temple_core.stages.runner.barrier", lambda world_size: None)

    results = {}
    for name, world in (("one", 1), ("two", 2)):
        target = tmp_path / name
        shutil.copytree(run_dir / "select", target / "select")
        recipe = _recipe(target)
        from temple_core.stages import generate

        # Rank 0 last: it merges every rank's shard once they are all written.
        for rank in reversed(range(world)):
            generate.run(StageContext(recipe, target, get_plugin_manager(), rank=rank, world_size=world, progress=False))
        assert not list((target / "generate").glob("*.rank*.jsonl"))
        results[name] = read_jsonl(target / "generate" / "pairs.jsonl")
    assert results["one"] == results["two"]


def test_missing_selection_is_a_clear_error(tmp_path):
    # Refused when the recipe is read...
    with pytest.raises(TempleError, match="select/videos.jsonl, which does not exist: add a select section"):
        _recipe(tmp_path / "empty")
    # ... and, should the file go away between reading and running, when the stage starts.
    recipe = recipe_from_data({"run_dir": str(tmp_path / "empty"), "generate": {"captioner": {"name": "heuristic"}}},
                              plugins=get_plugin_manager(), check_files=False)
    with pytest.raises(TempleError, match="run the select stage first"):
        run_stages(recipe, get_plugin_manager(), stages=["generate"], progress=False, log=lambda *_: None)


def test_selection_that_kept_nothing_stops_before_captioning(tmp_path):
    """Real selection of an unreadable file and a video with too few shots: generate says why
    there is nothing to caption (instead of empty exports and, at train, "no pairs"), and the
    finished select stage is kept."""
    from testkit.generation import write_scenes

    folder = tmp_path / "videos"
    folder.mkdir()
    (folder / "broken.mp4").write_bytes(b"\x00not a video" * 500)
    write_scenes(folder / "short.mp4", ["red_still", "dark_blue"])
    data = {"run_dir": str(tmp_path / "run"), "seed": 0, "videos": {"paths": [str(folder)]},
            "select": {"shot_detector": {"name": "pyscenedetect"}, "encoder": {"name": "colorhist"}},
            "generate": {"captioner": {"name": "heuristic"}}}
    plugins = get_plugin_manager()
    with pytest.raises(TempleError) as caught:
        run_stages(recipe_from_data(data, plugins=plugins), plugins, progress=False, log=lambda *_: None)
    message = str(caught.value)
    assert "select kept none of the 2 videos, nothing to caption" in message
    assert "1 could not be read -- broken: " in message and "1 rejected -- " in message
    records = {r["video_id"]: r for r in read_jsonl(tmp_path / "run" / "select" / "videos.jsonl")}
    assert records["broken"]["status"] == "error" and records["short"]["status"] == "rejected"
    assert f"{records['short']['reason']}: 1" in message
    assert not (tmp_path / "run" / "generate" / "export").exists()  # nothing was exported
    logged = []
    run_stages(recipe_from_data(data, plugins=plugins), plugins, stages=["select"], progress=False, log=logged.append)
    assert logged and "[select] up to date" in logged[0]


def test_recipe_prompts_and_filters_apply(selected, tmp_path):
    import shutil

    run_dir, _ = selected
    shutil.copytree(run_dir / "select", tmp_path / "r" / "select")
    recipe = _recipe(
        tmp_path / "r", prompts=["Tell me everything."], difficulties=[2],
        filters={"drop_contained": False, "longer_chosen": [], "length_ratio": []},
    )
    [result] = run_stages(recipe, get_plugin_manager(), stages=["generate"], progress=False, log=lambda *_: None)
    pairs = read_jsonl(tmp_path / "r" / "generate" / "pairs.jsonl")
    assert len(pairs) == 3 * 3 and result.summary["dropped"] == {}
    assert {p["prompt"] for p in pairs} == {"Tell me everything."}
    assert result.summary["pairs_by_difficulty"] == {"2": 9}
