"""The contextual captioner on the real tiny-random Qwen2-VL backend (no mocks).

The backend is wrapped in a recording subclass -- the real model answers; the wrapper only
keeps the conversations it received -- so the test can check what the model was shown.
"""

from __future__ import annotations

import types

import numpy as np
import pytest
from testkit.generation import selected_run
from testkit.references import qwen_vl_utils_frame

from temple_core.generation.filters import drop_reason
from temple_core.hookspecs import hookimpl
from temple_core.plugins import PluginManager
from temple_core.generation.prompts import numbered_captions
from temple_core.recipe import recipe_from_data
from temple_core.records import CaptionRecord, Pair, VideoRecord
from temple_core.stages.runner import run_stages
from temple_core.store import read_jsonl
from temple_core.video.source import VideoSource

qwen_vl = pytest.importorskip("temple_plugins.backends.qwen_vl")

VIDEOS = {
    "a": ["red_still", "dark_blue", "green_busy", "yellow_some"],
    "b": ["cyan_busy", "magenta_still", "red_still", "dark_blue", "green_busy"],
}
TOKENS = 8  # a random model never stops: keep every answer short


class Recording(qwen_vl.Qwen2VLBackend):
    """The real Qwen2-VL backend, keeping every chat call's conversations and settings."""

    calls: list = []

    def chat(self, conversations, **kwargs):
        Recording.calls.append((conversations, kwargs))
        return super().chat(conversations, **kwargs)


_PLUGINS: list = []


def _plugins():
    """Every built-in plugin plus the recording backend, in a manager of this module's own
    (the process-wide one is left as the registry made it)."""
    if not _PLUGINS:
        plugins = PluginManager()
        module = types.ModuleType("recording_backend")
        module.register_backends = hookimpl(
            lambda register: register("recording_qwen2_vl", Recording, options=qwen_vl.Qwen2VLBackend.Options)
        )
        plugins.add_module(module, "tests")
        _PLUGINS.append(plugins)
    return _PLUGINS[0]


def _run(run_dir, level="caption", **extra):
    recipe = recipe_from_data(
        {"run_dir": str(run_dir), "seed": 5, "generate": {
            "backend": {"name": "recording_qwen2_vl", "preset": "tiny-random", "batch_size": 16},
            "captioner": {"name": "contextual", "level": level, "clip_max_new_tokens": TOKENS},
            "difficulties": [4, 2], "sampling": {"max_new_tokens": TOKENS}, "videos_per_batch": 2, **extra,
        }},
        plugins=_plugins(),
    )
    Recording.calls = []
    run_stages(recipe, _plugins(), stages=["generate"], progress=False, log=lambda *_: None)
    return recipe


def _images(conversation):
    """The frames a clip conversation shows, in order: each clip is one 2-frame video (default)."""
    shown = []
    for b in conversation[0]["content"]:
        if b["type"] == "video":
            assert len(b["frames"]) == 2
            shown += b["frames"]
        elif b["type"] == "image":
            shown.append(b["image"])
    return shown


def _text(conversation):
    return [b["text"] for b in conversation[0]["content"] if b["type"] == "text"][0]


@pytest.fixture(scope="module")
def caption_level(tmp_path_factory):
    run_dir, records = selected_run(tmp_path_factory.mktemp("ctx"), VIDEOS)
    recipe = _run(run_dir)
    return run_dir, records, recipe, list(Recording.calls)


def test_clip_prompts_show_previous_then_current_clip(caption_level):
    run_dir, records, _, calls = caption_level
    clip_convs, kwargs = calls[0]
    # The checkpoint's own decoding settings (None: generation_config.json), TOKENS new tokens.
    assert kwargs["do_sample"] is None and kwargs["top_k"] is None and kwargs["max_new_tokens"] == TOKENS
    assert all(b["type"] != "image" for conv in clip_convs for b in conv[0]["content"])
    # One batched call for both videos' clips: 4 + 5 requests.
    assert len(clip_convs) == 9
    at = 0
    for record in records:
        frames = VideoSource(record.path).read_frames([i for k in record.keyframes for i in k])
        frames = [qwen_vl_utils_frame(f) for f in frames]  # the default clip_presize, as the release
        clips = [frames[2 * i : 2 * i + 2] for i in range(len(record.keyframes))]
        for i in range(len(clips)):
            shown = _images(clip_convs[at + i])
            expected = clips[0] if i == 0 else [*clips[i - 1], *clips[i]]
            assert len(shown) == len(expected)
            assert all(np.array_equal(a, b) for a, b in zip(shown, expected))
            assert ("clip 2" in _text(clip_convs[at + i])) == (i > 0)
        at += len(clips)


