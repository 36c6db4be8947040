"""The qwen3_vl backend (dense and MoE) on real (tiny, random) transformers Qwen3-VL models:
the processor's tensors and prompt text (timestamps), batched chat, training batches, vision
reuse with deepstack features, LoRA targets."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from temple_core.errors import ModelError, SkipSample
from temple_plugins.backends.qwen3_vl import Qwen3VLBackend
from testkit.backends import QWEN3_CASES, conversations, preference_parts, pixels_from_levels, qwen3_case_conversation, write_video

REFERENCE = Path(__file__).parent / "data" / "qwen3_vl_processor_reference.npz"


def backend(**options):
    return Qwen3VLBackend(Qwen3VLBackend.Options(**{"fps": 2.0, "max_pixels": 64 * 64, "min_pixels": 784, **options}))


@pytest.fixture(scope="module", params=["tiny-random", "tiny-random-moe"])
def saved(request, tmp_path_factory):
    """The preset saved by the backend (merge_and_save) and loaded back by path."""
    b = backend(preset=request.param)
    out = tmp_path_factory.mktemp(request.param) / "model"
    b.merge_and_save(b.load_model(), out)
    return request.param, out


def ours_for_case(case):
    seed, frames, h, w, max_pixels, min_pixels, fps = case
    b = backend(preset="tiny-random", max_pixels=max_pixels, min_pixels=min_pixels, fps=fps)
    conversation = qwen3_case_conversation(seed, frames, h, w, fps)
    visuals = [b.visual_inputs(c) for c in conversation[0]["content"][:2]]
    text = b.render(conversation, visuals, True)
    ids = b.processor(text, add_special_tokens=False)["input_ids"]
    tensors = {**b.visual_batch(visuals), **{k: torch.tensor([v]) for k, v in b.row_extras(ids).items()}}
    return b, text, ids, tensors


# -- against transformers' processor ------------------------------------------------------------
def test_same_text_and_tensors_as_the_committed_processor_output():
    """transformers' Qwen3VLProcessor output, committed by data/make_qwen3_vl_reference.py where
    torchvision imports: the same prompt text (timestamps, per-frame vision spans), pixel values,
    grids and mm_token_type_ids."""
    reference = np.load(REFERENCE)
    for case in QWEN3_CASES:
        seed = case[0]
        _, text, _, ours = ours_for_case(case)
        assert text == str(reference[f"case{seed}_text"]), f"case {seed}"
        assert set(ours) == {"pixel_values_videos", "video_grid_thw", "pixel_values", "image_grid_thw", "mm_token_type_ids"}
        for key, value in ours.items():
            expected = torch.from_numpy(reference[f"case{seed}_{key}"])
            if key.startswith("pixel_values"):
                expected = torch.from_numpy(pixels_from_levels(reference[f"case{seed}_{key}"]))
            assert value.shape == expected.shape, f"case {seed} {key}"
            torch.testing.assert_close(value, expected.to(value.dtype), atol=1e-6, rtol=0, msg=lambda m, k=key: f"case {seed} {k}: {m}")


def test_same_text_and_tensors_as_the_transformers_processor(videos):
    """Where torchvision imports: the processor itself on the cases, and on frames decoded from
    a file with a start time (timestamps from the source's frame indices and fps)."""
    pytest.importorskip("torchvision", reason="transformers' Qwen3-VL video/image processors need torchvision (scripts/lmms_eval_bridge.sh runs this in its environment)")
    from transformers.video_utils import VideoMetadata

    from temple_core.video.source import VideoSource, sample_indices
    from testkit.backends import qwen3_processor_outputs

    for case in QWEN3_CASES:
        b, text, ids, ours = ours_for_case(case)
        ref = qwen3_processor_outputs(b, case)
        assert ref["text"] == text and ref["input_ids"][0].tolist() == ids
        for key, value in ours.items():
            torch.testing.assert_close(value, ref[key].to(value.dtype), atol=1e-6, rtol=0)

    # A clip of a file: the processor gets our decoded frames with their metadata.
    b = backend(preset="tiny-random", fps=2.0)
    item = {"type": "video", "path": str(videos[2]), "start": 1.1, "end": 4.0}
    source = VideoSource(item["path"])
    indices = sample_indices(source.num_frames, source.fps, 2.0, 1.1, 4.0, 100)
    frames = np.stack(source.read_frames(indices))
    case = (10, 5, 37, 101, 64 * 64, 784, 2.0)
    ref = qwen3_processor_outputs(b, case, video=frames, metadata=VideoMetadata(total_num_frames=source.num_frames, fps=source.fps, frames_indices=indices))
    conversation = qwen3_case_conversation(10, 5, 37, 101, 2.0)
    conversation[0]["content"][0] = item
    visuals = [b.visual_inputs(c) for c in conversation[0]["content"][:2]]
    assert b.render(conversation, visuals, True) == ref["text"]
    torch.testing.assert_close(b.visual_batch(visuals)["pixel_values_videos"], ref["pixel_values_videos"], atol=1e-6, rtol=0)


# -- the rules, written out again ---------------------------------------------------------------
def reference_clip_resize(t, h, w, factor, min_pixels, max_pixels):
    """Qwen3-VL's video rounding rule (qwen-vl-utils / the Qwen3-VL processor): sides under the
    factor scaled up first, then round to the factor, fit the clip volume into the budget."""
    if h < factor or w < factor:
        scale = max(factor / h, factor / w)
        h, w = int(h * scale), int(w * scale)
    hb, wb, tb = round(h / factor) * factor, round(w / factor) * factor, round(t / 2) * 2
    if tb * hb * wb > max_pixels:
        beta = math.sqrt(t * h * w / max_pixels)
        hb, wb = max(factor, math.floor(h / beta / factor) * factor), max(factor, math.floor(w / beta / factor) * factor)
    elif tb * hb * wb < min_pixels:
        beta = math.sqrt(min_pixels / (t * h * w))
        hb, wb = math.ceil(h * beta / factor) * factor, math.ceil(w * beta / factor) * factor
    return hb, wb


@pytest.mark.parametrize("t,h,w,max_pixels,min_pixels", [
    (4, 48, 64, 90000, 784), (6, 480, 640, 50000, 784), (5, 37, 101, 4000, 784), (2, 17, 23, 4000, 3136),
    (8, 1000, 60, 20000, 784), (3, 20, 700, 5000, 784),
])
def test_clip_resize_follows_the_qwen3_rule_with_per_frame_budgets(t, h, w, max_pixels, min_pixels):
    b = backend(preset="tiny-random", max_pixels=max_pixels, min_pixels=min_pixels)
    frames = np.zeros((t, h, w, 3), np.uint8)
    vis = b.visual_inputs({"type": "video", "frames": list(frames)})
    tp = t + t % 2
    rh, rw = reference_clip_resize(tp, h, w, 32, min_pixels * tp, max_pixels * tp)
    assert vis["grid"] == [tp // 2, rh // 16, rw // 16]
    assert vis["tokens"] == tp // 2 * (rh // 32) * (rw // 32)
    assert tuple(vis["pixels"].shape) == (tp // 2 * (rh // 16) * (rw // 16), 3 * 2 * 16 * 16)
    if min_pixels == 784 and rh > 32 and rw > 32:  # no floor hit: the per-frame budget holds
        assert rh * rw <= max_pixels


def test_timestamps_of_a_clip_from_a_file(tmp_path):
    """Each temporal patch is stamped with the mean time of its two frames in the source video,
    the last patch padded with the last frame."""
    path = write_video(tmp_path / "v.mp4", 64, 48, 20, fps=4, seed=9)  # 5 s at 4 fps
    b = backend(preset="tiny-random", fps=2.0)
    vis = b.visual_inputs({"type": "video", "path": str(path), "start": 1.0, "end": 4.0})
    # Frames 4..15 (1 s to 4 s at 4 fps), 3 s at 2 fps: 6 frames evenly spread.
    indices = [int(round(x)) for x in np.linspace(4, 15, 6)]
    times = [i / 4 for i in indices]
    expected = [(times[i] + times[i + 1]) / 2 for i in range(0, 6, 2)]
    assert vis["timestamps"] == pytest.approx(expected)
    text = b.expand_placeholder("<|video_pad|>", vis)
    per_frame = vis["tokens"] // 3
    assert text == "".join(f"<{t:.1f} seconds><|vision_start|>{'<|video_pad|>' * per_frame}<|vision_end|>" for t in expected)
    # 0 s to 2.5 s: frames 0..9, 5 of them; the last patch is the last frame twice.
    odd = b.visual_inputs({"type": "video", "path": str(path), "start": 0.0, "end": 2.5})
    indices = [int(round(x)) for x in np.linspace(0, 9, 5)]
    times = [i / 4 for i in indices + indices[-1:]]
    assert odd["grid"][0] == 3
    assert odd["timestamps"] == pytest.approx([(times[i] + times[i + 1]) / 2 for i in range(0, 6, 2)])


def test_checkpoint_mean_and_std_are_used(saved, tmp_path):
    import json
    import shutil

    _, folder = saved
    ckpt = tmp_path / "ckpt"
    shutil.copytree(folder, ckpt)
    (ckpt / "video_preprocessor_config.json").write_text(json.dumps({"image_mean": [0.2, 0.3, 0.4], "image_std": [0.5, 0.6, 0.7]}))
    frames = np.full((2, 32, 32, 3), 100, np.uint8)  # one merge window, no resize
    vis = backend(path=str(ckpt)).visual_inputs({"type": "video", "frames": list(frames)})
    expected = (100 / 255 - np.array([0.2, 0.3, 0.4])) / np.array([0.5, 0.6, 0.7])
    got = vis["pixels"].reshape(len(vis["pixels"]), 3, -1).mean(-1)
    np.testing.assert_allclose(got.numpy(), np.broadcast_to(expected, got.shape), atol=1e-5)
    image = backend(path=str(ckpt)).visual_inputs({"type": "image", "image": frames[0]})  # no image config: 0.5 / 0.5
    np.testing.assert_allclose(image["pixels"].mean().item(), (100 / 255 - 0.5) / 0.5, atol=1e-5)


# -- chat ---------------------------------------------------------------------------------------
def test_batched_greedy_equals_one_at_a_time(saved, videos):
    preset, folder = saved
    b = backend(path=str(folder), batch_size=8)
    assert type(b.load_model()).__name__ == ("Qwen3VLMoeForConditionalGeneration" if preset.endswith("moe") else "Qwen3VLForConditionalGeneration")
    convs = conversations(videos)
    rows = []
    b.model.register_forward_pre_hook(lambda m, a, k: rows.append(k["input_ids"].shape[0]) if k.get("input_ids") is not None and k["input_ids"].shape[1] > 1 else None, with_kwargs=True)
    batched = b.chat(convs, max_new_tokens=6)
    assert rows == [4]  # one prefill for the batch
    assert batched == [b.chat([c], max_new_tokens=6)[0] for c in convs]
    assert any(len(t) for t in batched)


def test_thinking_answers_and_errors(saved, tmp_path):
    _, folder = saved
    b = backend(path=str(folder))
    assert b.clean("<think>first red</think>\n\nblue then red") == "blue then red"
    assert backend(preset="tiny-random").describe() == "qwen3_vl:tiny-random"
    from temple_plugins.backends.qwen_vl import Qwen2VLBackend

    with pytest.raises(ModelError, match="wrong backend"):
        Qwen2VLBackend(Qwen2VLBackend.Options(path=str(folder))).load_model()
    with pytest.raises(ModelError, match="does not exist"):
        backend(path=str(tmp_path / "none")).load_model()
    with pytest.raises(ValueError):
        backend(preset="tiny-random-large")
    with pytest.raises(ModelError, match="cannot be resized"):
        backend(preset="tiny-random").visual_inputs({"type": "video", "frames": list(np.zeros((2, 4, 900, 3), np.uint8))})


# -- training batches ---------------------------------------------------------------------------
def concatenated(batch, pad_id):
    """``[chosen; rejected]`` rows, right-padded to one length (ids: pad, labels: -100, rest: 0)."""
    out = {}
    for key in [k[len("chosen_"):] for k in batch if k.startswith("chosen_")]:
        c, r = batch["chosen_" + key], batch["rejected_" + key]
        length = max(c.shape[1], r.shape[1])
        value = {"input_ids": pad_id, "labels": -100}.get(key, 0)
        out[key] = torch.cat([torch.nn.functional.pad(x, (0, length - x.shape[1]), value=value) for x in (c, r)])
    return out


def test_preference_batch_vision_reuse_and_lora(saved, videos):
    from peft import LoraConfig, get_peft_model

    _, folder = saved
    b = backend(path=str(folder))
    enc = [b.encode_preference(video=str(videos[0]), prompt="Describe the video.", chosen="red then blue.", rejected="blue.", max_length=600),
           b.encode_preference(video={"type": "video", "path": str(videos[2]), "start": 1.0}, prompt="What happens?",
                               chosen="a bar moves.", rejected="nothing at all happens here.", max_length=600)]
    batch = b.collate_preference(enc)
    tok, cfg = b.processor, b.model.config
    tokens = (batch["video_grid_thw"].prod(-1) // cfg.vision_config.spatial_merge_size**2).tolist()
    for side, answers in (("chosen", ["red then blue.", "a bar moves."]), ("rejected", ["blue.", "nothing at all happens here."])):
        ids, labels, mask = batch[f"{side}_input_ids"], batch[f"{side}_labels"], batch[f"{side}_attention_mask"]
        for row in range(2):
            n, learned = int(mask[row].sum()), labels[row] != -100
            first = int(learned.nonzero()[0])
            assert not learned[:first].any() and learned[first:n].all() and not learned[n:].any()
            assert tok.decode(ids[row][learned]) == answers[row] + "<|im_end|>"  # ms-swift: the last round ends at its suffix
            assert int((ids[row] == cfg.video_token_id).sum()) == tokens[row]
            # One <t seconds> stamp and one vision span per temporal patch, inside the template's span.
            text = tok.decode(ids[row][:n])
            assert text.count(" seconds>") == int(batch["video_grid_thw"][row, 0])
            assert text.count("<|vision_start|>") == int(batch["video_grid_thw"][row, 0]) + 1
            assert torch.equal(batch[f"{side}_mm_token_type_ids"][row], (ids[row] == cfg.video_token_id).long() * 2)

    model = b.load_model()
    shared, chosen, _ = preference_parts(batch)
    both = concatenated(batch, b.processor.pad_token_id)
    with torch.no_grad():
        features = b.vision_features(model, shared)
        # One entry per video: (embeddings, one deepstack feature per deepstack layer).
        assert len(features) == int(shared["video_grid_thw"].shape[0])
        assert all(len(deepstack) == len(cfg.vision_config.deepstack_visual_indexes) for _, deepstack in features)
        for rows, repeat in ((chosen, 1), (both, 2)):  # chosen rows; [chosen; rejected] as DPO runs them
            raw = model(**rows, **b.model_inputs(shared, repeat=repeat)).logits
            reused = model(**rows, **b.model_inputs(shared, vision_features=features, repeat=repeat)).logits
            torch.testing.assert_close(raw, reused, atol=1e-5, rtol=1e-5)
        # Without the deepstack features the logits differ: carrying them is not a no-op.
        crippled = tuple((pooled, tuple(torch.zeros_like(f) for f in deepstack)) for pooled, deepstack in features)
        assert not torch.allclose(model(**chosen, **b.model_inputs(shared, vision_features=crippled)).logits,
                                  model(**chosen, **b.model_inputs(shared)).logits, atol=1e-4)

    for p in model.parameters():
        p.requires_grad_(False)
    targets = b.lora_target_modules(model)
    assert targets and all(t.startswith("model.language_model.") for t in targets)
    assert {t.rsplit(".", 1)[1] for t in targets} >= {"q_proj", "k_proj", "v_proj", "o_proj"}
    peft = get_peft_model(model, LoraConfig(r=4, target_modules=targets))
    loss = peft(**chosen, **b.model_inputs(shared)).loss
    assert torch.isfinite(loss)
    loss.backward()
    vision = tuple(n + "." for n in b.vision_module_names(peft.get_base_model()))
    assert vision == ("model.visual.",)
    lora_b = [p for n, p in peft.named_parameters() if "lora_B" in n]
    assert lora_b and all(p.grad is not None and p.grad.abs().sum() > 0 for p in lora_b)
    assert all(p.grad is None for n, p in peft.get_base_model().named_parameters() if n.startswith(vision))
    with pytest.raises(SkipSample, match="max_length"):
        b.encode_preference(video=str(videos[0]), prompt="Describe.", chosen="x", rejected="y", max_length=20)


def test_sft_batch_and_merge(saved, videos, tmp_path):
    from peft import LoraConfig, get_peft_model

    _, folder = saved
    b = backend(path=str(folder))
    image = np.random.default_rng(3).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    messages = [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "video"}, {"type": "text", "text": "And?"}]},
                {"role": "assistant", "content": "a bar."}, {"role": "user", "content": "Then?"}, {"role": "assistant", "content": "It stops."}]
    enc = [b.encode_sft(messages=messages, videos=[videos[1]], max_length=800),
           b.encode_sft(messages=[{"role": "user", "content": "<video> Describe."}, {"role": "assistant", "content": "red."}], videos=[videos[0]], max_length=800)]
    batch = b.collate_sft(enc)
    tok = b.processor
    # ms-swift: each response + "<|im_end|>" trained; the newline between turns untrained.
    assert tok.decode(batch["input_ids"][0][batch["labels"][0] != -100]) == "a bar.<|im_end|>It stops.<|im_end|>"
    model = b.load_model()
    out = model(**batch)
    assert torch.isfinite(out.loss)
    # LoRA on the language model and the tower (SFT), merged, saved and loaded back by path.
    for p in model.parameters():
        p.requires_grad_(False)
    peft = get_peft_model(model, LoraConfig(r=4, target_modules=b.lora_target_modules(model) + b.vision_lora_target_modules(model)))
    assert any(n.startswith("model.visual.") for n in b.vision_lora_target_modules(model))
    for name, p in peft.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.5)
    with torch.no_grad():
        expected = peft(**batch).logits
    b.merge_and_save(peft, tmp_path / "merged")
    again = backend(path=str(tmp_path / "merged"))
    with torch.no_grad():
        torch.testing.assert_close(again.load_model()(**batch).logits, expected, atol=1e-4, rtol=1e-4)


def test_an_items_pixel_budget_and_a_total_budget_apply():
    """The captioner's clips carry their own max_pixels; the release preset's total_pixels caps
    each frame by qwen-vl-utils' rule max(min(max, total / frames * 2), int(1.05 * min))."""
    b = backend(preset="tiny-random", max_pixels=4000, min_pixels=784)
    frames = list(np.zeros((4, 240, 320, 3), np.uint8))
    plain = b.visual_inputs({"type": "video", "frames": frames})
    bigger = b.visual_inputs({"type": "video", "frames": frames, "max_pixels": 40000})
    assert bigger["grid"][1] * bigger["grid"][2] > plain["grid"][1] * plain["grid"][2]
    capped = b.visual_inputs({"type": "video", "frames": frames}, max_pixels=40000, total_pixels=20000)
    cap = max(min(40000, 20000 / 4 * 2), int(784 * 1.05))  # 10000 px per frame
    rh, rw = reference_clip_resize(4, 240, 320, 32, 784 * 4, cap * 4)
    assert capped["grid"] == [2, rh // 16, rw // 16]
