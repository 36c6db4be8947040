"""InternVL3 / InternVL3.5 through the ``internvl`` backend (``internvl2_5``: the same backend
under its old name), on tiny checkpoints shaped like each release: what differs between them
in transformers' ``InternVLConfig`` is the language model (Qwen2 for InternVL3, Qwen3 with q/k
norms and its own head_dim for InternVL3.5, Llama for the converted InternLM2 of InternVL2.5-8B)
and, for the 38B/78B models, the InternViT-6B tower (RMS norms, q/k norms)."""

import numpy as np
import pytest
import torch

from temple_plugins.backends.internvl import InternVL25Backend, InternVLBackend
from testkit.backends import assert_vision_reuse_matches, conversations, preference_parts


def backend(cls=InternVLBackend, **options):
    return cls(cls.Options(**{"fps": 2.0, **options}))


def internvit_6b_shaped(tmp_path):
    """An InternVL3-38B/78B-shaped checkpoint: Qwen2 language model, InternViT-6B-style tower
    (``norm_type: rms_norm``, ``use_qk_norm``), saved with the preset's tokenizer."""
    from transformers import InternVLConfig, InternVLForConditionalGeneration

    base = backend(preset="tiny-random")
    config = base.load_model().config.to_dict()
    config["vision_config"].update(norm_type="rms_norm", use_qk_norm=True, attention_bias=False, layer_scale_init_value=0.1)
    config = InternVLConfig(**config)
    torch.manual_seed(5)
    model = InternVLForConditionalGeneration(config)
    for name, p in model.named_parameters():  # wide random norms too: every weight matters
        if "vision_tower" in name and ("norm" in name or "lambda" in name):
            torch.nn.init.normal_(p, mean=1.0, std=0.3)
    folder = tmp_path / "InternVL3-78B-shaped"
    model.save_pretrained(folder)
    base.processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module", params=["tiny-random", "tiny-random-internvl3_5", "tiny-random-llama", "internvit-6b"])
def shaped(request, tmp_path_factory):
    """(shape, folder): each shape saved by the backend and loaded back by path."""
    tmp = tmp_path_factory.mktemp(request.param)
    if request.param == "internvit-6b":
        return request.param, internvit_6b_shaped(tmp)
    b = backend(preset=request.param)
    b.merge_and_save(b.load_model(), tmp / "model")
    return request.param, tmp / "model"


EXPECTED = {
    "tiny-random": ("qwen2", "layer_norm"),
    "tiny-random-internvl3_5": ("qwen3", "layer_norm"),
    "tiny-random-llama": ("llama", "layer_norm"),
    "internvit-6b": ("qwen2", "rms_norm"),
}


def test_each_shape_loads_and_chats_batched_as_one_at_a_time(shaped, videos):
    shape, folder = shaped
    b = backend(path=str(folder))
    model = b.load_model()
    assert (model.config.text_config.model_type, model.config.vision_config.norm_type) == EXPECTED[shape]
    if shape == "tiny-random-internvl3_5":
        text = model.config.text_config
        assert text.head_dim * text.num_attention_heads != text.hidden_size  # Qwen3's own head_dim
        assert any(n.endswith("self_attn.q_norm") for n, _ in model.named_modules())
    rows = []
    model.register_forward_pre_hook(lambda m, a, k: rows.append(k["input_ids"].shape[0]) if k.get("input_ids") is not None and k["input_ids"].shape[1] > 1 else None, with_kwargs=True)
    convs = conversations(videos)
    batched = b.chat(convs, max_new_tokens=6)
    assert rows == [4]
    assert batched == [b.chat([c], max_new_tokens=6)[0] for c in convs]
    assert any(batched)


def test_each_shape_trains_lora_on_the_language_model_with_vision_reuse(shaped, videos):
    from peft import LoraConfig, get_peft_model

    _, folder = shaped
    b = backend(path=str(folder))
    enc = [b.encode_preference(video=str(v), prompt="Describe.", chosen=c, rejected=r, max_length=400)
           for v, c, r in ((videos[0], "a bar.", "nothing here at all."), (videos[1], "red then blue.", "blue."))]
    batch = b.collate_preference(enc)
    model = b.load_model()
    shared, chosen, rejected = preference_parts(batch)
    assert_vision_reuse_matches(b, model, shared, chosen)
    targets = b.lora_target_modules(model)
    assert targets and all(t.startswith("model.language_model.") for t in targets)
    assert {t.rsplit(".", 1)[1] for t in targets} == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    for p in model.parameters():
        p.requires_grad_(False)
    peft = get_peft_model(model, LoraConfig(r=4, target_modules=targets))
    loss = peft(**chosen, **b.model_inputs(shared)).loss
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for n, p in peft.named_parameters() if "lora_B" in n)


def test_old_name_is_the_same_backend(shaped):
    _, folder = shaped
    new, old = backend(path=str(folder)), backend(InternVL25Backend, path=str(folder))
    assert new.describe().startswith("internvl:") and old.describe().startswith("internvl2_5:")
    frames = np.random.default_rng(2).integers(0, 256, (3, 40, 90, 3), dtype=np.uint8)
    item = {"type": "video", "frames": list(frames)}
    assert torch.equal(new.visual_inputs(item)["pixels"], old.visual_inputs(item)["pixels"])


def test_thinking_mode_answer():
    # InternVL3.5's thinking mode writes its reasoning in <think>...</think> before the answer.
    b = backend(preset="tiny-random-internvl3_5")
    assert b.clean("<think>\nfirst red, then blue\n</think>\n\nRed, then blue.") == "Red, then blue."
    assert b.clean("Red, then blue.") == "Red, then blue."
