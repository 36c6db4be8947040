"""InternVL2.5 backend on transformers' ``InternVLForConditionalGeneration`` (HF-format checkpoints,
e.g. ``OpenGVLab/InternVL2_5-8B-MPO-hf``).

Visual input as transformers' ``InternVLProcessor`` builds it, without torchvision:

* Video: every sampled frame is one tile, resized to the vision tower's ``image_size`` square
  (bicubic, antialiased, as in ``temple_core.models.vision_tokens``), rescaled and normalised, and
  enters the text as ``Frame{i}: <img><IMG_CONTEXT>*image_seq_length</img>`` lines joined by
  ``\\n`` (the processor's ``InternVLVideoProcessor``).
* Image: dynamic tiling by transformers' own GotOcr2 image processor (its numpy backend,
  ``GotOcr2ImageProcessorPil``, configured from the checkpoint's ``preprocessor_config.json``):
  the grid of ``min_image_tiles..max_image_tiles`` square tiles whose aspect ratio is closest to
  the image's, the image resized to that grid and cut into tiles, plus a thumbnail of the whole
  image when there is more than one tile (``image_tiling: false``: one tile, as a frame). The one
  step done differently is the resize kernel: ``resize_uint8`` (torch's native uint8 bicubic
  antialiased kernel, which torchvision calls on the CPU) instead of PIL's, so the tiles equal
  what the processor's default, torchvision image processor gives -- and what the video frames
  get. The text is ``<img><IMG_CONTEXT>*(image_seq_length*tiles)</img>``; see docs/backends.md.
Original remote-code checkpoints (``model_type: internvl_chat``, e.g. ``OpenGVLab/InternVL2_5-8B``)
are refused unless ``trust_remote_code`` is set; then they are converted once to transformers'
format in the cache (``internvl_original.py``: the mapping of transformers' own conversion
script) and loaded from there.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch

from temple_core.errors import ModelError
from temple_core.hookspecs import hookimpl
from temple_core.models.hf import AnswerAfterThinking, HFChatBackend, options_class
from temple_core.models.vision_tokens import cache_dir, image_uint8, item_frames, resize_uint8
from temple_plugins.backends.internvl_original import converted_dir, is_original

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


@functools.cache
def tiled_image_processor_class():
    """``TiledImageProcessor``: transformers' GotOcr2 (InternVL) image processor, numpy backend,
    whose bicubic resize of uint8 images is ``resize_uint8`` -- torch's native kernel, as the
    default (torchvision) ``GotOcr2ImageProcessor`` resizes on the CPU -- instead of PIL's.
    Grid choice, crops, thumbnail, rescale and normalisation are the library's own. (Built on
    first use: importing the image processor costs seconds at plugin load.)"""
    from transformers.image_utils import PILImageResampling
    from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import GotOcr2ImageProcessorPil

    class TiledImageProcessor(GotOcr2ImageProcessorPil):
        def resize(self, image, size, resample=None, **kwargs):
            if image.dtype != np.uint8 or resample not in (PILImageResampling.BICUBIC, int(PILImageResampling.BICUBIC)):
                return super().resize(image, size, resample=resample, **kwargs)
            # ``image`` is channels-first here (the backend's layout).
            out = resize_uint8(np.moveaxis(image, 0, -1)[None], size.height, size.width)[0]
            return out.to(torch.uint8).numpy()

    TiledImageProcessor.__doc__ = tiled_image_processor_class.__doc__
    return TiledImageProcessor


def _positive(instance, attribute, value):
    if value is not None and value < 1:
        raise ValueError(f"{attribute.name} must be at least 1, got {value}")


#: The tiny-random presets, one per language-model family of the InternVL releases (the vision
#: tower, projector and visual tokens are the same classes in all of them):
#: ``tiny-random`` -- Qwen2 (InternVL3-1B..78B, InternVL2.5-1B/4B/38B/78B);
#: ``tiny-random-internvl3_5`` -- Qwen3 with its q/k norms and explicit head_dim (InternVL3.5-1B..38B-HF);
#: ``tiny-random-llama`` -- Llama (InternLM2 converted: InternVL2.5-2B/8B/26B-hf, the paper's model).
PRESETS = {"tiny-random": "qwen2", "tiny-random-internvl3_5": "qwen3", "tiny-random-llama": "llama"}


@attrs.define(kw_only=True)
class InternVLOptions(options_class(presets=tuple(PRESETS))):
    #: Tile images dynamically, as transformers' InternVLProcessor does (false: one tile per image).
    image_tiling: bool = True
    #: Fewest tiles per image (thumbnail not counted); None: the checkpoint's preprocessor_config.json min_patches, else 1.
    min_image_tiles: int | None = attrs.field(default=None, validator=_positive)
    #: Most tiles per image (thumbnail not counted); None: the checkpoint's preprocessor_config.json max_patches, else 12.
    max_image_tiles: int | None = attrs.field(default=None, validator=_positive)

    def __attrs_post_init__(self):
        if self.min_image_tiles is not None and self.max_image_tiles is not None and self.min_image_tiles > self.max_image_tiles:
            raise ValueError(f"min_image_tiles ({self.min_image_tiles}) > max_image_tiles ({self.max_image_tiles})")


class InternVLBackend(AnswerAfterThinking, HFChatBackend):
    """InternVL2.5 / InternVL3 / InternVL3.5 (transformers ``InternVLForConditionalGeneration``;
    InternVL3.5's thinking mode: the answer is the text after ``</think>``)."""

    family = "internvl"
    Options = InternVLOptions
    model_types = ("internvl",)
    remote_types = ("internvl_chat",)
    special_tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>", "<video>"]
    chat_template = CHAT_TEMPLATE
    placeholder_pattern = r"<video>|<IMG_CONTEXT>"
    # transformers' InternVLProcessor reads these from the tokenizer (InternVL's HF checkpoints carry them).
    named_tokens = {"start_image_token": "<img>", "end_image_token": "</img>", "context_image_token": "<IMG_CONTEXT>", "video_token": "<video>"}
    preset_revision = 2  # r2: the tokenizer names its image tokens, and processor files (AutoProcessor loads it)
    #: (original folder, converted folder) once an original checkpoint was converted.
    _converted: tuple[str, str] | None = None

    def model_class(self):
        from transformers import InternVLForConditionalGeneration

        return InternVLForConditionalGeneration

    def model_dir(self) -> str:
        folder = super().model_dir()
        # An original remote-code checkpoint, allowed by trust_remote_code: converted once to
        # transformers' format (internvl_original.py) and loaded from the cache like any other.
        # Remembered per folder: this is called for every visual item (preprocessor configs).
        if self._converted is not None and self._converted[0] == folder:
            return self._converted[1]
        if self.options.trust_remote_code and not self.options.preset and folder and is_original(folder):
            done = converted_dir(folder, cache_dir(), chat_template=CHAT_TEMPLATE, trust_remote_code=True)
            self._converted = (folder, str(done))
            return self._converted[1]
        return folder

    def tiny_config(self, tok):
        from transformers import InternVLConfig

        ids = tok.convert_tokens_to_ids
        text = dict(model_type=PRESETS[self.options.preset], vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096, initializer_range=0.2,
                    tie_word_embeddings=False, bos_token_id=None, eos_token_id=ids("<|im_end|>"), pad_token_id=tok.pad_token_id)
        if text["model_type"] == "qwen3":
            text["head_dim"] = 32  # Qwen3 sets head_dim apart from hidden_size / heads (128 at 4096 / 32 in the 8B)
        return InternVLConfig(
            vision_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=[56, 56], patch_size=[14, 14]),
            text_config=text, image_token_id=ids("<IMG_CONTEXT>"), image_seq_length=4, downsample_ratio=0.5, tie_word_embeddings=False,
        )

    def processor_files(self, config) -> dict[str, dict]:
        size = config.vision_config.image_size if config is not None else 448
        tile = size[0] if isinstance(size, (list, tuple)) else size
        common = {
            "processor_class": "InternVLProcessor", "size": {"height": tile, "width": tile},
            "image_mean": list(IMAGENET_MEAN), "image_std": list(IMAGENET_STD), "resample": 3,
            "do_resize": True, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True, "do_convert_rgb": True,
        }
        return {
            "preprocessor_config.json": {**common, "image_processor_type": "GotOcr2ImageProcessor", "crop_to_patches": False,
                                         "min_patches": 1, "max_patches": 12},
            "video_preprocessor_config.json": {**common, "video_processor_type": "InternVLVideoProcessor", "do_sample_frames": False},
            "processor_config.json": {"processor_class": "InternVLProcessor",
                                      "image_seq_length": config.image_seq_length if config is not None else 256},
        }

    # -- visual tensors ---------------------------------------------------------------------
    def _preprocessor_config(self, name: str) -> dict:
        file = Path(self.model_dir()) / name
        return json.loads(file.read_text()) if file.is_file() else {}

    def _norm(self):
        """Mean/std for video frames: the checkpoint's video (else image) preprocessor config, ImageNet's when absent."""
        for name in ("video_preprocessor_config.json", "preprocessor_config.json"):
            cfg = self._preprocessor_config(name)
            if "image_mean" in cfg:
                return tuple(cfg["image_mean"]), tuple(cfg["image_std"])
        return IMAGENET_MEAN, IMAGENET_STD

    def _tile_size(self) -> int:
        size = self.model.config.vision_config.image_size
        return size[0] if isinstance(size, (list, tuple)) else size

    def image_processor(self):
        """The image processor, from the checkpoint's ``preprocessor_config.json`` (InternVL's
        defaults when absent: the tower's tile size, ImageNet mean/std, bicubic, 1..12 tiles)."""
        folder = self.model_dir()
        if getattr(self, "_images_for", None) != folder:
            cfg = self._preprocessor_config("preprocessor_config.json")
            size = self._tile_size()
            defaults = {"size": {"height": size, "width": size}, "image_mean": list(IMAGENET_MEAN), "image_std": list(IMAGENET_STD),
                        "min_patches": 1, "max_patches": 12}
            keep = ("size", "image_mean", "image_std", "min_patches", "max_patches", "resample", "do_rescale", "rescale_factor",
                    "do_normalize", "do_convert_rgb")
            self._images = tiled_image_processor_class()(**{**defaults, **{k: v for k, v in cfg.items() if k in keep}})
            self._images_for = folder
        return self._images

    def _image_tiles(self, image) -> torch.Tensor:
        """One image -> its tiles ``(n, 3, size, size)`` (the thumbnail last when n > 1)."""
        proc, opts = self.image_processor(), self.options
        low = opts.min_image_tiles or proc.min_patches
        high = opts.max_image_tiles or proc.max_patches
        if low > high:
            raise ModelError(f"{self.family}: min_image_tiles {low} > max_image_tiles {high}")
        # crop_to_patches as the option says: InternVLProcessor passes True whatever the checkpoint's config holds.
        out = proc(images=[image_uint8(image, self.family)], crop_to_patches=opts.image_tiling, min_patches=low, max_patches=high, return_tensors="pt")
        return out["pixel_values"]

    def visual_inputs(self, item, fps=None, max_frames=None, max_pixels=None, min_pixels=None, total_pixels=None) -> dict[str, Any]:
        # Pixel bounds do not apply: every frame (and tile) is the tower's square tile size.
        seq = self.model.config.image_seq_length
        if item["type"] == "image":
            pixels = self._image_tiles(item["image"])
            tiles = len(pixels)
            return {"kind": "image", "pixels": pixels, "tiles": tiles, "tokens": seq * tiles, "per_frame": seq}
        frames, _ = item_frames(item, fps or self.options.fps, max_frames or self.options.max_frames)
        size = self._tile_size()
        mean, std = self._norm()
        pixels = resize_uint8(frames, size, size) / 255.0
        pixels = (pixels - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
        return {"kind": "video", "pixels": pixels, "frames": len(frames), "tokens": seq * len(frames), "per_frame": seq}

    def expand_placeholder(self, placeholder: str, visual: dict[str, Any]) -> str:
        if placeholder == "<video>" and visual["kind"] == "video":
            block = "<img>" + "<IMG_CONTEXT>" * visual["per_frame"] + "</img>"
            return "\n".join(f"Frame{i + 1}: {block}" for i in range(visual["frames"]))
        if placeholder == "<IMG_CONTEXT>" and visual["kind"] == "image":
            # All tiles (and the thumbnail) of one image in one <img>...</img> span.
            return "<img>" + "<IMG_CONTEXT>" * visual["tokens"] + "</img>"
        raise ModelError(f"{self.family}: visual items out of order with the template's placeholders")

    def visual_batch(self, visuals: list[dict]) -> dict[str, Any]:
        # Videos and images share ``pixel_values``, in text order (as the HF processor merges them).
        return {"pixel_values": torch.cat([v["pixels"] for v in visuals])} if visuals else {}

    # -- training ---------------------------------------------------------------------------
    def shares_vision(self, visuals: list[dict]) -> bool:
        # Images and video frames share pixel_values and the tower: one pass covers them all.
        return bool(visuals)

    def collate_preference(self, encoded):
        batch = super().collate_preference(encoded)
        # Rows of pixel_values per pair (frames, or tiles), to split the tower's output per video.
        batch["pixel_rows"] = torch.tensor([sum(len(v["pixels"]) for v in e["visuals"]) for e in encoded])
        return batch

    def select_videos(self, shared, indices):
        ends = shared["pixel_rows"].cumsum(0).tolist()
        starts = [0] + ends[:-1]
        return {
            "pixel_values": torch.cat([shared["pixel_values"][starts[i] : ends[i]] for i in indices]),
            "pixel_rows": shared["pixel_rows"][list(indices)],
        }

    def vision_features(self, model, shared):
        inner = self.inner_model(model)
        cfg = inner.config
        out = inner.get_image_features(
            shared["pixel_values"], vision_feature_layer=cfg.vision_feature_layer,
            vision_feature_select_strategy=cfg.vision_feature_select_strategy, return_dict=True,
        )
        rows = shared["pixel_rows"].tolist() if "pixel_rows" in shared else [len(out.pooler_output)]
        return tuple(out.pooler_output.split(rows))  # one (frames, tokens, hidden) tensor per video

    def model_inputs(self, shared, *, vision_features=None, repeat=1):
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        if vision_features is None:
            return {"pixel_values": shared["pixel_values"].repeat(repeat, 1, 1, 1)}
        # transformers' precomputed-encoder path: scattered into the <IMG_CONTEXT> positions.
        features = torch.cat(tuple(vision_features)).repeat(repeat, 1, 1)
        return {"mm_encoder_outputs": {"image": BaseModelOutputWithPooling(pooler_output=features)}}

    # -- surgery ----------------------------------------------------------------------------
    def projector_module_name(self) -> str:
        return "multi_modal_projector"

    def vision_module_names(self, model) -> list[str]:
        return [name for name, _ in model.named_modules() if name.split(".")[-1] in ("vision_tower", "multi_modal_projector")
                and name.count("vision_tower") + name.count("multi_modal_projector") == 1]


class InternVL25Backend(InternVLBackend):
    """``internvl2_5``: the name this backend had before InternVL3/3.5 (the same backend)."""

    family = "internvl2_5"


@hookimpl
def register_backends(register):
    register("internvl", InternVLBackend)
    register("internvl2_5", InternVL25Backend)
