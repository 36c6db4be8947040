"""The llava_onevision backend on a real (tiny, random) transformers LlavaOnevisionForConditionalGeneration:
registration through the entry point, frames and tokens, the transformers processor's tensors,
batched chat, training batches with one vision pass per pair, LoRA, merge."""

import json
import math
import subprocess
import sys

import av
import numpy as np
import pytest
import torch

from temple_core.errors import ModelError, SkipSample
from temple_llava_onevision import LlavaOneVisionBackend

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # LlavaOnevisionVideoProcessor / ImageProcessor defaults
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def backend(**options):
    return LlavaOneVisionBackend(LlavaOneVisionBackend.Options(**{"num_frames": 4, **options}))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    b = backend(preset="tiny-random")
    out = tmp_path_factory.mktemp("llava-ov") / "model"
    b.merge_and_save(b.load_model(), out)
    return out


def random_image(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def conversations(videos):
    return [
        [{"role": "user", "content": [{"type": "video", "path": str(videos[0])}, {"type": "text", "text": "Describe the video."}]}],
        [{"role": "user", "content": [{"type": "video", "path": str(videos[1]), "start": 0.5, "end": 2.0}, {"type": "text", "text": "What happens first?"}]}],
        [{"role": "user", "content": [{"type": "image", "image": random_image(40, 60, 1)}, {"type": "image", "image": random_image(50, 30, 2)},
                                      {"type": "text", "text": "What changed?"}]}],
        [{"role": "user", "content": [{"type": "text", "text": "Summarise the clips."}, {"type": "video", "path": str(videos[2])}]}],
    ]


def test_registered_through_the_entry_point_with_its_distribution():
    out = subprocess.run([sys.executable, "-m", "temple_core", "plugins", "list", "--kind", "backends", "--json"],
                         capture_output=True, text=True, check=True)
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    row = rows["llava_onevision"]
    assert row["status"] == "ok" and row["source"].startswith("temple-llava-onevision 0.1.0")
    assert "LLaVA-OneVision" in row["summary"]


# -- frames, pixels, tokens -------------------------------------------------------------------
def decode_all(path):
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def reference_pixels(frames, size, mean=CLIP_MEAN, std=CLIP_STD):
    """Resized as torchvision resizes uint8 on the CPU (torch's native bicubic antialiased kernel), then normalised."""
    x = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bicubic", antialias=True, align_corners=False).float() / 255
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def test_fixed_frame_count_pixels_and_tokens(saved, videos):
    b = backend(path=str(saved), num_frames=8)
    cfg = b.model.config
    size, per_side = cfg.vision_config.image_size, cfg.vision_config.image_size // cfg.vision_config.patch_size
    # Given frames: 5 of them, 8 wanted -> lmms-eval's truncated linspace repeats some.
    given = [random_image(37, 101, s) for s in range(5)]
    vis = b.visual_inputs({"type": "video", "frames": given})
    picked = [math.floor(k * 4 / 7) for k in range(8)]
    assert vis["frames"] == 8 and vis["tokens"] == 8 * math.ceil(per_side / 2) ** 2 + 1
    torch.testing.assert_close(vis["pixels"], reference_pixels([given[i] for i in picked], size), atol=1e-5, rtol=0)
    # A clip of a file: a.mp4 is 12 frames at 4 fps; 0.5 s .. 2.5 s are frames 2..9, 4 of them spread over it.
    clip = backend(path=str(saved)).visual_inputs({"type": "video", "path": str(videos[0]), "start": 0.5, "end": 2.5})
    every = decode_all(videos[0])
    torch.testing.assert_close(clip["pixels"], reference_pixels([every[i] for i in (2, 4, 6, 9)], size), atol=1e-5, rtol=0)
    # A stage's max_frames caps num_frames.
    assert b.visual_inputs({"type": "video", "frames": given}, max_frames=3)["frames"] == 3
    # Images: padded to a square with the mean colour, one tile, its tokens and a newline.
    image = random_image(20, 32, 7)
    tile = b.visual_inputs({"type": "image", "image": image})
    square = np.empty((32, 32, 3), np.uint8)
    square[:] = [int(m * 255) for m in CLIP_MEAN]
    square[6:26] = image
    torch.testing.assert_close(tile["pixels"], reference_pixels([square], size), atol=1e-5, rtol=0)
    assert tile["tokens"] == per_side**2 + 1


def test_checkpoint_mean_and_std(saved, tmp_path):
    import shutil

    ckpt = tmp_path / "ckpt"
    shutil.copytree(saved, ckpt)
    (ckpt / "preprocessor_config.json").write_text(json.dumps({"image_mean": [0.5] * 3, "image_std": [0.5] * 3}))
    frames = [random_image(32, 32, 3)] * 4
    vis = backend(path=str(ckpt)).visual_inputs({"type": "video", "frames": frames})
    torch.testing.assert_close(vis["pixels"], reference_pixels(frames, 32, (0.5,) * 3, (0.5,) * 3), atol=1e-5, rtol=0)


def test_same_inputs_as_the_transformers_processor(saved, videos):
    """Where torchvision imports: transformers' LlavaOnevisionProcessor (torchvision image and
    video processors, the backend's tokenizer) gives the same input_ids, pixel values and sizes."""
    pytest.importorskip("torchvision", reason="transformers' LLaVA-OneVision processors need torchvision")
    from transformers import LlavaOnevisionImageProcessor, LlavaOnevisionProcessor, LlavaOnevisionVideoProcessor

    b = backend(path=str(saved))
    cfg = b.model.config
    size = cfg.vision_config.image_size
    proc = LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessor(size={"height": size, "width": size}, image_grid_pinpoints=cfg.image_grid_pinpoints),
        video_processor=LlavaOnevisionVideoProcessor(size={"height": size, "width": size}), tokenizer=b.processor,
        num_image_tokens=(size // cfg.vision_config.patch_size) ** 2, vision_feature_select_strategy=cfg.vision_feature_select_strategy,
        chat_template=b.processor.chat_template)
    for shape, (h, w) in enumerate([(37, 101), (64, 48), (32, 32)]):
        frames = [random_image(h, w, 10 + shape + k) for k in range(4)]
        images = [random_image(h + 3, w, 20 + shape), random_image(w, h + 9, 30 + shape)]
        content = [{"type": "image", "image": images[0]}, {"type": "image", "image": images[1]},
                   {"type": "video", "frames": frames}, {"type": "text", "text": "Compare."}]
        messages = [{"role": "user", "content": content}]
        text = b.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ref = proc(text=[text], images=[images], videos=[np.stack(frames)], return_tensors="pt")
        visuals = [b.visual_inputs(c) for c in content[:3]]
        ours = b.visual_batch(visuals)
        assert b.processor(b.render(messages, visuals, True), add_special_tokens=False)["input_ids"] == ref["input_ids"][0].tolist()
        for key in ("pixel_values", "pixel_values_videos", "image_sizes"):
            torch.testing.assert_close(ours[key], ref[key].to(ours[key].dtype), atol=1e-5, rtol=0)


# -- chat -------------------------------------------------------------------------------------
def test_batched_greedy_equals_one_at_a_time(saved, videos):
    b = backend(path=str(saved), batch_size=8)
    rows = []
    b.model.register_forward_pre_hook(lambda m, a, k: rows.append(k["input_ids"].shape[0]) if k.get("input_ids") is not None and k["input_ids"].shape[1] > 1 else None, with_kwargs=True)
    convs = conversations(videos)
    batched = b.chat(convs, max_new_tokens=6)
    assert rows == [4]
    assert batched == [b.chat([c], max_new_tokens=6)[0] for c in convs]
    assert any(batched)


def test_unsupported_inputs_are_named(saved):
    b = backend(path=str(saved))
    lone = [[{"role": "user", "content": [{"type": "image", "image": random_image(30, 40)}, {"type": "text", "text": "What is it?"}]}]]
    with pytest.raises(ModelError, match="single image"):
        b.chat(lone, max_new_tokens=2)
    v4, v2 = (b.visual_inputs({"type": "video", "frames": [random_image(32, 32)] * n}, max_frames=n) for n in (4, 2))
    with pytest.raises(ModelError, match="same frame count"):
        b.visual_batch([v4, v2])
    with pytest.raises(ModelError, match="wrong backend"):
        from temple_core.models.hf import HFChatBackend  # any other family refuses this checkpoint, and this one others'

        class Other(HFChatBackend):
            family, model_types = "other", ("qwen2_vl",)

        Other(Other.Options(path=str(saved))).load_model()


# -- training ---------------------------------------------------------------------------------
def test_preference_batch_vision_reuse_and_lora(saved, videos):
    from peft import LoraConfig, get_peft_model

    b = backend(path=str(saved))
    enc = [b.encode_preference(video=str(v), prompt="Describe.", chosen=c, rejected=r, max_length=400)
           for v, c, r in ((videos[0], "red then blue.", "blue."), (videos[2], "a bar moves.", "nothing at all happens here."))]
    batch = b.collate_preference(enc)
    video_id = b.model.config.video_token_id
    for side in ("chosen", "rejected"):
        ids, labels, mask = batch[f"{side}_input_ids"], batch[f"{side}_labels"], batch[f"{side}_attention_mask"]
        for row in range(2):
            learned, n = labels[row] != -100, int(mask[row].sum())
            first = int(learned.nonzero()[0])
            assert learned[first:n].all() and not learned[:first].any() and not learned[n:].any()
            assert int((ids[row] == video_id).sum()) == 4 * b.tokens_per_frame() + 1
    model = b.load_model()
    shared = {k: v for k, v in batch.items() if not k.startswith(("chosen_", "rejected_"))}
    chosen = {k[len("chosen_"):]: v for k, v in batch.items() if k.startswith("chosen_")}
    rejected = {k[len("rejected_"):]: v for k, v in batch.items() if k.startswith("rejected_")}
    calls = []
    hook = model.get_submodule(b.vision_module_names(model)[0]).register_forward_pre_hook(lambda m, a: calls.append(1))
    with torch.no_grad():
        features = b.vision_features(model, shared)
        assert len(calls) == 1
        for rows in (chosen, rejected):
            raw = model(**rows, **b.model_inputs(shared)).logits
            reused = model(**rows, **b.model_inputs(shared, vision_features=features)).logits
            torch.testing.assert_close(raw, reused, atol=1e-5, rtol=1e-5)
    assert len(calls) == 3  # once for the features, once per raw forward: reused forwards skip the tower
    hook.remove()
    for p in model.parameters():
        p.requires_grad_(False)
    targets = b.lora_target_modules(model)
    assert targets and all(t.startswith("model.language_model.") for t in targets)
    peft = get_peft_model(model, LoraConfig(r=4, target_modules=targets))
    peft(**chosen, **b.model_inputs(shared)).loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for n, p in peft.named_parameters() if "lora_B" in n)
    vision = tuple(n + "." for n in b.vision_module_names(peft.get_base_model()))
    assert vision == ("model.vision_tower.", "model.multi_modal_projector.")
    assert all(p.grad is None for n, p in peft.get_base_model().named_parameters() if n.startswith(vision))
    with pytest.raises(SkipSample, match="max_length"):
        b.encode_preference(video=str(videos[0]), prompt="Describe.", chosen="x", rejected="y", max_length=10)


