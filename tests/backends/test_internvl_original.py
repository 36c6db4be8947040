"""Original remote-code InternVL checkpoints (``internvl_chat``): with ``trust_remote_code`` the
``internvl`` backend converts them to transformers' format once and loads that.

The original checkpoints are written here from tiny transformers models, with the original
module names of InternVL's own code (InternViT, ``mlp1``, Qwen2 or InternLM2 language models)
spelled out independently of the converter: the converted model must have the very same
weights and give the same logits / text.
"""

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from temple_core.errors import ModelError
from temple_plugins.backends.internvl import InternVLBackend


def backend(**options):
    return InternVLBackend(InternVLBackend.Options(**{"fps": 2.0, **options}))


def original_vision_and_projector(sd, layers):
    """InternViT + mlp1 names (InternVL's modeling_intern_vit.py / modeling_internvl_chat.py)."""
    out = {
        "vision_model.embeddings.class_embedding": sd["model.vision_tower.embeddings.cls_token"],
        "vision_model.embeddings.position_embedding": sd["model.vision_tower.embeddings.position_embeddings"],
        "vision_model.embeddings.patch_embedding.weight": sd["model.vision_tower.embeddings.patch_embeddings.projection.weight"],
        "vision_model.embeddings.patch_embedding.bias": sd["model.vision_tower.embeddings.patch_embeddings.projection.bias"],
    }
    for i in range(layers):
        hf, orig = f"model.vision_tower.encoder.layer.{i}.", f"vision_model.encoder.layers.{i}."
        a = hf + "attention."
        out[orig + "attn.qkv.weight"] = torch.cat([sd[a + "q_proj.weight"], sd[a + "k_proj.weight"], sd[a + "v_proj.weight"]])
        if a + "q_proj.bias" in sd:
            out[orig + "attn.qkv.bias"] = torch.cat([sd[a + "q_proj.bias"], sd[a + "k_proj.bias"], sd[a + "v_proj.bias"]])
        for ours, theirs in [("attention.projection_layer", "attn.proj"), ("layernorm_before", "norm1"),
                             ("layernorm_after", "norm2"), ("mlp.fc1", "mlp.fc1"), ("mlp.fc2", "mlp.fc2")]:
            for p in ("weight", "bias"):
                out[f"{orig}{theirs}.{p}"] = sd[f"{hf}{ours}.{p}"]
        out[orig + "ls1"], out[orig + "ls2"] = sd[hf + "lambda_1"], sd[hf + "lambda_2"]
    for ours, theirs in [("layer_norm", "mlp1.0"), ("linear_1", "mlp1.1"), ("linear_2", "mlp1.3")]:
        for p in ("weight", "bias"):
            out[f"{theirs}.{p}"] = sd[f"model.multi_modal_projector.{ours}.{p}"]
    return out


def original_qwen2_text(sd):
    out = {("language_model.model." + k[len("model.language_model."):]): v for k, v in sd.items() if k.startswith("model.language_model.")}
    out["language_model.lm_head.weight"] = sd["lm_head.weight"]
    return out


def original_internlm2_text(sd, text):
    """InternLM2 names, with q/k/v packed per key/value head as InternLM2's ``wqkv`` is."""
    heads, kv, hidden = text.num_attention_heads, text.num_key_value_heads, text.hidden_size
    d, groups = hidden // heads, heads // kv
    out = {"language_model.model.tok_embeddings.weight": sd["model.language_model.embed_tokens.weight"],
           "language_model.model.norm.weight": sd["model.language_model.norm.weight"],
           "language_model.output.weight": sd["lm_head.weight"]}
    for i in range(text.num_hidden_layers):
        hf, orig = f"model.language_model.layers.{i}.", f"language_model.model.layers.{i}."
        q = sd[hf + "self_attn.q_proj.weight"].reshape(heads, d, hidden)
        k = sd[hf + "self_attn.k_proj.weight"].reshape(kv, d, hidden)
        v = sd[hf + "self_attn.v_proj.weight"].reshape(kv, d, hidden)
        rows = []
        for h in range(kv):
            rows += [q[h * groups + g] for g in range(groups)] + [k[h], v[h]]
        out[orig + "attention.wqkv.weight"] = torch.cat(rows)
        out[orig + "attention.wo.weight"] = sd[hf + "self_attn.o_proj.weight"]
        out[orig + "feed_forward.w1.weight"] = sd[hf + "mlp.gate_proj.weight"]
        out[orig + "feed_forward.w2.weight"] = sd[hf + "mlp.down_proj.weight"]
        out[orig + "feed_forward.w3.weight"] = sd[hf + "mlp.up_proj.weight"]
        out[orig + "attention_norm.weight"] = sd[hf + "input_layernorm.weight"]
        out[orig + "ffn_norm.weight"] = sd[hf + "post_attention_layernorm.weight"]
    return out


