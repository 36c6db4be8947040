"""InternVL2.5 backend on a real (tiny, random) transformers InternVLForConditionalGeneration."""

import json
import shutil

import numpy as np
import pytest
import torch

from testkit.backends import assert_vision_reuse_matches, conversations, preference_parts
from temple_core.errors import ModelError
from temple_plugins.backends.internvl import IMAGENET_MEAN, IMAGENET_STD, InternVLBackend

# Image sizes (height, width) for the tiling tests: wide, tall, square at the tile size, larger
# than a tile, odd, tiny, and sizes where the grid choice hits a tie.
IMAGE_SIZES = [(100, 300), (300, 100), (56, 56), (400, 500), (37, 101), (57, 43), (5, 200), (40, 50), (112, 56), (90, 180)]


def backend(**options):
    return InternVLBackend(InternVLBackend.Options(**{"fps": 2.0, **options}))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    b = backend(preset="tiny-random")
    out = tmp_path_factory.mktemp("internvl") / "model"
    b.merge_and_save(b.load_model(), out)
    return out


def test_frame_layout_and_pixels(folder):
    b = backend(path=str(folder))
    size = b.model.config.vision_config.image_size[0]
    frames = np.random.default_rng(0).integers(0, 256, (3, size, size, 3), dtype=np.uint8)  # no resize needed
    vis = b.visual_inputs({"type": "video", "frames": list(frames)})
    expected = (frames / 255.0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(vis["pixels"].permute(0, 2, 3, 1).double().numpy(), expected, atol=1e-5)
    seq = b.model.config.image_seq_length
    text = b.expand_placeholder("<video>", vis)
    assert text == "\n".join(f"Frame{i}: <img>{'<IMG_CONTEXT>' * seq}</img>" for i in (1, 2, 3))
    odd = b.visual_inputs({"type": "video", "frames": list(np.zeros((5, 37, 101, 3), np.uint8))})
    assert tuple(odd["pixels"].shape) == (5, 3, size, size) and odd["tokens"] == 5 * seq


# -- image tiling -------------------------------------------------------------------------------
def reference_tiles(image, tile, low, high, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """InternVL's dynamic tiling written out again: the (columns, rows) grid with low..high tiles
    whose aspect ratio is nearest the image's (ties: more tiles while the image area exceeds half
    of the grid's), the image resized to it and cut row by row, then a thumbnail when > 1 tile.
    Resized as torchvision resizes uint8 on the CPU: torch's native uint8 bicubic antialiased kernel."""
    h, w = image.shape[:2]
    grids = sorted(((c, r) for c in range(1, high + 1) for r in range(1, high + 1) if low <= c * r <= high), key=lambda g: g[0] * g[1])
    best, best_diff = (1, 1), float("inf")
    for c, r in grids:
        diff = abs(w / h - c / r)
        if diff < best_diff:
            best, best_diff = (c, r), diff
        elif diff == best_diff and h * w > 0.5 * tile * tile * c * r:
            best = (c, r)

    def resize(height, width):
        x = torch.from_numpy(image).permute(2, 0, 1)[None]
        if (height, width) != (h, w):
            x = torch.nn.functional.interpolate(x, size=(height, width), mode="bicubic", antialias=True, align_corners=False)
        return x[0].float()

    c, r = best
    big = resize(r * tile, c * tile)
    tiles = [big[:, i * tile:(i + 1) * tile, j * tile:(j + 1) * tile] for i in range(r) for j in range(c)]
    if len(tiles) > 1:
        tiles.append(resize(tile, tile))
    x = torch.stack(tiles) / 255.0
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1), best


def random_image(h, w, seed=0):
    return np.random.default_rng(seed + h * 1000 + w).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_image_tiles_match_the_reference_and_the_library(folder):
    from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import GotOcr2ImageProcessorPil

    b = backend(path=str(folder))
    tile, seq = b.model.config.vision_config.image_size[0], b.model.config.image_seq_length
    stock = GotOcr2ImageProcessorPil(size={"height": tile, "width": tile}, image_mean=list(IMAGENET_MEAN), image_std=list(IMAGENET_STD))
    seen = set()
    for low, high in ((1, 12), (1, 4), (2, 6), (1, 1)):
        b = backend(path=str(folder), min_image_tiles=low, max_image_tiles=high)
        for h, w in IMAGE_SIZES:
            image = random_image(h, w)
            vis = b.visual_inputs({"type": "image", "image": image})
            expected, grid = reference_tiles(image, tile, low, high)
            seen.add(grid)
            torch.testing.assert_close(vis["pixels"], expected.float(), atol=1e-5, rtol=0)
            assert vis["kind"] == "image" and vis["tiles"] == len(expected) and vis["tokens"] == seq * len(expected)
            assert b.expand_placeholder("<IMG_CONTEXT>", vis) == "<img>" + "<IMG_CONTEXT>" * (seq * len(expected)) + "</img>"
            # transformers' own numpy processor: the same tiles in the same order; its PIL bicubic
            # differs from torchvision's by 1-2 grey levels (up to ~16 at some pixels when upscaling).
            lib = stock(images=[image], crop_to_patches=True, min_patches=low, max_patches=high, return_tensors="pt")
            assert lib["num_patches"].tolist() == [len(expected)]
            assert (lib["pixel_values"] - vis["pixels"]).abs().mean(dim=(1, 2, 3)).max() < 0.02  # ~1 grey level
    # Hand-checked grids at 56-pixel tiles: 300x100 -> 6x2 (the tie with 3x1 goes to more tiles
    # while the image is larger than half of them), 4 tiles at most -> 3x1, a tile-sized square -> 1.
    assert {(6, 2), (2, 6), (3, 1), (1, 3), (1, 1), (4, 3), (2, 1), (1, 2)} <= seen
    assert backend(path=str(folder)).visual_inputs({"type": "image", "image": random_image(100, 300)})["tiles"] == 13
    assert backend(path=str(folder), max_image_tiles=4).visual_inputs({"type": "image", "image": random_image(100, 300)})["tiles"] == 4
    assert backend(path=str(folder)).visual_inputs({"type": "image", "image": random_image(56, 56)})["tiles"] == 1


def test_image_tiling_options_and_checkpoint_config(folder, tmp_path):
    from PIL import Image

    image = random_image(100, 300)
    tile = backend(path=str(folder)).model.config.vision_config.image_size[0]
    # image_tiling: false -> one tile, the image resized to the tower's square (as a video frame).
    one = backend(path=str(folder), image_tiling=False).visual_inputs({"type": "image", "image": image})
    frame = backend(path=str(folder)).visual_inputs({"type": "video", "frames": [image]})
    assert one["tiles"] == 1 and torch.equal(one["pixels"], frame["pixels"])
    # PIL images (any mode) go through RGB, as the processor's do_convert_rgb.
    pil = backend(path=str(folder)).visual_inputs({"type": "image", "image": Image.fromarray(image).convert("RGBA")})
    torch.testing.assert_close(pil["pixels"], reference_tiles(image, tile, 1, 12)[0].float(), atol=1e-5, rtol=0)
    grey = backend(path=str(folder)).visual_inputs({"type": "image", "image": image[..., 0]})
    assert grey["tiles"] == 13
    with pytest.raises(ModelError, match="uint8"):
        backend(path=str(folder)).visual_inputs({"type": "image", "image": image.astype(np.float32)})
    # The checkpoint's preprocessor_config.json: its tile range and mean/std; options override the range.
    ckpt = tmp_path / "ckpt"
    shutil.copytree(folder, ckpt)
    mean, std = [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]
    (ckpt / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "GotOcr2ImageProcessorFast", "crop_to_patches": False, "min_patches": 1, "max_patches": 4,
        "size": {"height": tile, "width": tile}, "image_mean": mean, "image_std": std, "resample": 3}))
    vis = backend(path=str(ckpt)).visual_inputs({"type": "image", "image": image})
    torch.testing.assert_close(vis["pixels"], reference_tiles(image, tile, 1, 4, mean, std)[0].float(), atol=1e-5, rtol=0)
    assert backend(path=str(ckpt), max_image_tiles=12).visual_inputs({"type": "image", "image": image})["tiles"] == 13
    with pytest.raises(ModelError, match="min_image_tiles 6 > max_image_tiles 4"):
        backend(path=str(ckpt), min_image_tiles=6).visual_inputs({"type": "image", "image": image})
    with pytest.raises(ValueError, match="min_image_tiles"):
        backend(path=str(folder), min_image_tiles=3, max_image_tiles=2)
    with pytest.raises(ValueError, match="at least 1"):
        backend(path=str(folder), max_image_tiles=0)


