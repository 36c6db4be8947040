"""Original InternVL checkpoints (``model_type: internvl_chat``, remote code) -> transformers' format.

OpenGVLab publishes InternVL2.5 / 3 / 3.5 both as original remote-code checkpoints (``InternVL2_5-8B``,
``InternVLChatModel``) and, for some sizes, in transformers' format (``...-MPO-hf``). The
``internvl`` backend runs transformers' ``InternVLForConditionalGeneration``; given an original
checkpoint and ``trust_remote_code: true`` it converts it once, here, into a cached HF-format
folder and loads that. The mapping is the one of transformers' own
``convert_internvl_weights_to_hf.py`` (not shipped in the wheel; it also needs the remote code,
einops and the hub):

* InternViT -> ``InternVLVisionModel``: ``class_embedding`` -> ``cls_token``, ``patch_embedding``
  -> ``patch_embeddings.projection``, ``position_embedding`` -> ``position_embeddings``,
  ``layers`` -> ``layer``, ``norm1/2`` -> ``layernorm_before/after``, ``ls1/2`` ->
  ``lambda_1/2``, ``attn.proj`` -> ``attention.projection_layer``, and the fused ``attn.qkv``
  split into ``q_proj`` / ``k_proj`` / ``v_proj`` (thirds of the rows);
* ``mlp1.0 / .1 / .3`` -> ``multi_modal_projector.layer_norm / linear_1 / linear_2``;
* Qwen2 and Qwen3 language models (InternVL2.5-1B/4B/38B/78B, InternVL3-*, InternVL3.5-1B..38B)
  keep their names; InternLM2 ones
  (InternVL2.5-2B/8B/26B) become Llama: ``tok_embeddings`` -> ``embed_tokens``, ``attention.wo``
  -> ``self_attn.o_proj``, ``feed_forward.w1/w2/w3`` -> ``mlp.gate/down/up_proj``,
  ``attention_norm`` / ``ffn_norm`` -> ``input_layernorm`` / ``post_attention_layernorm``,
  ``output`` -> ``lm_head``, and the grouped ``attention.wqkv`` (per key/value head: its query
  heads, then its key head, then its value head) split into ``q/k/v_proj``.

Weights are read and written one shard at a time (never the whole model in memory), and the
result is checked against the model class's own parameter names and shapes before it is used.
``trust_remote_code`` is passed to the tokenizer only (InternLM2's tokenizer is remote code);
no model code of the checkpoint runs.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from temple_core.errors import ModelError

REMOTE_TYPE = "internvl_chat"
_FAMILY = "internvl"

# InternViT -> InternVLVision, applied in order to the name after ``vision_model.``.
_VISION_NAMES = [
    (r"^embeddings\.class_embedding$", "embeddings.cls_token"),
    (r"^embeddings\.patch_embedding\.", "embeddings.patch_embeddings.projection."),
    (r"^embeddings\.position_embedding$", "embeddings.position_embeddings"),
    (r"^encoder\.layers\.(\d+)\.", r"encoder.layer.\1."),
    (r"\.ls(\d)$", r".lambda_\1"),
    (r"\.attn\.proj\.", ".attention.projection_layer."),
    (r"\.attn\.", ".attention."),
    (r"\.norm1\.", ".layernorm_before."),
    (r"\.norm2\.", ".layernorm_after."),
]
_PROJECTOR_NAMES = {"mlp1.0.": "layer_norm.", "mlp1.1.": "linear_1.", "mlp1.3.": "linear_2."}
_INTERNLM2_NAMES = [
    (r"^tok_embeddings\.", "embed_tokens."),
    (r"\.attention\.wo\.", ".self_attn.o_proj."),
    (r"\.feed_forward\.w1\.", ".mlp.gate_proj."),
    (r"\.feed_forward\.w2\.", ".mlp.down_proj."),
    (r"\.feed_forward\.w3\.", ".mlp.up_proj."),
    (r"\.attention_norm\.", ".input_layernorm."),
    (r"\.ffn_norm\.", ".post_attention_layernorm."),
]


def is_original(folder: str | Path) -> bool:
    config = Path(folder) / "config.json"
    try:
        return config.is_file() and json.loads(config.read_text()).get("model_type") == REMOTE_TYPE
    except (OSError, ValueError):
        return False


def _rename(name: str, rules) -> str:
    for pattern, replacement in rules:
        name = re.sub(pattern, replacement, name)
    return name


def _text_kind(original: dict) -> str:
    llm = original.get("llm_config") or {}
    kind = llm.get("model_type") or ""
    architectures = " ".join(llm.get("architectures") or [])
    if kind == "qwen3" or "Qwen3ForCausalLM" in architectures:
        return "qwen3"
    if kind == "qwen2" or "Qwen2" in architectures:
        return "qwen2"
    if kind == "internlm2" or "InternLM2" in architectures:
        return "internlm2"
    raise ModelError(f"{_FAMILY}: original checkpoint with a '{kind or architectures}' language model: "
                     "only Qwen2, Qwen3 and InternLM2 (InternVL2.5 / 3 / 3.5) are converted")


def check_original(original: dict) -> None:
    """Refuse what cannot be converted, naming why, before anything is loaded."""
    absent = [k for k in ("llm_config", "vision_config") if not isinstance(original.get(k), dict)]
    if absent:
        raise ModelError(f"{_FAMILY}: config.json says internvl_chat but has no {' / '.join(absent)}: "
                         "not an original InternVL checkpoint (or an incomplete one)")
    if str(original.get("ps_version", "v2")) != "v2":
        raise ModelError(f"{_FAMILY}: ps_version {original.get('ps_version')} checkpoints (InternVL 1.x) are not supported; "
                         "InternVL2/2.5 use v2")
    _text_kind(original)


def convert_config(original: dict, tokenizer) -> Any:
    """The ``InternVLConfig`` of an original checkpoint's ``config.json`` (one that passed
    :func:`check_original`)."""
    from transformers import InternVLConfig, LlamaConfig, Qwen2Config, Qwen3Config

    vision = dict(original.get("vision_config") or {})
    llm = dict(original.get("llm_config") or {})
    kind = _text_kind(original)
    image_size = int(original.get("force_image_size") or vision.get("image_size") or 448)
    patch = int(vision.get("patch_size", 14))
    ratio = float(original.get("downsample_ratio", 0.5))
    vision_config = dict(
        hidden_size=vision["hidden_size"], num_hidden_layers=vision["num_hidden_layers"],
        num_attention_heads=vision["num_attention_heads"], intermediate_size=vision["intermediate_size"],
        hidden_act=vision.get("hidden_act", "gelu"), layer_norm_eps=vision.get("layer_norm_eps", 1e-6),
        norm_type=vision.get("norm_type", "layer_norm"), use_qk_norm=bool(vision.get("qk_normalization", False)),
        attention_bias=bool(vision.get("qkv_bias", True)), image_size=[image_size, image_size], patch_size=[patch, patch],
        attention_dropout=vision.get("attention_dropout", 0.0), use_absolute_position_embeddings=True,
    )
    text_keys = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                 "num_key_value_heads", "hidden_act", "max_position_embeddings", "rms_norm_eps", "rope_theta",
                 "rope_scaling", "bos_token_id", "eos_token_id", "pad_token_id", "tie_word_embeddings",
                 "sliding_window", "use_sliding_window", "max_window_layers")
    if kind == "qwen3":
        text_keys += ("head_dim", "attention_bias")
    text = {k: llm[k] for k in text_keys if k in llm}
    if kind == "internlm2":
        text["attention_bias"] = bool(llm.get("bias", False))
        for qwen_only in ("sliding_window", "use_sliding_window", "max_window_layers"):
            text.pop(qwen_only, None)
        text_config = LlamaConfig(**text)
    else:
        text_config = (Qwen3Config if kind == "qwen3" else Qwen2Config)(**text)
    image_token = tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>")
    if image_token is None or image_token == tokenizer.unk_token_id:
        raise ModelError(f"{_FAMILY}: the checkpoint's tokenizer has no <IMG_CONTEXT> token")
    return InternVLConfig(
        vision_config=vision_config, text_config=text_config.to_dict(), image_token_id=image_token,
        image_seq_length=int((image_size // patch) ** 2 * ratio**2), downsample_ratio=ratio,
        vision_feature_layer=int(original.get("select_layer", -1)), vision_feature_select_strategy="default",
        projector_hidden_act="gelu", tie_word_embeddings=bool(llm.get("tie_word_embeddings", False)),
    )


def convert_tensors(tensors: dict[str, torch.Tensor], config) -> dict[str, torch.Tensor]:
    """Original names and layouts -> the names of ``InternVLForConditionalGeneration.state_dict()``."""
    text = config.text_config
    kind = "internlm2" if text.model_type == "llama" else "qwen"  # Qwen2 / Qwen3: the names as they are
    out: dict[str, torch.Tensor] = {}
    for name, tensor in tensors.items():
        if name.startswith("vision_model."):
            new = "model.vision_tower." + _rename(name[len("vision_model."):], _VISION_NAMES)
            if ".attention.qkv." in new:
                dim = config.vision_config.hidden_size
                for part, piece in zip(("q_proj", "k_proj", "v_proj"), (tensor[:dim], tensor[dim : 2 * dim], tensor[2 * dim :])):
                    out[new.replace(".qkv.", f".{part}.")] = piece.contiguous()
                continue
            out[new] = tensor
        elif name.startswith("mlp1."):
            prefix = name[: len("mlp1.0.")]
            if prefix not in _PROJECTOR_NAMES:
                raise ModelError(f"{_FAMILY}: unexpected projector weight {name} in the original checkpoint")
            out["model.multi_modal_projector." + _PROJECTOR_NAMES[prefix] + name[len(prefix):]] = tensor
        elif name in ("language_model.lm_head.weight", "language_model.output.weight"):
            out["lm_head.weight"] = tensor
        elif name.startswith("language_model.model."):
            rest = name[len("language_model.model."):]
            if kind == "internlm2":
                rest = _rename(rest, _INTERNLM2_NAMES)
                if ".attention.wqkv." in rest:
                    out.update(_split_wqkv(rest, tensor, text))
                    continue
            out["model.language_model." + rest] = tensor
        else:
            raise ModelError(f"{_FAMILY}: unexpected weight {name} in the original checkpoint")
    return out


def _split_wqkv(name: str, tensor: torch.Tensor, text) -> dict[str, torch.Tensor]:
    """InternLM2's grouped ``wqkv``: rows are, for each key/value head, its ``groups`` query heads,
    then its key head, then its value head (``head_dim`` rows each)."""
    heads, kv_heads = text.num_attention_heads, text.num_key_value_heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    groups = heads // kv_heads
    blocks = tensor.reshape(kv_heads, groups + 2, head_dim, *tensor.shape[1:])
    base = "model.language_model." + name
    return {
        base.replace(".attention.wqkv.", ".self_attn.q_proj."): blocks[:, :groups].reshape(heads * head_dim, *tensor.shape[1:]).contiguous(),
        base.replace(".attention.wqkv.", ".self_attn.k_proj."): blocks[:, -2].reshape(kv_heads * head_dim, *tensor.shape[1:]).contiguous(),
        base.replace(".attention.wqkv.", ".self_attn.v_proj."): blocks[:, -1].reshape(kv_heads * head_dim, *tensor.shape[1:]).contiguous(),
    }


def _weight_files(folder: Path) -> list[Path]:
    files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("pytorch_model*.bin"))
    if not files:
        raise ModelError(f"{_FAMILY}: {folder} has no weights (*.safetensors / pytorch_model*.bin)")
    return files


def _load(file: Path) -> dict[str, torch.Tensor]:
    if file.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(file))
    return torch.load(str(file), map_location="cpu", weights_only=True)


def cache_key(folder: Path) -> str:
    """Changes when the checkpoint does: its path, config and weight files' sizes and times."""
    parts = [str(folder.resolve())]
    for file in sorted([folder / "config.json", *_weight_files(folder)]):
        stat = file.stat()
        parts.append(f"{file.name}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha1("\n".join(parts).encode()).hexdigest()[:16]


def convert_checkpoint(src: str | Path, dst: str | Path, *, chat_template: str, trust_remote_code: bool) -> Path:
    """Write the HF-format version of original checkpoint ``src`` to ``dst`` (atomically)."""
    from safetensors.torch import save_file
    from transformers import AutoTokenizer, GenerationConfig, InternVLForConditionalGeneration

    src, dst = Path(src), Path(dst)
    original = json.loads((src / "config.json").read_text())
    check_original(original)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(src), trust_remote_code=trust_remote_code)
    except Exception as exc:  # a missing tokenizer, or remote tokenizer code that cannot run
        raise ModelError(f"{_FAMILY}: cannot load the tokenizer of {src}: {exc}") from exc
    config = convert_config(original, tokenizer)
    config.architectures = ["InternVLForConditionalGeneration"]
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in InternVLForConditionalGeneration(config).state_dict().items()}

    tmp = dst.with_name(dst.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    files = _weight_files(src)
    weight_map: dict[str, str] = {}
    for i, file in enumerate(files):
        converted = convert_tensors(_load(file), config)
        for name, tensor in converted.items():
            if name not in expected:
                raise ModelError(f"{_FAMILY}: {file.name}: weight {name} has no place in InternVLForConditionalGeneration")
            if tuple(tensor.shape) != expected[name]:
                raise ModelError(f"{_FAMILY}: {file.name}: weight {name} has shape {tuple(tensor.shape)}, expected {expected[name]}")
        shard = f"model-{i + 1:05d}-of-{len(files):05d}.safetensors"
        save_file(converted, str(tmp / shard), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(converted, shard))
    missing = sorted(set(expected) - set(weight_map) - ({"lm_head.weight"} if config.tie_word_embeddings else set()))
    if missing:
        raise ModelError(f"{_FAMILY}: {src} lacks {len(missing)} weight(s) the model needs, e.g. {', '.join(missing[:3])}")
    (tmp / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}, indent=1))
    config.save_pretrained(str(tmp))
    tokenizer.chat_template = chat_template
    tokenizer.save_pretrained(str(tmp))
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if end is not None and end != tokenizer.unk_token_id:
        GenerationConfig(eos_token_id=end, pad_token_id=tokenizer.pad_token_id).save_pretrained(str(tmp))
    (tmp / "converted_from.json").write_text(json.dumps({"source": str(src.resolve()), "key": cache_key(src)}, indent=1))
    shutil.rmtree(dst, ignore_errors=True)
    tmp.rename(dst)
    return dst


def converted_dir(src: str | Path, cache: Path, *, chat_template: str, trust_remote_code: bool, log=print) -> Path:
    """The cached HF-format folder of ``src``, converting it the first time (or when it changed)."""
    src = Path(src)
    dst = cache / "converted" / f"internvl-{cache_key(src)}"
    if not (dst / "converted_from.json").is_file():
        log(f"[{_FAMILY}] converting original InternVL checkpoint {src} to transformers' format in {dst} (once)")
        convert_checkpoint(src, dst, chat_template=chat_template, trust_remote_code=trust_remote_code)
    return dst