def original_config(config, llm):
    v = config.vision_config
    size = v.image_size[0] if isinstance(v.image_size, (list, tuple)) else v.image_size
    return {
        "architectures": ["InternVLChatModel"], "model_type": "internvl_chat", "template": "internvl2_5",
        "auto_map": {"AutoConfig": "configuration_internvl_chat.InternVLChatConfig",
                     "AutoModel": "modeling_internvl_chat.InternVLChatModel"},
        "downsample_ratio": config.downsample_ratio, "force_image_size": size, "ps_version": "v2",
        "select_layer": -1, "dynamic_image_size": True, "use_thumbnail": True, "max_dynamic_patch": 12, "min_dynamic_patch": 1,
        "vision_config": {"architectures": ["InternVisionModel"], "model_type": "intern_vit_6b", "hidden_size": v.hidden_size,
                          "num_hidden_layers": v.num_hidden_layers, "num_attention_heads": v.num_attention_heads,
                          "intermediate_size": v.intermediate_size, "image_size": size, "patch_size": 14,
                          "qkv_bias": v.attention_bias, "qk_normalization": v.use_qk_norm, "norm_type": v.norm_type,
                          "layer_norm_eps": v.layer_norm_eps, "hidden_act": v.hidden_act, "drop_path_rate": 0.1},
        "llm_config": llm,
    }


def text_llm_config(text, **extra):
    return {"vocab_size": text.vocab_size, "hidden_size": text.hidden_size, "intermediate_size": text.intermediate_size,
            "num_hidden_layers": text.num_hidden_layers, "num_attention_heads": text.num_attention_heads,
            "num_key_value_heads": text.num_key_value_heads, "max_position_embeddings": text.max_position_embeddings,
            "rms_norm_eps": text.rms_norm_eps, "rope_theta": text.rope_parameters["rope_theta"], "hidden_act": "silu",
            "tie_word_embeddings": False, "eos_token_id": text.eos_token_id, "pad_token_id": text.pad_token_id, **extra}


def write_original(folder, tensors, config_json, tokenizer_dir, shards=2):
    folder.mkdir(parents=True)
    names = sorted(tensors)
    for i in range(shards):  # several shards, as real checkpoints come
        part = {n: tensors[n].contiguous().clone() for n in names[i::shards]}
        save_file(part, str(folder / f"model-{i + 1:05d}-of-{shards:05d}.safetensors"), metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps(config_json))
    for file in tokenizer_dir.iterdir():
        if file.name.startswith(("tokenizer", "special_tokens", "vocab", "merges", "chat_template")):
            shutil.copy(file, folder / file.name)
    return folder


@pytest.fixture(scope="module")
def tiny():
    b = backend(preset="tiny-random")
    return b, b.load_model()


def test_qwen2_original_checkpoint_converts_to_the_same_model(tiny, tmp_path, videos):
    reference, model = tiny
    sd = model.state_dict()
    cfg = model.config
    llm = text_llm_config(cfg.text_config, architectures=["Qwen2ForCausalLM"], model_type="qwen2")
    tensors = {**original_vision_and_projector(sd, cfg.vision_config.num_hidden_layers), **original_qwen2_text(sd)}
    folder = write_original(tmp_path / "InternVL2_5-tiny", tensors, original_config(cfg, llm), Path(reference.model_dir()))

    with pytest.raises(ModelError, match="trust_remote_code"):
        backend(path=str(folder)).load_model()
    converted = backend(path=str(folder), trust_remote_code=True)
    loaded = converted.load_model()
    assert converted.describe().endswith(str(folder))
    theirs = loaded.state_dict()
    assert set(theirs) == set(sd)
    assert all(torch.equal(theirs[k], sd[k]) for k in sd)
    assert loaded.config.image_seq_length == cfg.image_seq_length and loaded.config.image_token_id == cfg.image_token_id

    conversation = [[{"role": "user", "content": [{"type": "video", "path": str(videos[0])}, {"type": "text", "text": "Describe."}]}]]
    assert converted.chat(conversation, max_new_tokens=5) == reference.chat(conversation, max_new_tokens=5)

    # Converted once: a second backend on the same folder takes the cached conversion.
    cached = backend(path=str(folder), trust_remote_code=True).model_dir()
    assert cached == converted.model_dir()
    stamp = (Path(cached) / "converted_from.json").stat().st_mtime_ns
    backend(path=str(folder), trust_remote_code=True).load_model()
    assert (Path(cached) / "converted_from.json").stat().st_mtime_ns == stamp


