"""A third-party temple plugin: the LLaVA-OneVision backbone (``llava_onevision``).

A family temple does not ship, added without touching temple: this module is written only
against temple's documented backend contract and public helpers (docs/backends.md) --
``temple_core.models.hf`` (``HFChatBackend``, ``options_class``), ``temple_core.models.vision_tokens``
(``resize_uint8``, ``uniform_indices``, ``read_video_frames``, ``image_uint8``), ``temple_core.errors``
and ``temple_core.hookspecs.hookimpl`` --
and registered through the ``temple`` entry-point group (pyproject.toml).

The model is transformers' own ``LlavaOnevisionForConditionalGeneration`` (SigLIP tower,
2-layer projector, Qwen2 language model). Its video input, as transformers'
``LlavaOnevisionProcessor`` + ``LlavaOnevisionVideoProcessor`` build it, without torchvision:

* a **fixed number of frames** per video (``num_frames``, 32 by default: LLaVA-OneVision's
  video recipe and lmms-eval's ``max_frames_num``), spread uniformly over the item's range as
  lmms-eval does (``np.linspace(first, last, num_frames, dtype=int)``: frames repeat when the
  range is shorter). The model stacks a batch's videos into one ``(B, T, 3, S, S)`` tensor, so
  every video of a batch needs the same T; temple's ``fps`` is therefore not used, and a
  stage's ``max_frames`` caps ``num_frames``;
* each frame resized to the tower's square (``S x S``, 384 in the released models; bicubic,
  antialiased: ``resize_uint8``, torchvision's CPU kernel), rescaled, normalised with the
  checkpoint's ``video_preprocessor_config.json`` / ``preprocessor_config.json`` mean/std
  (the video processor's own defaults when absent);
* the text: ``<video>`` repeated ``T * ceil(P / 2)^2 + 1`` times (``P`` patches per side; the
  model pools each frame 2x and appends one newline embedding per video).

Images as LLaVA-OneVision takes several images in one conversation (TEMPLE's clip captioner
shows 2 or 4 keyframes): each image padded to a square with the mean colour
(``LlavaOnevisionImageProcessorPil.pad_to_square``), resized to ``S x S`` (``resize_uint8``),
rescaled and normalised: one tile, ``P^2 + 1`` ``<image>`` tokens (its features and a newline).

One vision pass per DPO pair: :meth:`LlavaOneVisionBackend.vision_features` runs the model's own
``get_video_features`` once; the model takes them back as precomputed encoder outputs.

Not supported (an error naming it): a conversation with a single image, which
LLaVA-OneVision tiles at several resolutions ("anyres"); as the processor does, that choice
depends on the whole conversation, and TEMPLE never sends one image alone.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch

from temple_core.errors import ModelError
from temple_core.hookspecs import hookimpl
from temple_core.models.hf import HFChatBackend, options_class
from temple_core.models.vision_tokens import image_uint8, read_video_frames, resize_uint8, uniform_indices

FAMILY = "llava_onevision"

# The tiny preset's chat template: LLaVA-OneVision's (ChatML; visual items first, then the
# text on its own line), each turn closed by "<|im_end|>\n". A checkpoint brings its own.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}<image>\n{% elif c['type'] == 'video' %}<video>\n{% endif %}{% endfor %}"
    "{% for c in message['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}"
    "{% endif %}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"]


@attrs.define(kw_only=True)
class LlavaOneVisionOptions(options_class()):
    #: Frames per video, spread uniformly over its range (LLaVA-OneVision / lmms-eval: 32); a stage's max_frames caps it.
    num_frames: int = attrs.field(default=32, validator=attrs.validators.ge(1))


class LlavaOneVisionBackend(HFChatBackend):
    """LLaVA-OneVision on transformers' LlavaOnevisionForConditionalGeneration (a third-party example package)."""

    family = FAMILY
    model_types = ("llava_onevision",)
    Options = LlavaOneVisionOptions
    special_tokens = SPECIAL_TOKENS
    chat_template = CHAT_TEMPLATE
    placeholder_pattern = r"<video>|<image>"

    # -- loading ----------------------------------------------------------------------------
    def model_class(self):
        from transformers import LlavaOnevisionForConditionalGeneration

        return LlavaOnevisionForConditionalGeneration

    def tiny_config(self, tok):
        from transformers import LlavaOnevisionConfig

        ids = tok.convert_tokens_to_ids
        return LlavaOnevisionConfig(
            # 32-pixel frames of 8-pixel patches: 4 x 4 patches, pooled to 2 x 2 tokens per frame.
            vision_config=dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                               num_attention_heads=2, image_size=32, patch_size=8),
            text_config=dict(model_type="qwen2", vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                             # Untied with a wide init: a random model that writes varied text.
                             initializer_range=0.2, tie_word_embeddings=False, bos_token_id=None,
                             eos_token_id=ids("<|im_end|>"), pad_token_id=tok.pad_token_id),
            image_token_index=ids("<image>"), video_token_index=ids("<video>"), vision_feature_select_strategy="full",
            vision_feature_layer=-1, image_grid_pinpoints=[[32, 32], [32, 64], [64, 32]], tie_word_embeddings=False,
        )

    # -- visual tensors ---------------------------------------------------------------------
    def _frame_size(self) -> int:
        return int(self.model.config.vision_config.image_size)

    def tokens_per_frame(self) -> int:
        """Pooled tokens of one frame: ``ceil(P / 2)^2``, ``P`` patches per side."""
        vc = self.model.config.vision_config
        return math.ceil(vc.image_size // vc.patch_size / 2) ** 2

    def _preprocessor(self, name: str) -> dict:
        file = Path(self.model_dir()) / name
        return json.loads(file.read_text()) if file.is_file() else {}

    def _norm(self, kind: str) -> tuple[tuple, tuple]:
        """Mean/std of ``kind`` (video: its video config, else the image one; image: the image
        config), the transformers processor's defaults when the checkpoint has none."""
        from transformers.models.llava_onevision.image_processing_pil_llava_onevision import LlavaOnevisionImageProcessorPil
        from transformers.models.llava_onevision.video_processing_llava_onevision import LlavaOnevisionVideoProcessor

        image = self._preprocessor("preprocessor_config.json")
        names = ["video_preprocessor_config.json", "preprocessor_config.json"] if kind == "video" else ["preprocessor_config.json"]
        for name in names:
            cfg = image if name == "preprocessor_config.json" else self._preprocessor(name)
            if "image_mean" in cfg:
                return tuple(cfg["image_mean"]), tuple(cfg["image_std"])
        default = LlavaOnevisionVideoProcessor if kind == "video" else LlavaOnevisionImageProcessorPil
        return tuple(default.image_mean), tuple(default.image_std)

    def _normalise(self, frames: np.ndarray, kind: str) -> torch.Tensor:
        size = self._frame_size()
        mean, std = self._norm(kind)
        pixels = resize_uint8(frames, size, size) / 255.0
        return (pixels - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)

    def visual_inputs(self, item: dict[str, Any], fps: float | None = None, max_frames: int | None = None,
                      max_pixels: int | None = None, min_pixels: int | None = None,
                      total_pixels: int | None = None) -> dict[str, Any]:
        """A video item -> ``{"kind": "video", "pixels": (T, 3, S, S), "frames": T, "tokens"}``;
        an image item -> ``{"kind": "image", "pixels": (1, 3, S, S), "size": (H, W), "tokens"}``.
        Every frame is resized to the tower's square input, so the pixel budgets (``max_pixels``,
        ``min_pixels``, ``total_pixels``) do not apply to this family."""
        if item["type"] == "image":
            from transformers.models.llava_onevision.image_processing_pil_llava_onevision import LlavaOnevisionImageProcessorPil

            image = image_uint8(item["image"], self.family)
            mean, _ = self._norm("image")
            # The image processor's own square padding (mean colour), channels first.
            square = LlavaOnevisionImageProcessorPil(image_mean=list(mean)).pad_to_square(
                np.moveaxis(image, -1, 0), background_color=tuple(int(x * 255) for x in mean))
            pixels = self._normalise(np.moveaxis(square, 0, -1)[None], "image")
            vc, cfg = self.model.config.vision_config, self.model.config
            tokens = (vc.image_size // vc.patch_size) ** 2 + 1 - (cfg.vision_feature_select_strategy == "default")
            return {"kind": "image", "pixels": pixels, "size": image.shape[:2], "tokens": tokens}
        count = min(self.options.num_frames, max_frames or self.options.max_frames)
        if item.get("frames") is not None:
            given = [np.asarray(f) for f in item["frames"]]
            if not given:
                raise ModelError(f"{self.family}: a video item with an empty frame list")
            frames = np.stack([given[i] for i in uniform_indices(0, len(given), count)])
        else:
            frames = read_video_frames(item["path"], count, item.get("start"), item.get("end"))
        return {"kind": "video", "pixels": self._normalise(frames, "video"), "frames": len(frames),
                "tokens": len(frames) * self.tokens_per_frame() + 1}

    def render(self, messages, visuals, add_generation_prompt):
        images = sum(1 for m in messages if not isinstance(m["content"], str) for c in m["content"] if c["type"] == "image")
        if images == 1:
            raise ModelError(f"{self.family}: a conversation with a single image (LLaVA-OneVision tiles it, 'anyres') "
                             "is not supported by this backend; two or more images, or videos, are")
        return super().render(messages, visuals, add_generation_prompt)

    def expand_placeholder(self, placeholder: str, visual: dict[str, Any]) -> str:
        if placeholder != f"<{visual['kind']}>":
            raise ModelError(f"{self.family}: visual items out of order with the template's placeholders")
        return placeholder * visual["tokens"]

    def visual_batch(self, visuals: list[dict]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        videos = [v for v in visuals if v["kind"] == "video"]
        images = [v for v in visuals if v["kind"] == "image"]
        if videos:
            counts = {v["frames"] for v in videos}
            if len(counts) > 1:
                raise ModelError(f"{self.family}: videos of one batch must have the same frame count, got {sorted(counts)}")
            out["pixel_values_videos"] = torch.stack([v["pixels"] for v in videos])
        if images:
            out["pixel_values"] = torch.stack([v["pixels"] for v in images])  # (N, 1 tile, 3, S, S)
            out["image_sizes"] = torch.tensor([list(v["size"]) for v in images])
            # Conversations hold two or more images (render refuses one): none is tiled. The model
            # reads batch_num_images only to tell tiled (lone) images from the others.
            out["batch_num_images"] = torch.tensor([len(images)])
        return out

    def visual_module_name(self) -> str:
        return "vision_tower"

    def projector_module_name(self) -> str:
        return "multi_modal_projector"  # outside the tower: DPO freezes it too, SFT's LoRA leaves it alone

    # -- training ---------------------------------------------------------------------------
    def vision_features(self, model, shared):
        inner = self.inner_model(model)
        cfg = inner.config
        out = inner.get_video_features(shared["pixel_values_videos"], vision_feature_layer=cfg.vision_feature_layer,
                                       vision_feature_select_strategy=cfg.vision_feature_select_strategy, return_dict=True)
        return tuple(out.pooler_output)  # one (tokens, hidden) per video: pooled frames + the newline

    def select_videos(self, shared, indices):
        # Every video of a batch has the same frame count (the model stacks them): one row each.
        return {"pixel_values_videos": shared["pixel_values_videos"][list(indices)]}

    def model_inputs(self, shared, *, vision_features=None, repeat=1):
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        if vision_features is None:
            return {"pixel_values_videos": shared["pixel_values_videos"].repeat(repeat, 1, 1, 1, 1)}
        # The model's precomputed-encoder path: scattered into the <video> positions, tower skipped.
        features = torch.stack(tuple(vision_features)).repeat(repeat, 1, 1)
        return {"mm_encoder_outputs": {"video": BaseModelOutputWithPooling(pooler_output=features)}}

    # -- surgery ----------------------------------------------------------------------------
    def vision_module_names(self, model) -> list[str]:
        return [name for name, _ in model.named_modules() if name.split(".")[-1] in ("vision_tower", "multi_modal_projector")
                and name.count("vision_tower") + name.count("multi_modal_projector") == 1]


@hookimpl
def register_backends(register):
    register(FAMILY, LlavaOneVisionBackend)
