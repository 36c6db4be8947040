"""The release's captioning (SPEC §2), on the real tiny backends:

* each clip reaches the *model* as one 2-frame video (Qwen: ``pixel_values_videos`` with a
  ``video_grid_thw`` row ``t = 1`` per clip, no ``pixel_values``; InternVL: one tile per frame
  under ``Frame1: / Frame2:``), at up to 401,408 pixels per frame; two images is the option;
* clip captions use the checkpoint's generation config; the effective settings of clip
  captions and summaries are recorded; a ``top_k: 1`` config makes "sampled" summaries greedy;
* MiMo-VL's clean-up of its descriptions (the rule re-implemented here), counted as a drop reason;
* prompts replaced from the recipe (inline or from a file), checked for their placeholders.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from temple_core.cli import main
from temple_core.errors import RecipeError
from temple_core.generation.runner import summarize
from temple_core.plugins import get_plugin_manager
from temple_core.recipe import recipe_from_data
from temple_core.records import VideoRecord
from temple_core.stages.runner import run_stages
from temple_core.store import read_jsonl
from temple_plugins.caption_generators.contextual import Contextual
from testkit.references import qwen_vl_utils_frame, smart_resize
from testkit.backends import write_video
from testkit.generation import selected_run
from testkit.training import build_backend

TOKENS = 4  # a random model never stops: keep every answer short


def two_clip_video(tmp_path: Path, width: int = 400, height: int = 300) -> VideoRecord:
    """A kept video of two segments (frames 0-9 and 10-19), keyframes (3, 6) and (13, 16)."""
    path = write_video(tmp_path / "v.mp4", width, height, frames=20, fps=10)
    clips = [[0, 9], [10, 19]]
    return VideoRecord(video_id="v", path=str(path), status="kept", fps=10.0, num_frames=20, duration=2.0, shots=clips,
                       clips=clips, groups=[[0], [1]], segments=[[0], [1]], keyframes=[[3, 6], [13, 16]])


def model_inputs_during(backend, run):
    """Run ``run()``; return the keyword arguments of every ``generate`` call of the real model
    (recorded on the way in; the model's own ``generate`` runs)."""
    model = backend.load_model()
    seen = []
    original = model.generate

    def recording(*args, **kwargs):
        seen.append(dict(kwargs))
        return original(*args, **kwargs)

    model.generate = recording
    try:
        run()
    finally:
        del model.generate  # the class's method again
    return seen


# -- how a clip is shown ---------------------------------------------------------------------

def caption(captioner, video, backend):
    """The captioner's whole run on one video (clip captions, then summaries), short answers."""
    import random

    from temple_core.stages.generate import Sampling

    return captioner.generate([video], backend, [], [2], [random.Random(0)], sampling=Sampling(max_new_tokens=TOKENS), seeds=[0])


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl"])
def test_qwen_model_receives_each_clip_as_one_two_frame_video(tmp_path, family):
    video = two_clip_video(tmp_path)
    backend = build_backend(family, preset="tiny-random")  # backend max_pixels: 90,000 (the training value)
    forwards = model_inputs_during(backend, lambda: caption(Contextual(Contextual.Options(clip_max_new_tokens=TOKENS)), video, backend))
    # One batched prefill for the two clip requests: clip 0 alone (1 video), then clip 0 + clip 1 (2 videos).
    clips = forwards[0]
    h, w = smart_resize(300, 400, 28, 3136, 401408)  # the clip bound, not the backend's 90,000
    assert h * w > 90000
    assert clips.get("pixel_values") is None and clips.get("image_grid_thw") is None
    assert clips["video_grid_thw"].tolist() == [[1, h // 14, w // 14]] * 3  # t = 1: a 2-frame video is one temporal patch group
    assert clips["pixel_values_videos"].shape[0] == 3 * (h // 14) * (w // 14)
    if family == "qwen2_5_vl":
        assert clips["second_per_grid_ts"].tolist() == [1.0] * 3  # 2 / 2.0 fps, as the release's processor
    assert all(f.get("pixel_values_videos") is None for f in forwards[1:])  # the summaries are text only
    # The option: two images per clip.
    images = Contextual(Contextual.Options(clip_max_new_tokens=TOKENS, clip_input="images"))
    clips = model_inputs_during(backend, lambda: caption(images, video, backend))[0]
    assert clips.get("pixel_values_videos") is None
    assert clips["image_grid_thw"].tolist() == [[1, h // 14, w // 14]] * 6


def frames_given_to(backend, run):
    """Run ``run()``; the frames of every video item the backend was asked to encode (the
    backend's own ``visual_inputs`` runs)."""
    seen = []
    original = backend.visual_inputs

    def recording(item, *args, **kwargs):
        if item.get("type") == "video":
            seen.append([np.array(f) for f in item["frames"]])
        return original(item, *args, **kwargs)

    backend.visual_inputs = recording
    try:
        run()
    finally:
        del backend.visual_inputs
    return seen


@pytest.mark.parametrize("presize", ["qwen_vl_utils", "none"])
def test_large_frames_are_resized_twice_as_in_the_release(tmp_path, presize):
    """720p keyframes: qwen-vl-utils' fetch_image (0.0.11: PIL resize with its default filter to
    its smart_resize at factor 28 within 3,136..12,845,056 px) hands 728 x 1288 on, the processor
    bounds that to 401,408 px: 476 x 840 -- not 448 x 840, one resize of the 720 x 1280 frame."""
    from temple_core.video.source import VideoSource

    video = two_clip_video(tmp_path, 1280, 720)
    backend = build_backend("qwen2_vl", preset="tiny-random")
    captioner = Contextual(Contextual.Options(clip_max_new_tokens=TOKENS, clip_presize=presize))
    seen = []
    forwards = model_inputs_during(backend, lambda: seen.extend(frames_given_to(backend, lambda: caption(captioner, video, backend))))
    decoded = VideoSource(video.path).read_frames([3, 6, 13, 16])
    if presize == "qwen_vl_utils":
        expected = [qwen_vl_utils_frame(f) for f in decoded]  # the release's call, its default filter
        h1, w1 = expected[0].shape[:2]
        assert (h1, w1) == (728, 1288)
        h, w = smart_resize(h1, w1, 28, 3136, 401408)
        assert (h, w) == (476, 840)
    else:
        expected, (h, w) = decoded, smart_resize(720, 1280, 28, 3136, 401408)
        assert (h, w) == (448, 840)
    # Clip 0 alone, then clip 0 + clip 1: the frames of each item are the expected ones, bit for bit.
    assert len(seen) == 3
    for frames, want in zip(seen, [expected[:2], expected[:2], expected[2:]]):
        assert all(np.array_equal(a, b) for a, b in zip(frames, want)) and len(frames) == 2
    assert forwards[0]["video_grid_thw"].tolist() == [[1, h // 14, w // 14]] * 3
    records = caption(captioner, video, backend)
    assert records[0].extra["clip_presize"] == presize


def test_internvl_model_receives_each_clip_as_video_frames(tmp_path):
    video = two_clip_video(tmp_path, 96, 64)
    backend = build_backend("internvl2_5", preset="tiny-random")
    clips = model_inputs_during(backend, lambda: caption(Contextual(Contextual.Options(clip_max_new_tokens=TOKENS)), video, backend))[0]
    assert clips["pixel_values"].shape[0] == 2 + 4  # one tile per frame: no image tiling, no thumbnail
    tok = backend.processor
    alone, pair = (tok.decode(row) for row in clips["input_ids"])
    assert alone.count("Frame1: <img>") == 1 and alone.count("Frame2: <img>") == 1 and "Frame3:" not in alone
    assert pair.count("Frame1: <img>") == 2 and pair.count("Frame2: <img>") == 2 and "Frame3:" not in pair


# -- decoding settings -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def top_k_1_checkpoint(tmp_path_factory):
    """The tiny Qwen2-VL saved with a Qwen2.5-VL-7B-like generation config (sampling on, top_k 1)."""
    folder = tmp_path_factory.mktemp("ckpt") / "qwen2vl-topk1"
    shutil.copytree(build_backend("qwen2_vl", preset="tiny-random").model_dir(), folder)
    config = json.loads((folder / "generation_config.json").read_text())
    config.update(do_sample=True, top_k=1, top_p=0.001, temperature=0.01, repetition_penalty=1.05)
    (folder / "generation_config.json").write_text(json.dumps(config))
    return folder


def _generate(run_dir, backend, **generate):
    recipe = recipe_from_data({"run_dir": str(run_dir), "seed": 1, "generate": {
        "backend": backend, "difficulties": [2], "perturbations": [{"name": "reverse"}],
        "captioner": {"name": "contextual", "clip_max_new_tokens": TOKENS}, "sampling": {"max_new_tokens": TOKENS}, **generate}})
    run_stages(recipe, get_plugin_manager(), stages=["generate"], progress=False, log=lambda *_: None)
    captions = read_jsonl(run_dir / "generate" / "captions.jsonl")
    return captions, summarize(captions, read_jsonl(run_dir / "generate" / "pairs.jsonl"))


def test_effective_settings_are_recorded_and_top_k_1_makes_sampling_greedy(tmp_path, top_k_1_checkpoint):
    run_dir, _ = selected_run(tmp_path / "a", {"a": ["red_still", "dark_blue", "green_busy", "yellow_some"]})
    captions, summary = _generate(run_dir, {"name": "qwen2_vl", "path": str(top_k_1_checkpoint)})
    clip, summ = captions[0]["generation"]["clip"], captions[0]["generation"]["summary"]
    # Clip captions: the checkpoint's settings; summaries: the recipe's sampling, top_p / top_k the checkpoint's.
    assert (clip["do_sample"], clip["top_k"], clip["temperature"], clip["repetition_penalty"], clip["max_new_tokens"]) == (True, 1, 0.01, 1.05, TOKENS)
    assert (summ["do_sample"], summ["temperature"], summ["top_k"], summ["top_p"], summ["repetition_penalty"]) == (True, 0.7, 1, 0.001, 1.05)
    assert clip["greedy"] and summ["greedy"]
    assert summary["generation"] == captions[0]["generation"]  # in the stage summary too
    # And it is really greedy: sampling with top_k 1 gives the greedy decoding's texts.
    backend = build_backend("qwen2_vl", path=str(top_k_1_checkpoint))
    conversation = [[{"role": "user", "content": [{"type": "text", "text": f"Describe scene {i}."}]}] for i in range(3)]
    sampled = backend.chat(conversation, max_new_tokens=12, do_sample=True, temperature=0.7, top_p=None, top_k=None, repetition_penalty=1.05, seed=3)
    greedy = backend.chat(conversation, max_new_tokens=12, do_sample=False, repetition_penalty=1.05)
    assert sampled == greedy
    # The recipe overrides it: top_k 50 samples.
    run_dir, _ = selected_run(tmp_path / "b", {"a": ["red_still", "dark_blue", "green_busy", "yellow_some"]})
    captions, _ = _generate(run_dir, {"name": "qwen2_vl", "path": str(top_k_1_checkpoint)}, sampling={"max_new_tokens": TOKENS, "top_k": 50},
                            captioner={"name": "contextual", "clip_max_new_tokens": TOKENS, "clip_generation": {"do_sample": False}})
    clip, summ = captions[0]["generation"]["clip"], captions[0]["generation"]["summary"]
    assert (summ["top_k"], summ["greedy"]) == (50, False)
    assert (clip["do_sample"], clip["greedy"]) == (False, True) and "top_k" not in clip
    sampled = backend.chat(conversation, max_new_tokens=12, do_sample=True, temperature=0.7, top_k=50, repetition_penalty=1.05, seed=3)
    assert sampled != greedy


def test_clip_answer_length_defaults_to_the_backends():
    assert Contextual().clip_settings(build_backend("qwen2_vl", preset="tiny-random"))["max_new_tokens"] == 2048
    assert Contextual().clip_settings(build_backend("mimo_vl", preset="tiny-random"))["max_new_tokens"] == 8192
    assert Contextual(Contextual.Options(clip_max_new_tokens=7)).clip_settings(build_backend("mimo_vl", preset="tiny-random"))["max_new_tokens"] == 7


# -- MiMo-VL's clean-up ------------------------------------------------------------------------

def release_mimo_cleanup(response: str) -> str:
    """The release's rule (SPEC §2.5) after ``</think>``: from the last opening phrase (found in
    the lower-cased text), else "N/A"; parenthetical remarks with "aption" removed."""
    response = response.split("</think>")[-1].strip()
    lower = response.lower()
    at = max(lower.rfind(s) for s in ("the video opens", "the video starts", "the video begins"))
    if at == -1:
        return "N/A"
    return re.sub(r"\([^()]*aption[^()]*\)", "", response[at:]).strip()


MIMO_ANSWERS = [
    "Let me look at the captions first.</think>Sure. The video opens on a beach (as in Caption 1), then a dog runs.",
    "<think>The video begins with... no wait.</think>Here is the description: The video starts in a kitchen. "
    "A man cooks (caption 2 says pasta) and (he smiles).\nLater, THE VIDEO BEGINS again (see caption 3 (the last)).",
    "</think>A dog runs on a beach, then a man cooks.",
    "The video opens quietly. Later the video opens a door (the caption is unclear).",
    "<think>just thinking</think>   ",
]


@pytest.mark.parametrize("answer", MIMO_ANSWERS)
def test_mimo_cleanup_is_the_releases(answer):
    backend = build_backend("mimo_vl", preset="tiny-random")
    text, reason = backend.clean_description(backend.clean(answer))
    expected = release_mimo_cleanup(answer)
    if expected == "N/A":
        assert (text, reason) == ("", "no_opening")
    else:
        assert (text, reason) == (expected, None)
    # Off: the answer after </think>, as it is.
    off = build_backend("mimo_vl", preset="tiny-random", clean_descriptions=False)
    assert off.clean_description(off.clean(answer)) == (off.clean(answer), None)


def test_mimo_descriptions_without_an_opening_are_a_drop_reason(tmp_path):
    """The tiny random MiMo-VL writes no "The video opens ...": every pair is dropped as
    ``no_opening``, and the stage summary counts it."""
    run_dir, _ = selected_run(tmp_path, {"a": ["red_still", "dark_blue", "green_busy", "yellow_some"]})
    captions, summary = _generate(run_dir, {"name": "mimo_vl", "preset": "tiny-random"})
    assert captions[0]["chosen_unusable"] == "no_opening" and captions[0]["chosen"] == ""
    assert summary["pairs"] == 0 and summary["dropped"] == {"no_opening": 1}


# -- prompts from the recipe -------------------------------------------------------------------

RELEASE_LIKE = {
    # The release's placement: text, clip 1's video, text, clip 2's video (a user's own wording here).
    "next_clip_prompt": "Two clips of one video follow.\n\nVideo clip 1: {previous}\nVideo clip 2: {clip}",
    "first_clip_prompt": "Describe this video in detail.\n\nVideo: {clip}",
    "summary_prompt": "A list of captions, one per clip, in order. Write one paragraph.\n\n{captions}",
    "caption_line": "- Caption {index}: {caption}",
}


def test_prompts_with_placeholders_place_the_clips_and_captions():
    captioner = Contextual(Contextual.Options(**RELEASE_LIKE))
    frames = [np.zeros((8, 8, 3), np.uint8) + k for k in range(4)]
    clips = [frames[:2], frames[2:]]
    (message,) = captioner.clip_conversation(clips, (0, 1))
    kinds = [(c["type"], c.get("text")) for c in message["content"]]
    assert kinds == [("text", "Two clips of one video follow.\n\nVideo clip 1: "), ("video", None), ("text", "\nVideo clip 2: "), ("video", None)]
    assert message["content"][1]["frames"] == clips[0] and message["content"][3]["frames"] == clips[1]
    (message,) = captioner.clip_conversation(clips, (None, 0))
    assert [c["type"] for c in message["content"]] == ["text", "video"]
    (message,) = captioner.summary_conversation(["a dog.", "a cat."])
    assert message["content"][0]["text"] == "A list of captions, one per clip, in order. Write one paragraph.\n\n- Caption 1: a dog.\n- Caption 2: a cat."
    # Without placeholders (the built-in prompts): frames first, previous clip then this one.
    (message,) = Contextual().clip_conversation(clips, (0, 1))
    assert [c["type"] for c in message["content"]] == ["video", "video", "text"]


def _recipe(tmp_path, captioner=None, **generate):
    return {"run_dir": str(tmp_path / "run"), "generate": {
        "backend": {"name": "qwen2_vl", "preset": "tiny-random"}, "captioner": {"name": "contextual", **(captioner or {})}, **generate}}


@pytest.mark.parametrize("captioner,generate,where,message", [
    ({"summary_prompt": "Summarise the clips."}, {}, r"generate\.captioner\.summary_prompt", r"must contain \{captions\}"),
    ({"next_clip_prompt": "Clip two: {clip}"}, {}, r"generate\.captioner\.next_clip_prompt", r"both \{previous\} and \{clip\}"),
    ({"first_clip_prompt": "{previous} then {clip}"}, {}, r"generate\.captioner\.first_clip_prompt", r"\{previous\} does not belong here"),
    ({"caption_line": "Caption {index}"}, {}, r"generate\.captioner\.caption_line", r"must contain \{caption\}"),
    ({"summary_prompt": "{captions}", "summary_prompt_file": "FILE"}, {}, r"generate\.captioner", r"give summary_prompt or summary_prompt_file, not both"),
    ({}, {"prompts": ["Describe it.", "List {captions}."]}, r"generate\.prompts", r"prompt 1: \{captions\} does not belong here"),
    ({}, {"prompts": []}, r"generate\.prompts", r"needs at least one prompt"),
])
def test_bad_prompts_are_errors_naming_the_key(tmp_path, captioner, generate, where, message):
    file = tmp_path / "p.txt"
    file.write_text("{captions}\n")
    captioner = {k: (str(file) if v == "FILE" else v) for k, v in captioner.items()}
    with pytest.raises(RecipeError, match=f"^{where}: .*{message}"):
        recipe_from_data(_recipe(tmp_path, captioner, **generate))


def test_prompt_files_are_checked_at_validate_time(tmp_path, capsys):
    bad = tmp_path / "summary.txt"
    bad.write_text("Summarise these:\n{captoins}\n")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(_recipe(tmp_path, {"summary_prompt_file": str(bad)})))
    assert main(["validate", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert "generate.captioner.summary_prompt_file" in err and "summary.txt" in err and "must contain {captions}" in err
    lines = tmp_path / "pairs.txt"
    lines.write_text("Describe the video.\n\nTell {clip}.\n")
    recipe.write_text(yaml.safe_dump(_recipe(tmp_path, {}, prompts_file=str(lines))))
    assert main(["validate", str(recipe)]) == 2
    assert "generate.prompts_file" in capsys.readouterr().err
    recipe.write_text(yaml.safe_dump(_recipe(tmp_path, {}, prompts_file=str(tmp_path / "missing.txt"))))
    assert main(["validate", str(recipe)]) == 2
    assert "generate.prompts_file: no such file" in capsys.readouterr().err


def test_prompts_from_files_reach_the_model_and_the_pairs(tmp_path):
    summary = tmp_path / "summary.txt"
    summary.write_text("FROM A FILE. Captions in order:\n{captions}\n")
    pair_prompts = tmp_path / "pairs.txt"
    pair_prompts.write_text("Narrate the video, first to last.\nWhat happens, in order?\n")
    run_dir, _ = selected_run(tmp_path, {"a": ["red_still", "dark_blue", "green_busy", "yellow_some"]})
    captioner = Contextual(Contextual.Options(summary_prompt_file=str(summary)))
    (message,) = captioner.summary_conversation(["x", "y"])
    assert message["content"][0]["text"] == "FROM A FILE. Captions in order:\nCaption 1: x\nCaption 2: y"
    recipe = recipe_from_data({"run_dir": str(run_dir), "generate": {"captioner": {"name": "heuristic"}, "prompts_file": str(pair_prompts)}})
    run_stages(recipe, get_plugin_manager(), stages=["generate"], progress=False, log=lambda *_: None)
    prompts = {p["prompt"] for p in read_jsonl(run_dir / "generate" / "pairs.jsonl")}
    assert prompts and prompts <= {"Narrate the video, first to last.", "What happens, in order?"}


TV_PYTHON = __import__("os").environ.get("TEMPLE_TORCHVISION_PYTHON")


@pytest.mark.skipif(not TV_PYTHON, reason="set TEMPLE_TORCHVISION_PYTHON to an interpreter with torchvision and qwen-vl-utils "
                    "(scripts/lmms_eval_bridge.sh builds one)")
@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl"])
@pytest.mark.parametrize("size", [(1280, 720), (400, 300)])
def test_clip_tensors_are_the_release_qwen_vl_utils_and_processor(tmp_path, family, size):
    """The real qwen-vl-utils 0.0.11 and transformers' processor at the release's max_pixels
    make the same video tensor from a clip's two keyframes as temple's captioner + backend."""
    import os
    import subprocess

    video = two_clip_video(tmp_path, *size)
    folder = build_backend(family, preset="tiny-random").model_dir()
    script = Path(__file__).resolve().parents[1] / "testkit" / "release_clip_check.py"
    result = subprocess.run([TV_PYTHON, str(script), family, str(folder), video.path, "3", "6"], capture_output=True, text=True,
                            timeout=600, env={**os.environ})
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["qwen_vl_utils"].endswith("qwen-vl-utils-0.0.11/qwen_vl_utils"), report  # the release's version
    assert report["grid"] == report["ours_grid"] and report["pixels"], report
    if size == (1280, 720):
        assert report["grid"] == [1, 34, 60]  # 476 x 840: resized twice
    if family == "qwen2_5_vl":
        # The release's transformers 4.53.2 (processing_qwen2_5_vl.py): temporal_patch_size / fps,
        # fps 2.0 when none is given -- 1.0. This environment's transformers 5 assumes 24 fps for
        # frames without metadata instead (2 / 24), so only temple's value is checked here.
        assert report["ours_second_per_grid_ts"] == 2 / 2.0, report