def test_same_inputs_as_the_transformers_processor(folder):
    """transformers' full InternVLProcessor (torchvision image and video processors): the same
    input_ids and pixel_values for a conversation of images and a video."""
    pytest.importorskip("torchvision", reason="transformers' InternVL processors need torchvision (scripts/lmms_eval_bridge.sh runs this in its environment)")
    from transformers import AutoTokenizer, InternVLProcessor, InternVLVideoProcessor
    from transformers.models.got_ocr2.image_processing_got_ocr2 import GotOcr2ImageProcessor

    b = backend(path=str(folder))
    tile, seq = b.model.config.vision_config.image_size[0], b.model.config.image_seq_length
    tok = AutoTokenizer.from_pretrained(folder, extra_special_tokens={
        "start_image_token": "<img>", "end_image_token": "</img>", "context_image_token": "<IMG_CONTEXT>", "video_token": "<video>"})
    common = {"size": {"height": tile, "width": tile}, "image_mean": list(IMAGENET_MEAN), "image_std": list(IMAGENET_STD)}
    # crop_to_patches false in the image processor's own config: InternVLProcessor tiles anyway.
    proc = InternVLProcessor(image_processor=GotOcr2ImageProcessor(crop_to_patches=False, **common),
                             video_processor=InternVLVideoProcessor(**common), tokenizer=tok, image_seq_length=seq)
    video = np.random.default_rng(1).integers(0, 256, (3, 37, 101, 3), dtype=np.uint8)
    sizes = IMAGE_SIZES
    for first, second in zip(sizes, sizes[1:] + sizes[:1]):
        images = [random_image(*first), random_image(*second)]
        content = [{"type": "image", "image": images[0]}, {"type": "video", "frames": list(video)},
                   {"type": "image", "image": images[1]}, {"type": "text", "text": "Compare."}]
        messages = [{"role": "user", "content": content}]
        text = b.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ref = proc(text=[text], images=images, videos=[video], return_tensors="pt")
        vis = [b.visual_inputs(c) for c in content[:3]]
        ids = b.processor(b.render(messages, vis, True), add_special_tokens=False)["input_ids"]
        assert ids == ref["input_ids"][0].tolist()
        torch.testing.assert_close(b.visual_batch(vis)["pixel_values"], ref["pixel_values"], atol=1e-5, rtol=0)


