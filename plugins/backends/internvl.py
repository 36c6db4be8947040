"""InternVL2.5 backend on transformers' ``InternVLForConditionalGeneration`` (HF-format checkpoints,
e.g. ``OpenGVLab/InternVL2_5-8B-MPO-hf``).

Video as the HF InternVL processor builds it, without torchvision: every sampled frame is
resized to the vision tower's ``image_size`` square (bicubic, antialiased, as in
``temple_core.vision_tokens``), rescaled and normalised, and enters the text as
``Frame{i}: <img><IMG_CONTEXT>*image_seq_length</img>`` lines joined by ``\\n``. Images are one
tile (the processor's dynamic tiling into up to 12 crops + thumbnail is not reproduced).
Original remote-code checkpoints (``model_type: internvl_chat``) are refused unless
``trust_remote_code`` is set -- and even then they must first be converted to HF format.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from temple_core.errors import ModelError
from temple_core.hf_backend import HFChatBackend
from temple_core.hookspecs import hookimpl
from temple_core.vision_tokens import item_frames, resize_uint8

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for c in message['content'] %}"
    "{% if c['type'] == 'video' %}<video>\n"
    "{% elif c['type'] == 'image' %}<IMG_CONTEXT>\n"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


class InternVLBackend(HFChatBackend):
    """InternVL2.5 (transformers ``InternVLForConditionalGeneration``)."""

    family = "internvl2_5"
    model_types = ("internvl",)
    remote_types = ("internvl_chat",)
    special_tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>", "<video>"]
    chat_template = CHAT_TEMPLATE
    placeholder_pattern = r"<video>|<IMG_CONTEXT>"

    def _model_class(self):
        from transformers import InternVLForConditionalGeneration

        return InternVLForConditionalGeneration

    def load_model(self, path: str | None = None):
        if self.options.trust_remote_code and self._model is None:
            folder = path or self.model_dir()
            config = Path(folder) / "config.json"
            if config.is_file() and json.loads(config.read_text()).get("model_type") in self.remote_types:
                raise ModelError(
                    f"{self.family}: {folder} is an original remote-code InternVL checkpoint; this backend runs "
                    "transformers' InternVL classes: convert it with transformers' convert_internvl_weights_to_hf.py"
                )
        return super().load_model(path)

    def _tiny_config(self, tok):
        from transformers import InternVLConfig

        ids = tok.convert_tokens_to_ids
        return InternVLConfig(
            vision_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=[56, 56], patch_size=[14, 14]),
            text_config=dict(model_type="qwen2", vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096, initializer_range=0.2,
                             tie_word_embeddings=False, bos_token_id=None, eos_token_id=ids("<|im_end|>"), pad_token_id=tok.pad_token_id),
            image_token_id=ids("<IMG_CONTEXT>"), image_seq_length=4, downsample_ratio=0.5, tie_word_embeddings=False,
        )

    # -- visual tensors ---------------------------------------------------------------------
    def _norm(self):
        """Mean/std from the checkpoint's preprocessor config (ImageNet's when absent)."""
        for name in ("video_preprocessor_config.json", "preprocessor_config.json"):
            file = Path(self.model_dir()) / name
            if file.is_file():
                cfg = json.loads(file.read_text())
                if "image_mean" in cfg:
                    return tuple(cfg["image_mean"]), tuple(cfg["image_std"])
        return IMAGENET_MEAN, IMAGENET_STD

    def visual_inputs(self, item, fps=None, max_frames=None, max_pixels=None, min_pixels=None) -> dict[str, Any]:
        size = self.model.config.vision_config.image_size
        size = size[0] if isinstance(size, (list, tuple)) else size
        if item["type"] == "image":
            frames, kind = np.asarray(item["image"])[None], "image"
        else:
            frames, _ = item_frames(item, fps or self.options.fps, max_frames or self.options.max_frames)
            kind = "video"
        mean, std = self._norm()
        pixels = resize_uint8(frames, size, size) / 255.0
        pixels = (pixels - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
        seq = self.model.config.image_seq_length
        return {"kind": kind, "pixels": pixels, "frames": len(frames), "tokens": seq * len(frames), "per_frame": seq}

    def expand_placeholder(self, placeholder: str, visual: dict[str, Any]) -> str:
        block = "<img>" + "<IMG_CONTEXT>" * visual["per_frame"] + "</img>"
        if placeholder == "<video>" and visual["kind"] == "video":
            return "\n".join(f"Frame{i + 1}: {block}" for i in range(visual["frames"]))
        if placeholder == "<IMG_CONTEXT>" and visual["kind"] == "image":
            return block
        raise ModelError(f"{self.family}: visual items out of order with the template's placeholders")

    def visual_batch(self, visuals: list[dict]) -> dict[str, Any]:
        # Videos and images share ``pixel_values``, in text order (as the HF processor merges them).
        return {"pixel_values": torch.cat([v["pixels"] for v in visuals])} if visuals else {}

    # -- training ---------------------------------------------------------------------------
    @staticmethod
    def _inner(model):
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        return base.model

    def vision_features(self, model, shared):
        inner = self._inner(model)
        cfg = inner.config
        out = inner.get_image_features(
            shared["pixel_values"], vision_feature_layer=cfg.vision_feature_layer,
            vision_feature_select_strategy=cfg.vision_feature_select_strategy, return_dict=True,
        )
        return out.pooler_output

    def model_inputs(self, shared, *, vision_features=None, repeat=1):
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        if vision_features is None:
            return {"pixel_values": shared["pixel_values"].repeat(repeat, 1, 1, 1)}
        # transformers' precomputed-encoder path: scattered into the <IMG_CONTEXT> positions.
        return {"mm_encoder_outputs": {"image": BaseModelOutputWithPooling(pooler_output=vision_features.repeat(repeat, 1, 1))}}

    # -- surgery ----------------------------------------------------------------------------
    def vision_module_names(self, model) -> list[str]:
        return [name for name, _ in model.named_modules() if name.split(".")[-1] in ("vision_tower", "multi_modal_projector")
                and name.count("vision_tower") + name.count("multi_modal_projector") == 1]


@hookimpl
def register_backends(register):
    register("internvl2_5", InternVLBackend)
