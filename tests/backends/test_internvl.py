"""InternVL2.5 backend on a real (tiny, random) transformers InternVLForConditionalGeneration."""

import json
import shutil

import numpy as np
import pytest
import torch

from temple_core.errors import ModelError
from temple_plugins.backends.internvl import IMAGENET_MEAN, IMAGENET_STD, InternVLBackend
from test_qwen_vl import conversations


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


def test_batched_greedy_equals_one_at_a_time(folder, videos):
    b = backend(path=str(folder))
    rows = []
    b.model.register_forward_pre_hook(lambda m, a, k: rows.append(k["input_ids"].shape[0]) if k.get("input_ids") is not None and k["input_ids"].shape[1] > 1 else None, with_kwargs=True)
    convs = conversations(videos)
    batched = b.chat(convs, max_new_tokens=6)
    assert rows == [4]  # one prefill for the four conversations
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
    shared = {k: v for k, v in batch.items() if not k.startswith(("chosen_", "rejected_"))}
    rejected = {k[len("rejected_"):]: v for k, v in batch.items() if k.startswith("rejected_")}
    with torch.no_grad():
        raw = model(**rejected, **b.model_inputs(shared)).logits
        reused = model(**rejected, **b.model_inputs(shared, vision_features=b.vision_features(model, shared))).logits
    torch.testing.assert_close(raw, reused, atol=1e-5, rtol=1e-5)
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


def test_errors(folder, tmp_path):
    remote = tmp_path / "remote"
    remote.mkdir()
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="internvl_chat", auto_map={"AutoModel": "modeling_internvl_chat.InternVLChatModel"})
    (remote / "config.json").write_text(json.dumps(config))
    shutil.copy(next(folder.glob("*.safetensors")), remote)
    with pytest.raises(ModelError, match="trust_remote_code"):
        backend(path=str(remote)).load_model()
    with pytest.raises(ModelError, match="convert"):
        backend(path=str(remote), trust_remote_code=True).load_model()
    with pytest.raises(ModelError, match="wrong backend"):
        from temple_plugins.backends.qwen_vl import Qwen2VLBackend

        Qwen2VLBackend(Qwen2VLBackend.Options(path=str(folder))).load_model()
    with pytest.raises(ModelError, match="does not exist"):
        backend(path=str(tmp_path / "none")).load_model()