# -- chat ---------------------------------------------------------------------------------------
def test_batched_greedy_equals_one_at_a_time(folder, videos):
    b = backend(path=str(folder))
    rows = []
    b.model.register_forward_pre_hook(lambda m, a, k: rows.append(k["input_ids"].shape[0]) if k.get("input_ids") is not None and k["input_ids"].shape[1] > 1 else None, with_kwargs=True)
    # Multi-tile images (40x50: 12 tiles + thumbnail) beside videos, and one conversation with both.
    wide = random_image(30, 90)
    convs = conversations(videos) + [[{"role": "user", "content": [
        {"type": "image", "image": wide}, {"type": "video", "path": str(videos[1])}, {"type": "text", "text": "What happens next?"}]}]]
    assert [b.visual_inputs(c)["tiles"] for c in convs[3][0]["content"][:2] + convs[4][0]["content"][:1]] == [13, 13, 4]
    batched = b.chat(convs, max_new_tokens=6)
    assert rows == [5]  # one prefill for the five conversations
    assert batched == [b.chat([c], max_new_tokens=6)[0] for c in convs]
    assert any(batched)


def test_preference_batch_and_vision_reuse(folder, videos):
    from peft import LoraConfig, get_peft_model

    b = backend(path=str(folder))
    enc = [b.encode_preference(video=str(v), prompt="Describe.", chosen=c, rejected=r, max_length=400)
           for v, c, r in ((videos[0], "a bar.", "nothing here at all."), (videos[1], "red then blue.", "blue."))]
    batch = b.collate_preference(enc)
    image_id = b.model.config.image_token_id
    seq = b.model.config.image_seq_length
    for side in ("chosen", "rejected"):
        ids, labels, mask = batch[f"{side}_input_ids"], batch[f"{side}_labels"], batch[f"{side}_attention_mask"]
        assert int((ids == image_id).sum()) == batch["pixel_values"].shape[0] * seq
        for row in range(2):
            learned = labels[row] != -100
            first, n = int(learned.nonzero()[0]), int(mask[row].sum())
            assert learned[first:n].all() and not learned[:first].any() and not learned[n:].any()
            assert torch.equal(labels[row][learned], ids[row][learned])
    model = b.load_model()
    shared, chosen, rejected = preference_parts(batch)
    assert_vision_reuse_matches(b, model, shared, rejected)
    for p in model.parameters():
        p.requires_grad_(False)
    peft = get_peft_model(model, LoraConfig(r=4, target_modules=b.lora_target_modules(model)))
    loss = peft(**rejected, **b.model_inputs(shared)).loss
    assert torch.isfinite(loss)
    loss.backward()
    lora_b = [p for n, p in peft.named_parameters() if "lora_B" in n]
    assert lora_b and all(p.grad is not None and p.grad.abs().sum() > 0 for p in lora_b)
    vision = tuple(n + "." for n in b.vision_module_names(peft.get_base_model()))
    assert all(p.grad is None for n, p in peft.get_base_model().named_parameters() if n.startswith(vision))