def test_sft_batch_trains_and_merges(saved, videos, tmp_path):
    from peft import LoraConfig, get_peft_model

    b = backend(path=str(saved))
    messages = [{"role": "user", "content": "<video>\nDescribe."}, {"role": "assistant", "content": "A bar moves."},
                {"role": "user", "content": "And then?"}, {"role": "assistant", "content": "It stops."}]
    batch = b.collate_sft([b.encode_sft(messages=messages, videos=[videos[1]], max_length=400),
                           b.encode_sft(messages=messages[:2], videos=[videos[0]], max_length=400)])
    # ms-swift's rule (temple's default turn_end): each answer + "<|im_end|>" trained, the newline between turns not.
    assert b.processor.decode(batch["input_ids"][0][batch["labels"][0] != -100]) == "A bar moves.<|im_end|>It stops.<|im_end|>"
    model = b.load_model()
    for p in model.parameters():
        p.requires_grad_(False)
    peft = get_peft_model(model, LoraConfig(r=4, target_modules=b.lora_target_modules(model) + b.vision_lora_target_modules(model)))
    for name, p in peft.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.5)
    with torch.no_grad():
        expected = peft(**batch).logits
    assert torch.isfinite(peft(**batch).loss)
    b.merge_and_save(peft, tmp_path / "merged")
    with torch.no_grad():
        torch.testing.assert_close(backend(path=str(tmp_path / "merged")).load_model()(**batch).logits, expected, atol=1e-4, rtol=1e-4)
