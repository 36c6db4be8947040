"""Qwen3-VL backend (dense ``Qwen3VLForConditionalGeneration`` and MoE
``Qwen3VLMoeForConditionalGeneration``), on the shared Qwen-VL machinery of ``qwen_vl.py``.

The video tensors are built without torchvision, as for Qwen2-VL / Qwen2.5-VL, following
transformers' ``Qwen3VLProcessor`` + ``Qwen3VLVideoProcessor`` step by step. What Qwen3-VL's
video input needs that Qwen2.5-VL's does not:

* **patch 16, merge 2**: frames are resized to multiples of 32 (read from the checkpoint's
  ``vision_config``, like every size here), normalised with mean = std = 0.5 (the checkpoint's
  ``video_preprocessor_config.json`` / ``preprocessor_config.json`` when it has them);
* **one pixel budget per clip**: the video resize is transformers' Qwen3-VL ``smart_resize``
  over the clip's volume ``t x h x w``. temple's ``max_pixels`` / ``min_pixels`` stay per
  frame (as for every backend), so the clip's budget is ``max_pixels x frames`` -- the
  processor's ``size={"longest_edge": max_pixels * T, "shortest_edge": min_pixels * T}``;
* **timestamps in the prompt**: each temporal patch (2 frames) is written as
  ``<{t:.1f} seconds><|vision_start|><|video_pad|>*n<|vision_end|>``, ``t`` the mean time of
  its first and last frame in the source video, inside the chat template's own
  ``<|vision_start|>...<|vision_end|>`` (the processor's text, to the character). M-RoPE then
  splits ``video_grid_thw`` per frame, and there is no ``second_per_grid_ts``;
* **deepstack**: the tower also returns features of intermediate layers, added to the first
  language-model layers at the visual positions. Reused vision features
  (:meth:`Qwen3VLBackend.vision_features`) carry them, so one vision pass per DPO pair gives
  the same logits as four.

Images go through Qwen2-VL's image processor rules with Qwen3-VL's sizes (per-image
``smart_resize`` to multiples of 32), as transformers' ``Qwen3VLProcessor`` does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from temple_core.errors import ModelError
from temple_core.hookspecs import hookimpl
from temple_core.models.hf import AnswerAfterThinking, options_class
from temple_core.models.vision_tokens import frame_pixel_cap, qwen_patchify, sample_video
from temple_plugins.backends.qwen_vl import SPECIAL_TOKENS, QwenVLBackend, chat_template, tiny_token_ids

#: Qwen3-VL's defaults (transformers' Qwen3VLVideoProcessor, Qwen3-VL checkpoints' preprocessor configs).
QWEN3_MEAN = (0.5, 0.5, 0.5)
QWEN3_STD = (0.5, 0.5, 0.5)

# Qwen3-VL's chat template: unlike Qwen2-VL's, no default system prompt.
CHAT_TEMPLATE = chat_template(None)


def clip_resize(frames: int, height: int, width: int, *, factor: int, temporal_patch_size: int,
                min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """The resize target of a clip: transformers' Qwen3-VL video ``smart_resize`` (its own
    function, imported: it needs no torchvision) with per-frame budgets times ``frames``."""
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import smart_resize

    try:
        return smart_resize(frames, height, width, temporal_factor=temporal_patch_size, factor=factor,
                            min_pixels=min_pixels * frames, max_pixels=max_pixels * frames)
    except ValueError as exc:  # e.g. an aspect ratio above 200
        raise ModelError(f"qwen3_vl: a {width}x{height} video cannot be resized: {exc}") from None


class Qwen3VLBackend(AnswerAfterThinking, QwenVLBackend):
    """Qwen3-VL, dense and MoE (answers of the Thinking models: the text after ``</think>``)."""

    family = "qwen3_vl"
    model_types = ("qwen3_vl", "qwen3_vl_moe")
    Options = options_class(presets=("tiny-random", "tiny-random-moe"))
    special_tokens = SPECIAL_TOKENS
    chat_template = CHAT_TEMPLATE

    # -- loading ----------------------------------------------------------------------------
    def _is_moe(self) -> bool:
        if self.options.preset:
            return self.options.preset.endswith("-moe")
        config = Path(self.options.path) / "config.json"
        return config.is_file() and json.loads(config.read_text()).get("model_type") == "qwen3_vl_moe"

    def model_class(self):
        from transformers import Qwen3VLForConditionalGeneration, Qwen3VLMoeForConditionalGeneration

        return Qwen3VLMoeForConditionalGeneration if self._is_moe() else Qwen3VLForConditionalGeneration

    def tiny_config(self, tok):
        from transformers import Qwen3VLConfig, Qwen3VLMoeConfig

        text = dict(
            vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, head_dim=16, max_position_embeddings=4096,
            rope_parameters={"rope_type": "default", "rope_theta": 5000000.0, "mrope_section": [2, 3, 3], "mrope_interleaved": True},
            # Untied with a wide init: a random model that writes varied text (see qwen_vl._tiny_text).
            tie_word_embeddings=False, initializer_range=0.2,
            bos_token_id=None, eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"), pad_token_id=tok.pad_token_id,
        )
        # Two deepstack layers (the 8B has three: 8, 16, 24 of 27) for the two text layers.
        vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=16, spatial_merge_size=2,
                      temporal_patch_size=2, out_hidden_size=64, num_position_embeddings=64, deepstack_visual_indexes=[0, 1])
        if self._is_moe():
            text.update(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32, decoder_sparse_step=1)
            return Qwen3VLMoeConfig(text_config=text, vision_config=vision, **tiny_token_ids(tok))
        return Qwen3VLConfig(text_config=text, vision_config=vision, **tiny_token_ids(tok))

    processor_class = "Qwen3VLProcessor"

    def projector_module_names(self, model) -> list[str]:
        """Qwen3-VL projects onto the language model twice: the final ``merger`` and the
        deepstack mergers that feed early LM layers. Neither is LoRA-trained in SFT."""
        return [*super().projector_module_names(model),
                *(name for name, _ in model.named_modules() if name.endswith("visual.deepstack_merger_list"))]

    def processor_files(self, config) -> dict[str, dict]:
        """The processor files of a Qwen3-VL checkpoint (Qwen3-VL-8B-Instruct's layout: patch
        16, mean/std 0.5), written into the tiny presets so that transformers' AutoProcessor
        loads them and this backend reads the same normalisation from them."""
        vc = config.vision_config if config is not None else None
        common = {
            "do_convert_rgb": True, "do_normalize": True, "do_rescale": True, "do_resize": True,
            "image_mean": list(QWEN3_MEAN), "image_std": list(QWEN3_STD), "resample": 3,
            "rescale_factor": 1 / 255, "processor_class": self.processor_class,
            "patch_size": vc.patch_size if vc else 16, "merge_size": vc.spatial_merge_size if vc else 2,
            "temporal_patch_size": vc.temporal_patch_size if vc else 2,
        }
        return {
            "preprocessor_config.json": {**common, "image_processor_type": "Qwen2VLImageProcessorFast",
                                         "size": {"shortest_edge": 65536, "longest_edge": 16777216}},
            "video_preprocessor_config.json": {**common, "video_processor_type": "Qwen3VLVideoProcessor", "do_sample_frames": False,
                                               "size": {"shortest_edge": 4096, "longest_edge": 25165824}},
        }

    # -- visual tensors ---------------------------------------------------------------------
    def _norm(self, kind: str) -> tuple[tuple, tuple]:
        """Mean/std from the checkpoint's preprocessor config for ``kind`` (video: its video
        config, else the image one), Qwen3-VL's 0.5/0.5 when absent."""
        folder = self.model_dir()
        if getattr(self, "_norm_for", None) != folder:
            found = {}
            for name in ("video_preprocessor_config.json", "preprocessor_config.json"):
                file = Path(folder) / name
                cfg = json.loads(file.read_text()) if file.is_file() else {}
                if "image_mean" in cfg:
                    found[name] = (tuple(cfg["image_mean"]), tuple(cfg["image_std"]))
            image = found.get("preprocessor_config.json", (QWEN3_MEAN, QWEN3_STD))
            self._norms = {"image": image, "video": found.get("video_preprocessor_config.json", image)}
            self._norm_for = folder
        return self._norms[kind]

    def visual_inputs(self, item: dict[str, Any], fps: float | None = None, max_frames: int | None = None,
                      max_pixels: int | None = None, min_pixels: int | None = None,
                      total_pixels: int | None = None) -> dict[str, Any]:
        """One content item -> ``{"kind", "pixels", "grid", "tokens", "timestamps"}`` (timestamps:
        seconds of each temporal patch, videos only). An item's own ``max_pixels`` /
        ``min_pixels`` win (the captioner's clips); ``total_pixels`` caps a video's frames by
        qwen-vl-utils' rule (:func:`temple_core.models.vision_tokens.frame_pixel_cap`)."""
        vc = self._vision_cfg()
        p, m, tps = vc.patch_size, vc.spatial_merge_size, vc.temporal_patch_size
        min_px = item.get("min_pixels") or min_pixels or self.options.min_pixels
        max_px = item.get("max_pixels") or max_pixels or self.options.max_pixels
        if item["type"] == "image":
            image = np.asarray(item["image"])[None]
            mean, std = self._norm("image")
            # Per-image smart_resize (Qwen2-VL's image processor rules), tiled over the temporal patch.
            pixels, grid = qwen_patchify(np.repeat(image, tps, 0), patch_size=p, merge_size=m, temporal_patch_size=tps,
                                         min_pixels=min_px, max_pixels=max_px, mean=mean, std=std)
            return {"kind": "image", "pixels": pixels, "grid": grid, "tokens": grid[0] * grid[1] * grid[2] // m**2, "timestamps": None}
        video = sample_video(item, fps or self.options.fps, max_frames or self.options.max_frames)
        frames, times = video.frames, list(video.timestamps)
        max_px = frame_pixel_cap(max_px, min_px, total_pixels, len(frames), tps)
        if pad := -len(frames) % tps:
            # The processor pads the last temporal patch with the last frame (and its time);
            # padding first lets a single frame through the clip resize, which needs one full patch.
            frames = np.concatenate([frames, np.repeat(frames[-1:], pad, 0)])
            times += [times[-1]] * pad
        t, h, w = frames.shape[:3]
        size = clip_resize(t, h, w, factor=p * m, temporal_patch_size=tps, min_pixels=min_px, max_pixels=max_px)
        mean, std = self._norm("video")
        pixels, grid = qwen_patchify(frames, patch_size=p, merge_size=m, temporal_patch_size=tps, size=size, mean=mean, std=std)
        stamps = [(times[i] + times[i + tps - 1]) / 2 for i in range(0, t, tps)]
        return {"kind": "video", "pixels": pixels, "grid": grid, "tokens": grid[0] * grid[1] * grid[2] // m**2, "timestamps": stamps}

    def expand_placeholder(self, placeholder: str, visual: dict[str, Any]) -> str:
        if placeholder == "<|video_pad|>" and visual["kind"] == "video":
            per_frame = visual["tokens"] // visual["grid"][0]
            frame = "<|vision_start|>" + "<|video_pad|>" * per_frame + "<|vision_end|>"
            return "".join(f"<{t:.1f} seconds>{frame}" for t in visual["timestamps"])
        return super().expand_placeholder(placeholder, visual)

    # -- training ---------------------------------------------------------------------------
    def vision_features(self, model, shared):
        """One entry per video, as the backend contract asks: ``(embeddings, deepstack features
        (one per deepstack layer))``, from the model's own ``get_video_features``."""
        self._videos_only(shared)
        out = self.inner_model(model).get_video_features(shared["pixel_values_videos"], shared["video_grid_thw"], return_dict=True)
        pooled = tuple(out.pooler_output)
        layers = [tuple(layer) for layer in out.deepstack_features]
        return tuple((pooled[i], tuple(layer[i] for layer in layers)) for i in range(len(pooled)))

    def model_inputs(self, shared, *, vision_features=None, repeat=1):
        if vision_features is None:
            return super().model_inputs(shared, repeat=repeat)
        from transformers.models.qwen3_vl.modeling_qwen3_vl import BaseModelOutputWithDeepstackFeatures

        # Rows [chosen; rejected]: each video's features (and deepstack features) once per row.
        videos = tuple(vision_features)
        pooled = tuple(video[0] for video in videos)
        layers = [tuple(video[1][j] for video in videos) for j in range(len(videos[0][1]))] if videos else []
        features = BaseModelOutputWithDeepstackFeatures(
            pooler_output=pooled * repeat, deepstack_features=[layer * repeat for layer in layers],
        )
        return {"video_grid_thw": shared["video_grid_thw"].repeat(repeat, 1), "mm_encoder_outputs": {"video": features}}


@hookimpl
def register_backends(register):
    register("qwen3_vl", Qwen3VLBackend)