def test_sft_batch_with_a_tiled_image(folder, videos):
    b = backend(path=str(folder))
    messages = [{"role": "user", "content": [{"type": "image", "image": random_image(40, 90)}, {"type": "video"}, {"type": "text", "text": "And?"}]},
                {"role": "assistant", "content": "a bar."}]
    enc = [b.encode_sft(messages=messages, videos=[videos[0]], max_length=600),
           b.encode_sft(messages=[{"role": "user", "content": "<video> Describe."}, {"role": "assistant", "content": "red."}], videos=[videos[2]], max_length=600)]
    assert [v["kind"] for v in enc[0]["visuals"]] == ["image", "video"] and enc[0]["visuals"][0]["tiles"] > 1
    batch = b.collate_sft(enc)
    seq = b.model.config.image_seq_length
    assert int((batch["input_ids"] == b.model.config.image_token_id).sum()) == batch["pixel_values"].shape[0] * seq
    model = b.load_model()
    shared = {"pixel_values": batch["pixel_values"]}
    text = {k: batch[k] for k in ("input_ids", "attention_mask", "labels")}
    with torch.no_grad():
        raw = model(**text, **b.model_inputs(shared)).logits
        reused = model(**text, **b.model_inputs(shared, vision_features=b.vision_features(model, shared))).logits
    torch.testing.assert_close(raw, reused, atol=1e-5, rtol=1e-5)


def test_errors(folder, tmp_path):
    remote = tmp_path / "remote"
    remote.mkdir()
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="internvl_chat", auto_map={"AutoModel": "modeling_internvl_chat.InternVLChatModel"})
    (remote / "config.json").write_text(json.dumps(config))
    shutil.copy(next(folder.glob("*.safetensors")), remote)
    with pytest.raises(ModelError, match="trust_remote_code"):
        backend(path=str(remote)).load_model()
    with pytest.raises(ModelError, match="internvl_chat but has no llm_config"):  # converted when allowed: see test_internvl_original.py
        backend(path=str(remote), trust_remote_code=True).load_model()
    with pytest.raises(ModelError, match="wrong backend"):
        from temple_plugins.backends.qwen_vl import Qwen2VLBackend

        Qwen2VLBackend(Qwen2VLBackend.Options(path=str(folder))).load_model()
    with pytest.raises(ModelError, match="does not exist"):
        backend(path=str(tmp_path / "none")).load_model()