def test_qwen3_original_checkpoint_converts_to_the_same_model(tmp_path):
    """InternVL3.5's original format: a Qwen3 language model (q/k norms, its own head_dim)."""
    reference = backend(preset="tiny-random-internvl3_5")
    model = reference.load_model()
    sd, cfg = model.state_dict(), model.config
    assert any(".self_attn.q_norm." in k for k in sd)
    llm = text_llm_config(cfg.text_config, architectures=["Qwen3ForCausalLM"], model_type="qwen3",
                          head_dim=cfg.text_config.head_dim, attention_bias=False)
    tensors = {**original_vision_and_projector(sd, cfg.vision_config.num_hidden_layers), **original_qwen2_text(sd)}
    folder = write_original(tmp_path / "InternVL3_5-tiny", tensors, original_config(cfg, llm), Path(reference.model_dir()))
    converted = backend(path=str(folder), trust_remote_code=True)
    loaded = converted.load_model()
    assert loaded.config.text_config.model_type == "qwen3" and loaded.config.text_config.head_dim == cfg.text_config.head_dim
    theirs = loaded.state_dict()
    assert set(theirs) == set(sd) and all(torch.equal(theirs[k], sd[k]) for k in sd)
    conversation = [[{"role": "user", "content": [{"type": "image", "image": torch.randint(0, 256, (40, 90, 3), dtype=torch.uint8).numpy()},
                                                  {"type": "text", "text": "Describe."}]}]]
    assert converted.chat(conversation, max_new_tokens=5) == reference.chat(conversation, max_new_tokens=5)


def test_internlm2_original_checkpoint_converts_to_the_same_logits(tiny, tmp_path):
    from transformers import InternVLConfig, InternVLForConditionalGeneration

    reference, model = tiny
    base = model.config
    config = InternVLConfig(
        vision_config=base.vision_config.to_dict(),
        text_config=dict(model_type="llama", vocab_size=base.text_config.vocab_size, hidden_size=64, intermediate_size=96,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         rms_norm_eps=1e-5, rope_theta=50000.0, attention_bias=False, tie_word_embeddings=False,
                         eos_token_id=base.text_config.eos_token_id, pad_token_id=base.text_config.pad_token_id),
        image_token_id=base.image_token_id, image_seq_length=base.image_seq_length, downsample_ratio=0.5, tie_word_embeddings=False,
    )
    torch.manual_seed(3)
    hf = InternVLForConditionalGeneration(config).eval()
    for p in hf.parameters():  # random values everywhere (norms and layer scales too), so every weight matters
        torch.nn.init.normal_(p, std=0.2)
    sd = hf.state_dict()
    llm = text_llm_config(config.text_config, architectures=["InternLM2ForCausalLM"], model_type="internlm2", bias=False)
    tensors = {**original_vision_and_projector(sd, config.vision_config.num_hidden_layers), **original_internlm2_text(sd, config.text_config)}
    folder = write_original(tmp_path / "InternVL2_5-internlm2-tiny", tensors, original_config(config, llm),
                            Path(reference.model_dir()))

    loaded = backend(path=str(folder), trust_remote_code=True).load_model()
    assert loaded.config.text_config.model_type == "llama"
    theirs = loaded.state_dict()
    assert set(theirs) == set(sd) and all(torch.equal(theirs[k], sd[k]) for k in sd)
    text = [t for t in (30, 41, 52, 63, 74) if t != config.image_token_id]
    ids = torch.tensor([text[:3] + [config.image_token_id] * config.image_seq_length + text[3:]])
    pixels = torch.randn(1, 3, 56, 56)
    with torch.no_grad():
        expected = hf(input_ids=ids, pixel_values=pixels).logits
        got = loaded(input_ids=ids, pixel_values=pixels).logits
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_bad_original_checkpoints_are_named(tiny, tmp_path):
    reference, model = tiny
    sd, cfg = model.state_dict(), model.config
    llm = text_llm_config(cfg.text_config, architectures=["Qwen2ForCausalLM"], model_type="qwen2")
    tensors = {**original_vision_and_projector(sd, cfg.vision_config.num_hidden_layers), **original_qwen2_text(sd)}
    tok = Path(reference.model_dir())

    v1 = write_original(tmp_path / "v1", tensors, {**original_config(cfg, llm), "ps_version": "v1"}, tok)
    with pytest.raises(ModelError, match="ps_version v1"):
        backend(path=str(v1), trust_remote_code=True).load_model()
    extra = write_original(tmp_path / "extra", {**tensors, "vision_model.encoder.layers.0.attn.extra.weight": torch.ones(2)},
                           original_config(cfg, llm), tok)
    with pytest.raises(ModelError, match="attention.extra.weight"):
        backend(path=str(extra), trust_remote_code=True).load_model()
    missing = write_original(tmp_path / "missing", {k: t for k, t in tensors.items() if not k.startswith("mlp1.1")},
                             original_config(cfg, llm), tok)
    with pytest.raises(ModelError, match="lacks 2 weight"):
        backend(path=str(missing), trust_remote_code=True).load_model()
    other = write_original(tmp_path / "other", tensors, original_config(cfg, {**llm, "model_type": "phi3", "architectures": ["Phi3ForCausalLM"]}), tok)
    with pytest.raises(ModelError, match="only Qwen2, Qwen3 and InternLM2"):
        backend(path=str(other), trust_remote_code=True).load_model()
