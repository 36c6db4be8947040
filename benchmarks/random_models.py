"""Random-weight model folders of a backend at given proportions, for the benchmarks (loaded by
the backend through ``path:``, with the tokenizer of its ``tiny-random`` preset).

* ``tiny``   -- the backend's ``tiny-random`` preset itself (2+2 layers, width 64/32);
* ``mid-2b`` -- the 2B model's proportions scaled down: the vision tower costs about as much as
  the language model per video token or more (Qwen2-VL-2B: ~1.9x, a 675M ViT on 4 patches per
  token vs a 1.5B LM; Qwen3-VL-2B: ~1x, a 0.4B ViT vs a 1.7B LM);
* ``mid-7b`` / ``mid-8b`` -- the 7B/8B model's proportions scaled down: the tower costs ~0.3-0.4x
  the language model per video token, so one vision pass per pair saves less.
"""

from __future__ import annotations

from pathlib import Path

# text: (hidden, layers, intermediate, heads, kv heads); vision: (width, depth, heads, mlp width)
SIZES = {
    "qwen2_vl": {
        "mid-2b": dict(text=(512, 8, 2048, 8, 2), vision=(384, 8, 6, 1536)),
        "mid-7b": dict(text=(768, 8, 4096, 12, 4), vision=(256, 6, 4, 1024)),
    },
    "qwen3_vl": {
        "mid-2b": dict(text=(512, 8, 1536, 8, 4), vision=(256, 8, 4, 1024)),
        "mid-8b": dict(text=(768, 8, 3072, 12, 4), vision=(256, 6, 4, 1024)),
    },
}


def build_backend(name: str, **options):
    from temple_core.config import Structurer
    from temple_core.plugins import get_plugin_manager

    plugins = get_plugin_manager()
    return Structurer(plugins).component("backends", {"name": name, **options}, "bench").build(plugins)


def _mrope_section(head_dim: int) -> list[int]:
    # M-RoPE splits half the head dimension into (time, height, width) sections, about 2:3:3.
    section = [head_dim // 8, head_dim * 3 // 16, head_dim * 3 // 16]
    section[0] += head_dim // 2 - sum(section)
    return section


def build_model_dir(backend: str, size: str, folder: Path) -> str:
    """The folder of ``backend``'s random model of proportions ``size`` (see the module doc)."""
    import torch

    tiny = build_backend(backend, preset="tiny-random")
    model = tiny.load_model()
    if size == "tiny":
        return tiny.model_dir()
    if size not in SIZES.get(backend, {}):
        raise SystemExit(f"no size {size!r} for {backend}: {', '.join(['tiny', *SIZES.get(backend, {})])}")
    hidden, layers, inter, heads, kv = SIZES[backend][size]["text"]
    width, depth, vheads, mlp = SIZES[backend][size]["vision"]
    config = model.config
    text = config.text_config
    text.hidden_size, text.num_hidden_layers, text.intermediate_size = hidden, layers, inter
    text.num_attention_heads, text.num_key_value_heads = heads, kv
    text.layer_types = ["full_attention"] * layers
    head_dim = hidden // heads
    if hasattr(text, "head_dim"):
        text.head_dim = head_dim
    text.rope_parameters = {**text.rope_parameters, "mrope_section": _mrope_section(head_dim)}
    text.initializer_range = 0.02
    vision = config.vision_config
    if backend == "qwen2_vl":
        vision.embed_dim, vision.depth, vision.num_heads, vision.mlp_ratio, vision.hidden_size = width, depth, vheads, mlp // width, hidden
    else:  # qwen3_vl: deepstack features from three layers spread over the tower, as in the 8B (8, 16, 24 of 27)
        vision.hidden_size, vision.depth, vision.num_heads, vision.intermediate_size = width, depth, vheads, mlp
        vision.out_hidden_size = hidden
        vision.deepstack_visual_indexes = [depth // 4, depth // 2, 3 * depth // 4]
        vision.num_position_embeddings = 576  # a 24 x 24 grid, interpolated to the frame size
    torch.manual_seed(0)
    big = type(model)(config)
    out = folder / f"{backend}-{size}"
    big.save_pretrained(out)
    tiny.processor.save_pretrained(out)
    return str(out)
