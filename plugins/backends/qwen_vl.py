"""Qwen2-VL, Qwen2.5-VL and MiMo-VL backends on transformers' own model classes.

Video and images are turned into the model's tensors here (``pixel_values_videos``,
``video_grid_thw``, ``second_per_grid_ts`` for Qwen2.5-VL / MiMo-VL, ``mm_token_type_ids``)
without the transformers processors, which need torchvision (see
``temple_core.models.vision_tokens`` for the resize equivalence). The tokenizer and its chat
template come from the model directory.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import attrs
import numpy as np
import torch

from temple_core.hookspecs import hookimpl
from temple_core.models.hf import AnswerAfterThinking, HFChatBackend, options_class
from temple_core.models.vision_tokens import (
    OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, build_tiny_tokenizer, frame_pixel_cap, item_frames, qwen_patchify,
)


def chat_template(default_system: str | None) -> str:
    """The Qwen chat template, reduced to what this project sends (text, video, image items);
    ``default_system``: the system prompt put first when a conversation has none (Qwen2-VL's
    "You are a helpful assistant."; Qwen3-VL has none)."""
    system = (
        "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\n" + default_system + "<|im_end|>\n{% endif %}"
        if default_system else ""
    )
    return "{% for message in messages %}" + system + _MESSAGES_TEMPLATE


_MESSAGES_TEMPLATE = (
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for c in message['content'] %}"
    "{% if c['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# Qwen2-VL's (and Qwen2.5-VL's, MiMo-VL's).
CHAT_TEMPLATE = chat_template("You are a helpful assistant.")
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]


class QwenVLBackend(HFChatBackend):
    """Shared Qwen-VL code; subclasses name the family, model class and tiny config."""

    has_second_per_grid = False
    special_tokens = SPECIAL_TOKENS
    chat_template = CHAT_TEMPLATE

    #: transformers' processor class of the family (``processor_class`` of its config files).
    processor_class = "Qwen2VLProcessor"

    def visual_module_name(self) -> str:
        return "visual"

    def processor_files(self, config) -> dict[str, dict]:
        vc = config.vision_config if config is not None else None
        common = {
            "do_convert_rgb": True, "do_normalize": True, "do_rescale": True, "do_resize": True,
            "image_mean": list(OPENAI_CLIP_MEAN), "image_std": list(OPENAI_CLIP_STD), "resample": 3,
            "rescale_factor": 1 / 255, "processor_class": self.processor_class,
            "patch_size": vc.patch_size if vc else 14, "merge_size": vc.spatial_merge_size if vc else 2,
            "temporal_patch_size": vc.temporal_patch_size if vc else 2,
            # Qwen2-VL-7B-Instruct's published limits (the backend's own max_pixels option applies in temple).
            "min_pixels": 3136, "max_pixels": 12845056, "size": {"shortest_edge": 3136, "longest_edge": 12845056},
        }
        return {
            "preprocessor_config.json": {**common, "image_processor_type": "Qwen2VLImageProcessor"},
            "video_preprocessor_config.json": {**common, "video_processor_type": "Qwen2VLVideoProcessor", "do_sample_frames": False},
        }

    def projector_module_name(self) -> str:
        return "merger"  # the patch merger inside ``visual``: Qwen's projector onto the LM

    def _ids(self):
        cfg = self.model.config
        return cfg.image_token_id, cfg.video_token_id

    # -- visual tensors ---------------------------------------------------------------------
    def _vision_cfg(self):
        return self.model.config.vision_config

    def visual_inputs(self, item: dict[str, Any], fps: float | None = None, max_frames: int | None = None,
                      max_pixels: int | None = None, min_pixels: int | None = None,
                      total_pixels: int | None = None) -> dict[str, Any]:
        """One content item (video or image) -> ``{"kind", "pixels", "grid", "tokens", "seconds_per_grid"}``."""
        vc = self._vision_cfg()
        fps = fps or self.options.fps
        low = item.get("min_pixels") or min_pixels or self.options.min_pixels
        high = item.get("max_pixels") or max_pixels or self.options.max_pixels
        common = dict(patch_size=vc.patch_size, merge_size=vc.spatial_merge_size, temporal_patch_size=vc.temporal_patch_size,
                      min_pixels=low)
        if item["type"] == "image":
            image = np.asarray(item["image"])[None]
            # The image processor tiles one image over the temporal patch.
            pixels, grid = qwen_patchify(np.repeat(image, vc.temporal_patch_size, 0), max_pixels=high, **common)
            kind, rate = "image", None
        else:
            frames, rate = item_frames(item, fps, max_frames or self.options.max_frames)
            cap = frame_pixel_cap(high, low, total_pixels, len(frames), vc.temporal_patch_size)
            pixels, grid = qwen_patchify(frames, max_pixels=cap, **common)
            kind = "video"
        tokens = grid[0] * grid[1] * grid[2] // vc.spatial_merge_size**2
        spg = vc.temporal_patch_size / rate if rate else None
        return {"kind": kind, "pixels": pixels, "grid": grid, "tokens": tokens, "seconds_per_grid": spg}

    def row_extras(self, ids: list[int]) -> dict[str, list[int]]:
        # M-RoPE needs to know which tokens are image (1) and video (2) placeholders.
        image_id, video_id = self._ids()
        return {"mm_token_type_ids": [1 if t == image_id else 2 if t == video_id else 0 for t in ids]}

    def visual_batch(self, visuals: list[dict]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        videos = [v for v in visuals if v["kind"] == "video"]
        images = [v for v in visuals if v["kind"] == "image"]
        if videos:
            out["pixel_values_videos"] = torch.cat([v["pixels"] for v in videos])
            out["video_grid_thw"] = torch.tensor([v["grid"] for v in videos])
            if self.has_second_per_grid:
                out["second_per_grid_ts"] = torch.tensor([v["seconds_per_grid"] for v in videos])
        if images:
            out["pixel_values"] = torch.cat([v["pixels"] for v in images])
            out["image_grid_thw"] = torch.tensor([v["grid"] for v in images])
        return out

    def vision_features(self, model, shared):
        """Per-video vision embeddings (a tuple, one tensor per video), from the model's own
        ``get_video_features`` so they are exactly what its forward would compute."""
        self._videos_only(shared)
        inner = self.inner_model(model)
        out = inner.get_video_features(shared["pixel_values_videos"], shared["video_grid_thw"], return_dict=True)
        return tuple(out.pooler_output)

    @staticmethod
    def _videos_only(shared):
        if "pixel_values" in shared or "image_grid_thw" in shared:
            from temple_core.errors import ModelError

            raise ModelError("qwen-vl: per-pair vision features are computed for video pairs only (this batch has images)")

    def select_videos(self, shared, indices):
        self._videos_only(shared)
        grid = shared["video_grid_thw"]
        ends = grid.prod(-1).cumsum(0).tolist()  # rows of pixel_values_videos per video: t * h * w patches
        starts = [0] + ends[:-1]
        out = {
            "pixel_values_videos": torch.cat([shared["pixel_values_videos"][starts[i] : ends[i]] for i in indices]),
            "video_grid_thw": grid[list(indices)],
        }
        if "second_per_grid_ts" in shared:
            out["second_per_grid_ts"] = shared["second_per_grid_ts"][list(indices)]
        return out

    def position_ids(self, model, input_ids, attention_mask, extras, shared, repeat=1):
        """The model's own 3-D M-RoPE positions (``get_rope_index``, as its forward calls it):
        video tokens get (time, height, width) positions, text continues from their maximum."""
        grids: dict[str, Any] = {}
        if "video_grid_thw" in shared:
            grids["video_grid_thw"] = shared["video_grid_thw"].repeat(repeat, 1)
        if "image_grid_thw" in shared:
            grids["image_grid_thw"] = shared["image_grid_thw"].repeat(repeat, 1)
        if self.has_second_per_grid and "second_per_grid_ts" in shared:
            grids["second_per_grid_ts"] = shared["second_per_grid_ts"].repeat(repeat)
        positions, _ = self.inner_model(model).get_rope_index(
            input_ids, mm_token_type_ids=extras["mm_token_type_ids"], attention_mask=attention_mask, **grids
        )
        return positions

    def model_inputs(self, shared, *, vision_features=None, repeat=1):
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        out: dict[str, Any] = {"video_grid_thw": shared["video_grid_thw"].repeat(repeat, 1)}
        if self.has_second_per_grid and "second_per_grid_ts" in shared:
            out["second_per_grid_ts"] = shared["second_per_grid_ts"].repeat(repeat)
        if vision_features is None:
            out["pixel_values_videos"] = shared["pixel_values_videos"].repeat(repeat, 1)
        else:
            # transformers' precomputed-encoder path: the model scatters these into the
            # video-token positions and skips its vision tower.
            out["mm_encoder_outputs"] = {"video": BaseModelOutputWithPooling(pooler_output=tuple(vision_features) * repeat)}
        return out


class Qwen2VLBackend(QwenVLBackend):
    """Qwen2-VL (transformers ``Qwen2VLForConditionalGeneration``); presets ``tiny-random`` and
    ``micro`` (pre-trained on the micro world: ``temple_core.models.micro``)."""

    family = "qwen2_vl"
    model_types = ("qwen2_vl",)
    Options = options_class(presets=("tiny-random", "micro"))

    def model_class(self):
        from transformers import Qwen2VLForConditionalGeneration

        return Qwen2VLForConditionalGeneration

    # -- the micro preset: its own tokenizer, config and pre-training --------------------------
    def preset_key(self) -> str:
        if self.options.preset == "micro":
            from temple_core.models import micro

            return f"-{micro.key()}"
        return super().preset_key()

    def preset_tokenizer(self):
        if self.options.preset == "micro":
            from temple_core.models import micro

            return build_tiny_tokenizer(self.special_tokens, self.chat_template, eos=self.end_of_turn, pad=self.pad_token,
                                        vocab_size=1000, text=micro.tokenizer_text())
        return super().preset_tokenizer()

    def train_preset(self, model, tokenizer, folder, seed):
        if self.options.preset == "micro":
            from temple_core.models import micro

            return micro.pretrain(self, model, tokenizer, folder, seed)
        return model

    def tiny_config(self, tok):
        from transformers import Qwen2VLConfig

        if self.options.preset == "micro":
            from temple_core.models import micro

            return micro.config(tok)

        return Qwen2VLConfig(
            text_config=_tiny_text(tok),
            vision_config=dict(depth=2, embed_dim=32, hidden_size=64, num_heads=2, mlp_ratio=2, patch_size=14, spatial_merge_size=2, temporal_patch_size=2),
            **tiny_token_ids(tok),
        )


@attrs.define(kw_only=True)
class Qwen2_5VLOptions(HFChatBackend.Options):
    #: ``second_per_grid_ts`` of a training video: ``swift`` (ms-swift's template, the release's):
    #: temporal patch size / the stage's fps, whatever was sampled (1.0 at 2 fps, also where
    #: ``max_frames`` capped a long video's rate); ``sampled``: / the rate the frames were really
    #: sampled at. Chat and evaluation always use the sampled rate. See docs/method.md.
    train_seconds_per_grid: Literal["swift", "sampled"] = attrs.field(default="swift", validator=attrs.validators.in_(["swift", "sampled"]))


class Qwen2_5VLBackend(QwenVLBackend):
    """Qwen2.5-VL (transformers ``Qwen2_5_VLForConditionalGeneration``; video time in ``second_per_grid_ts``)."""

    family = "qwen2_5_vl"
    model_types = ("qwen2_5_vl",)
    has_second_per_grid = True
    processor_class = "Qwen2_5_VLProcessor"
    Options = Qwen2_5VLOptions

    def training_visual_inputs(self, item, fps=None, max_frames=None, max_pixels=None, min_pixels=None, total_pixels=None):
        # ms-swift 3.7's Qwen2.5-VL template: temporal_patch_size / qwen_vl_utils' FPS (the
        # launchers' FPS), not the rate a capped video was really sampled at.
        vis = self.visual_inputs(item, fps, max_frames, max_pixels, min_pixels, total_pixels)
        if vis["kind"] == "video" and self.options.train_seconds_per_grid == "swift":
            vis = {**vis, "seconds_per_grid": self._vision_cfg().temporal_patch_size / (fps or self.options.fps)}
        return vis

    def model_class(self):
        from transformers import Qwen2_5_VLForConditionalGeneration

        return Qwen2_5_VLForConditionalGeneration

    def tiny_config(self, tok):
        from transformers import Qwen2_5_VLConfig

        return Qwen2_5_VLConfig(
            text_config=_tiny_text(tok),
            vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, out_hidden_size=64, num_heads=2, patch_size=14,
                               spatial_merge_size=2, temporal_patch_size=2, window_size=56, fullatt_block_indexes=[1]),
            **tiny_token_ids(tok),
        )


#: What opens MiMo-VL's description of a video, where its clean-up keeps the text from (SPEC §2.5).
MIMO_OPENINGS = re.compile(r"the video (?:opens|starts|begins)", re.IGNORECASE)
#: A parenthetical remark about the caption itself ("(caption of clip 3)"), no nested parentheses.
MIMO_CAPTION_REMARK = re.compile(r"\([^()]*aption[^()]*\)")


@attrs.define(kw_only=True)
class MiMoVLOptions(Qwen2_5VLOptions):
    #: Clean MiMo-VL's video descriptions as the release does (SPEC §2.5): keep the text from
    #: the last "The video opens/starts/begins", drop a description without one, strip
    #: parenthetical "(...caption...)" remarks.
    clean_descriptions: bool = True


class MiMoVLBackend(AnswerAfterThinking, Qwen2_5VLBackend):
    """MiMo-VL (Qwen2.5-VL architecture; reasons in ``<think>...</think>``, the answer follows)."""

    family = "mimo_vl"
    Options = MiMoVLOptions
    #: Its reasoning comes first: the release let it write 8,192 new tokens (SPEC §2.1).
    default_max_new_tokens = 8192

    def clean_description(self, text: str) -> tuple[str, str | None]:
        """The release's clean-up of MiMo-VL's summaries (SPEC §2.5; ``clean`` has already kept
        the text after the last ``</think>``). The last opening phrase is found case-blind, as
        the release's ``rfind`` on the lower-cased text; the remark pattern is case-sensitive
        (``aption``: "caption" or "Caption"), as the release's."""
        if not self.options.clean_descriptions:
            return text, None
        openings = list(MIMO_OPENINGS.finditer(text))
        if not openings:
            return "", "no_opening"
        return MIMO_CAPTION_REMARK.sub("", text[openings[-1].start():]).strip(), None


def _tiny_text(tok) -> dict:
    return dict(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=4096,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [2, 3, 3]},
        # Untied and a wide init: a random model that writes varied text (tied small weights
        # echo the last prompt token forever, which would make output comparisons vacuous).
        tie_word_embeddings=False, initializer_range=0.2,
        bos_token_id=None, eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"), pad_token_id=tok.pad_token_id,
    )


def tiny_token_ids(tok) -> dict:
    """The Qwen-VL special-token ids of a tiny preset's config, from its tokenizer."""
    ids = tok.convert_tokens_to_ids
    return dict(
        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"),
        bos_token_id=None, eos_token_id=ids("<|im_end|>"), pad_token_id=tok.pad_token_id, tie_word_embeddings=False,
    )


@hookimpl
def register_backends(register):
    register("qwen2_vl", Qwen2VLBackend)
    register("qwen2_5_vl", Qwen2_5VLBackend)
    register("mimo_vl", MiMoVLBackend)
