"""Qwen2-VL, Qwen2.5-VL and MiMo-VL backends on real (tiny, random) transformers models."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from temple_core.errors import ModelError, SkipSample, TempleError
from temple_core.models.vision_tokens import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, qwen_patchify, resize_uint8
from temple_plugins.backends.qwen_vl import MiMoVLBackend, Qwen2_5VLBackend, Qwen2VLBackend
from testkit.backends import assert_vision_reuse_matches, conversations, preference_parts
from testkit.references import smart_resize

FAMILIES = {"qwen2_vl": Qwen2VLBackend, "qwen2_5_vl": Qwen2_5VLBackend, "mimo_vl": MiMoVLBackend}


def backend(name, **options):
    cls = FAMILIES[name]
    return cls(cls.Options(**{"fps": 2.0, "max_pixels": 64 * 64, "min_pixels": 784, **options}))


@pytest.fixture(scope="module", params=list(FAMILIES))
def saved(request, tmp_path_factory):
    """(family, directory): the tiny-random preset saved by the backend and loaded back by path."""
    name = request.param
    b = backend(name, preset="tiny-random")
    out = tmp_path_factory.mktemp(name) / "model"
    b.merge_and_save(b.load_model(), out)
    return name, out


# -- video tensors ------------------------------------------------------------------------------
def reference_patches(frames, p, m, tps):
    """Loop-based flattening: rows in merge-window order, each row C x tps x p x p."""
    x = (frames.astype(np.float64) / 255.0 - np.array(OPENAI_CLIP_MEAN)) / np.array(OPENAI_CLIP_STD)  # T,H,W,C
    while len(x) % tps:
        x = np.concatenate([x, x[-1:]])
    T, H, W, C = x.shape
    rows = []
    for t in range(T // tps):
        for bh in range(H // p // m):
            for bw in range(W // p // m):
                for mh in range(m):
                    for mw in range(m):
                        y0, x0 = (bh * m + mh) * p, (bw * m + mw) * p
                        row = [x[t * tps + ti, y0 + py, x0 + px, c] for c in range(C) for ti in range(tps) for py in range(p) for px in range(p)]
                        rows.append(row)
    return np.array(rows), [T // tps, H // p, W // p]


@pytest.mark.parametrize("frames,size", [(3, (56, 84)), (4, (28, 56)), (1, (56, 56)), (5, (84, 28))])
def test_patch_layout_matches_a_loop_reference(frames, size):
    rng = np.random.default_rng(frames)
    video = rng.integers(0, 256, (frames, *size, 3), dtype=np.uint8)  # already a multiple of 28: no resize
    ours, grid = qwen_patchify(video, patch_size=14, merge_size=2, temporal_patch_size=2, min_pixels=784, max_pixels=10**6)
    expected, expected_grid = reference_patches(video, 14, 2, 2)
    assert grid == expected_grid
    np.testing.assert_allclose(ours.double().numpy(), expected, atol=1e-5)


@pytest.mark.parametrize("h,w,max_pixels", [(48, 64, 90000), (37, 101, 4000), (480, 640, 50000), (17, 23, 3136), (1000, 60, 20000)])
def test_resize_target_follows_smart_resize_and_max_pixels(h, w, max_pixels):
    video = np.zeros((3, h, w, 3), np.uint8)
    _, grid = qwen_patchify(video, patch_size=14, merge_size=2, temporal_patch_size=2, min_pixels=784, max_pixels=max_pixels)
    rh, rw = smart_resize(h, w, 28, 784, max_pixels)
    assert grid == [2, rh // 14, rw // 14]
    assert rh * rw <= max(max_pixels, 28 * 28)


def test_flat_frames_stay_flat_after_resize():
    video = np.full((2, 37, 53, 3), 200, np.uint8)
    ours, _ = qwen_patchify(video, patch_size=14, merge_size=2, temporal_patch_size=2, min_pixels=784, max_pixels=4000)
    expected = (200 / 255 - np.array(OPENAI_CLIP_MEAN)) / np.array(OPENAI_CLIP_STD)
    np.testing.assert_allclose(ours.reshape(len(ours), 3, -1).mean(-1).numpy(), np.broadcast_to(expected, (len(ours), 3)), atol=1e-5)


REFERENCE = Path(__file__).parent / "data" / "processor_reference.npz"


def test_resize_is_bit_identical_to_the_transformers_video_processor():
    """Frames resized by transformers' Qwen2VLVideoProcessor (committed by
    data/make_processor_reference.py where torchvision imports) == ours, to the bit."""
    from testkit.backends import CASES, case_input

    reference = np.load(REFERENCE)
    for seed, frames, h, w, max_pixels in CASES:
        expected = reference[f"case{seed}"]
        rh, rw = smart_resize(h, w, 28, 784, max_pixels)
        assert expected.shape == (frames, 3, rh, rw)
        ours = resize_uint8(case_input(seed, frames, h, w), rh, rw)
        assert torch.equal(ours, torch.from_numpy(expected).float()), f"case {seed}: {(ours - torch.from_numpy(expected).float()).abs().max()}"


@pytest.mark.parametrize("name", list(FAMILIES))
def test_same_tensors_and_tokens_as_the_transformers_processor(name):
    """Where torchvision imports: the family's transformers processor (video processor, image
    processor, tokenizer) on the same frames gives our input_ids, visual tensors, grids,
    second_per_grid_ts and mm_token_type_ids."""
    pytest.importorskip("torchvision", reason="transformers' video/image processors need torchvision (scripts/lmms_eval_bridge.sh runs this in its environment)")
    from transformers import Qwen2_5_VLProcessor, Qwen2VLProcessor
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor
    from transformers.video_utils import VideoMetadata

    rng = np.random.default_rng(7)
    image = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    for frames, h, w, max_pixels, fps in [(5, 37, 101, 4000, 2.0), (4, 48, 64, 90000, 1.0), (3, 240, 320, 20000, 0.5), (1, 17, 23, 784, 2.0)]:
        b = backend(name, preset="tiny-random", max_pixels=max_pixels)
        video = rng.integers(0, 256, (frames, h, w, 3), dtype=np.uint8)
        conversation = [{"role": "user", "content": [
            {"type": "video", "frames": list(video), "fps": fps}, {"type": "image", "image": image}, {"type": "text", "text": "Describe."}]}]
        visuals = [b.visual_inputs(c) for c in conversation[0]["content"][:2]]
        ids = b.processor(b.render(conversation, visuals, True), add_special_tokens=False)["input_ids"]
        ours = {**b.visual_batch(visuals), **{k: torch.tensor([v]) for k, v in b.row_extras(ids).items()}}

        size = {"shortest_edge": 784, "longest_edge": max_pixels}
        cls = Qwen2VLProcessor if name == "qwen2_vl" else Qwen2_5_VLProcessor
        proc = cls(image_processor=Qwen2VLImageProcessor(size=size), video_processor=Qwen2VLVideoProcessor(size=size, cap_pixels_per_frame=False),
                   tokenizer=b.processor, chat_template=b.processor.chat_template)
        text = b.processor.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
        ref = proc(text=[text], images=[image], videos=[video], video_metadata=[VideoMetadata(total_num_frames=frames, fps=fps)],
                   do_sample_frames=False, return_tensors="pt")
        assert ref["input_ids"][0].tolist() == ids
        assert set(ours) <= set(ref), set(ours) - set(ref)
        for key, value in ours.items():
            torch.testing.assert_close(value, ref[key].to(value.dtype), atol=1e-6, rtol=0, msg=lambda m, k=key: f"{name} {key}: {m}")


# -- chat ---------------------------------------------------------------------------------------
def test_batched_greedy_equals_one_at_a_time(saved, videos):
    name, folder = saved
    b = backend(name, path=str(folder), batch_size=8)
    convs = conversations(videos)
    rows = []
    # Count the prefill forwards (more than one position): one for the whole batch.
    b.model.register_forward_pre_hook(lambda m, a, k: rows.append(k["input_ids"].shape[0]) if k.get("input_ids") is not None and k["input_ids"].shape[1] > 1 else None, with_kwargs=True)
    batched = b.chat(convs, max_new_tokens=6)
    assert rows == [4]
    single = [b.chat([c], max_new_tokens=6)[0] for c in convs]
    assert batched == single
    assert any(len(t) for t in batched)  # the random model writes text, so equality is not vacuous


def test_describe_and_exactly_one_source():
    assert backend("qwen2_vl", preset="tiny-random").describe() == "qwen2_vl:tiny-random"
    with pytest.raises(ModelError, match="exactly one"):
        backend("qwen2_vl")
    with pytest.raises(ModelError, match="exactly one"):
        backend("qwen2_vl", preset="tiny-random", path="/x")


def test_mimo_keeps_the_answer_after_thinking():
    b = backend("mimo_vl", preset="tiny-random")
    assert b.clean("<think>a</think> b </think> the answer ") == "the answer"
    assert b.clean("plain") == "plain"


# -- errors -------------------------------------------------------------------------------------
def test_clear_errors_for_bad_directories(saved, tmp_path):
    name, folder = saved
    with pytest.raises(ModelError, match="does not exist"):
        backend(name, path=str(tmp_path / "nope")).load_model()
    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copy(folder / "config.json", partial)
    with pytest.raises(ModelError, match="no weights"):
        backend(name, path=str(partial)).load_model()
    other = "qwen2_vl" if name != "qwen2_vl" else "qwen2_5_vl"
    with pytest.raises(ModelError, match="wrong backend"):
        backend(other, path=str(folder)).load_model()


# -- training batches ---------------------------------------------------------------------------
def test_preference_batch_labels_tokens_and_gradients(saved, videos):
    from peft import LoraConfig, get_peft_model

    name, folder = saved
    b = backend(name, path=str(folder))
    encoded = [
        b.encode_preference(video=str(videos[0]), prompt="Describe the video.", chosen="red then blue.", rejected="blue.", max_length=400),
        b.encode_preference(video={"type": "video", "path": str(videos[2]), "start": 1.0}, prompt="What happens?",
                            chosen="a bar moves.", rejected="nothing at all happens here.", max_length=400),
    ]
    batch = b.collate_preference(encoded)
    tok = b.processor
    video_id = b.model.config.video_token_id
    merge = b.model.config.vision_config.spatial_merge_size
    expected_tokens = (batch["video_grid_thw"].prod(-1) // merge**2).tolist()
    for side, answers in (("chosen", ["red then blue.", "a bar moves."]), ("rejected", ["blue.", "nothing at all happens here."])):
        ids, labels, mask = batch[f"{side}_input_ids"], batch[f"{side}_labels"], batch[f"{side}_attention_mask"]
        for row in range(2):
            n = int(mask[row].sum())
            learned = labels[row] != -100
            assert not learned[n:].any()  # padding
            assert torch.equal(labels[row][learned], ids[row][learned])
            # ms-swift 3.7 (template/base.py, the release's): the last round is response + suffix
            # "<|im_end|>", all trained, and the sequence ends there.
            assert tok.decode(ids[row][learned]) == answers[row] + "<|im_end|>"
            # Everything before the answer is prompt (-100), the answer is contiguous at the end.
            first = int(learned.nonzero()[0])
            assert not learned[:first].any() and learned[first:n].all()
            assert int((ids[row] == video_id).sum()) == expected_tokens[row]
    assert batch["pixel_values_videos"].shape[0] == int(batch["video_grid_thw"].prod(-1).sum())
    # The option: temple's earlier rule, end of turn + newline trained.
    old = backend(name, path=str(folder), turn_end="with_newline").encode_preference(
        video=str(videos[0]), prompt="Describe the video.", chosen="red then blue.", rejected="blue.", max_length=400)
    learned = [i for i, label in zip(old["chosen_input_ids"], old["chosen_labels"]) if label != -100]
    assert tok.decode(learned) == "red then blue.<|im_end|>\n" and old["chosen_input_ids"][: -1] == encoded[0]["chosen_input_ids"]

    model = b.load_model()
    shared, chosen, rejected = preference_parts(batch)
    assert_vision_reuse_matches(b, model, shared, chosen)

    for p in model.parameters():
        p.requires_grad_(False)
    peft = get_peft_model(model, LoraConfig(r=4, target_modules=b.lora_target_modules(model)))
    loss = peft(**chosen, **b.model_inputs(shared)).loss
    assert torch.isfinite(loss)
    loss.backward()
    vision = tuple(n + "." for n in b.vision_module_names(peft.get_base_model()))
    lora = [(n, p) for n, p in peft.named_parameters() if "lora_" in n]
    assert lora and all(p.grad is not None and p.grad.abs().sum() > 0 for n, p in lora if "lora_B" in n)
    assert not any("visual" in n for n, _ in lora)
    assert all(p.grad is None for n, p in peft.get_base_model().named_parameters() if n.startswith(vision))


def test_too_long_is_skipped_never_cut(saved, videos):
    name, folder = saved
    b = backend(name, path=str(folder))
    with pytest.raises(SkipSample, match="max_length"):
        b.encode_preference(video=str(videos[0]), prompt="Describe.", chosen="x", rejected="y", max_length=20)


def test_sft_batch_masks_everything_but_assistant_turns(saved, videos):
    name, folder = saved
    b = backend(name, path=str(folder))
    messages = [
        {"role": "user", "content": "<video>Describe the video."},
        {"role": "assistant", "content": "A bar moves."},
        {"role": "user", "content": "And then?"},
        {"role": "assistant", "content": "It stops."},
    ]
    enc = [b.encode_sft(messages=messages, videos=[str(videos[1])], max_length=400),
           b.encode_sft(messages=messages[:2], videos=[str(videos[0])], max_length=400)]
    batch = b.collate_sft(enc)
    tok = b.processor
    learned = tok.decode(batch["input_ids"][0][batch["labels"][0] != -100])
    # ms-swift 3.7: every response + "<|im_end|>" trained (an earlier round's chat_sep
    # "<|im_end|>\n" is untrained but for its "<|im_end|>", which _add_dynamic_eos labels); the
    # last round ends at its suffix "<|im_end|>".
    assert learned == "A bar moves.<|im_end|>It stops.<|im_end|>"
    full = tok.decode(batch["input_ids"][0][batch["attention_mask"][0] == 1])
    assert full.count("<|im_start|>assistant") == 2 and "And then?" in full
    assert "A bar moves.<|im_end|>\n<|im_start|>user" in full and full.endswith("It stops.<|im_end|>")
    # The option: end of turn + newline after every answer, all trained.
    old = backend(name, path=str(folder), turn_end="with_newline").encode_sft(messages=messages, videos=[str(videos[1])], max_length=400)
    assert tok.decode([i for i, label in zip(old["input_ids"], old["labels"]) if label != -100]) == "A bar moves.<|im_end|>\nIt stops.<|im_end|>\n"
    out = b.load_model()(**batch)
    assert torch.isfinite(out.loss)


def test_a_template_that_rewrites_earlier_answers_is_refused_not_misaligned(videos):
    """Multi-turn SFT is encoded turn by turn; a chat template that renders an earlier answer
    otherwise than it was encoded (as templates that strip a past turn's reasoning do) would
    shift every later token: the sample is refused, naming the first difference."""
    b = backend("qwen2_vl", preset="tiny-random")
    b.processor.chat_template = b.processor.chat_template.replace(
        "{% elif c['type'] == 'text' %}{{ c['text'] }}",
        "{% elif c['type'] == 'text' %}{{ '[earlier answer]' if message['role'] == 'assistant' else c['text'] }}")
    messages = [
        {"role": "user", "content": "<video>Describe the video."},
        {"role": "assistant", "content": "A bar moves."},
        {"role": "user", "content": "And then?"},
        {"role": "assistant", "content": "It stops."},
    ]
    with pytest.raises(TempleError, match=r"qwen2_vl:tiny-random: the chat template renders turn 3's history differently from its encoded turns \(first difference at token \d+: '\[earlier"):
        b.encode_sft(messages=messages, videos=[str(videos[1])], max_length=400)
    # One assistant turn has no history to disagree with.
    assert b.encode_sft(messages=messages[:2], videos=[str(videos[1])], max_length=400)["input_ids"]


@pytest.mark.parametrize("name", list(FAMILIES))
def test_backend_video_tensors_odd_sizes_and_limits(name, saved, tmp_path):
    """The backend's own path (config-driven patch sizes): 5 frames (not a multiple of the
    temporal patch), 37x101 frames, max_pixels forcing a downscale."""
    b = backend(name, preset="tiny-random", max_pixels=4000, fps=2.0)
    frames = np.random.default_rng(7).integers(0, 256, (5, 37, 101, 3), dtype=np.uint8)
    vis = b.visual_inputs({"type": "video", "frames": list(frames)})
    rh, rw = smart_resize(37, 101, 28, 784, 4000)
    assert vis["grid"] == [3, rh // 14, rw // 14]
    assert vis["tokens"] == 3 * rh * rw // 14 // 14 // 4
    assert tuple(vis["pixels"].shape) == (3 * (rh // 14) * (rw // 14), 3 * 2 * 14 * 14)
    batch = b.visual_batch([vis])
    if name == "qwen2_vl":
        assert "second_per_grid_ts" not in batch
    else:
        assert batch["second_per_grid_ts"].tolist() == [1.0]  # 2 frames per grid step at 2 fps


def test_sampling_with_a_seed_is_repeatable(videos):
    b = backend("qwen2_vl", preset="tiny-random")
    conv = conversations(videos)[:2]
    kwargs = dict(max_new_tokens=8, do_sample=True, temperature=1.5, top_p=0.9, repetition_penalty=1.1)
    first = b.chat(conv, seed=3, **kwargs)
    assert b.chat(conv, seed=3, **kwargs) == first
    assert any(b.chat(conv, seed=s, **kwargs) != first for s in (4, 5, 6))


def test_mimo_answer_survives_think_tags_that_are_special_tokens():
    b = backend("mimo_vl", preset="tiny-random")
    tok = b.processor
    tok.add_special_tokens({"additional_special_tokens": ["<think>", "</think>"]})  # as in some MiMo tokenizers
    ids = tok("<think>red first</think>blue then red<|im_end|><|endoftext|>", add_special_tokens=False)["input_ids"]
    assert b.clean(b.decode(ids)) == "blue then red"


def test_preset_build_is_deterministic(tmp_path, monkeypatch):
    from safetensors.torch import load_file

    tensors = []
    for k in range(2):
        monkeypatch.setenv("TEMPLE_CACHE", str(tmp_path / str(k)))
        folder = backend("qwen2_vl", preset="tiny-random").preset_dir()
        tensors.append(load_file(str(next(folder.glob("*.safetensors")))))
        assert (folder / "tokenizer.json").is_file()
    assert tensors[0].keys() == tensors[1].keys()
    assert all(torch.equal(tensors[0][k], tensors[1][k]) for k in tensors[0])