def test_summaries_follow_the_perturbed_caption_lists(caption_level):
    run_dir, records, recipe, calls = caption_level
    captions = [CaptionRecord.from_dict(d) for d in read_jsonl(run_dir / "generate" / "captions.jsonl")]
    summary_calls = calls[1:]
    assert len(summary_calls) == len(captions)  # one call per video: chosen + every (perturbation, r)
    for caption, (convs, kwargs) in zip(captions, summary_calls):
        assert len(convs) == 1 + 3 * 2
        assert kwargs["do_sample"] is True and kwargs["temperature"] == 0.7 and kwargs["repetition_penalty"] == 1.05
        assert kwargs["top_p"] is None and kwargs["top_k"] is None  # the checkpoint's, as in the release
        assert isinstance(kwargs["seed"], int)
        assert numbered_captions(caption.clip_captions) in _text(convs[0])
        for conv, rejected in zip(convs[1:], caption.rejected):
            listed = [caption.clip_captions[i] for i in rejected["kept_indices"]]
            assert numbered_captions(listed) in _text(conv)
        assert caption.generator == "qwen2_vl:tiny-random"


def test_pairs_carry_provenance_and_pass_the_filters(caption_level):
    run_dir, _, recipe, _ = caption_level
    captions = {d["video_id"]: CaptionRecord.from_dict(d) for d in read_jsonl(run_dir / "generate" / "captions.jsonl")}
    pairs = {d["pair_id"]: Pair.from_dict(d) for d in read_jsonl(run_dir / "generate" / "pairs.jsonl")}
    for caption in captions.values():
        for rejected in caption.rejected:
            pid = f"{caption.video_id}-{rejected['perturbation']}-r{rejected['difficulty']}"
            reason = drop_reason(caption.chosen, rejected["text"], rejected["perturbation"], recipe.generate.filters)
            assert caption.extra["dropped"].get(pid) == reason
            if reason is None:
                pair = pairs[pid]
                assert (pair.chosen, pair.rejected) == (caption.chosen.strip(), rejected["text"].strip())
                assert pair.kept_indices == rejected["kept_indices"] and pair.generator == "qwen2_vl:tiny-random"
                assert pair.video_path == caption.video_path
            else:
                assert pid not in pairs


def test_frame_level_recaptions_the_perturbed_sequence(tmp_path):
    run_dir, records = selected_run(tmp_path, {"a": VIDEOS["a"]})
    _run(run_dir, level="frames", perturbations=[{"name": "reverse"}], difficulties=[4])
    [caption] = [CaptionRecord.from_dict(d) for d in read_jsonl(run_dir / "generate" / "captions.jsonl")]
    [rejected] = caption.rejected
    assert rejected["kept_indices"] == [3, 2, 1, 0]
    clip_convs = Recording.calls[0][0]
    # Original order (4 requests) + the reversed sequence: clip 3 alone, then (3, 2), (2, 1), (1, 0).
    assert len(clip_convs) == 8
    record: VideoRecord = records[0]
    frames = [qwen_vl_utils_frame(f) for f in VideoSource(record.path).read_frames([i for k in record.keyframes for i in k])]
    assert all(np.array_equal(a, b) for a, b in zip(_images(clip_convs[4]), frames[6:8]))
    assert all(np.array_equal(a, b) for a, b in zip(_images(clip_convs[5]), frames[6:8] + frames[4:6]))
    summary = Recording.calls[1][0]
    assert numbered_captions(rejected["clip_captions"]) in _text(summary[1])
