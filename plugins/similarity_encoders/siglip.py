"""SigLIP image-tower embeddings (transformers' ``SiglipVisionModel``) from a local checkpoint.

The paper uses ``google/siglip-so400m-patch14-384``; point ``path`` at a downloaded copy
(the full SigLIP checkpoint or a vision-only one). ``preset: tiny-random`` builds a tiny
randomly initialised tower (seeded, no download) for tests and demos.

Preprocessing uses transformers' PIL image processor (``SiglipImageProcessorPil``), because
the default one needs torchvision, which this project does not install.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import attrs
import numpy as np

from temple_core.config import path_field
from temple_core.contracts import SimilarityEncoder
from temple_core.errors import ModelError
from temple_core.hookspecs import hookimpl

TINY = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8)


class SiglipEncoder(SimilarityEncoder):
    """SigLIP image embeddings (transformers) from a local checkpoint directory."""

    @attrs.define(kw_only=True)
    class Options:
        #: A local SigLIP checkpoint directory (e.g. siglip-so400m-patch14-384).
        path: str | None = path_field(None, kind="dir")
        #: ``tiny-random``: a small random-weight SigLIP, for tests.
        preset: Literal["tiny-random"] | None = attrs.field(
            default=None, validator=attrs.validators.optional(attrs.validators.in_(["tiny-random"]))
        )
        #: Torch device.
        device: str = "cpu"
        #: Frames per forward pass.
        batch: int = attrs.field(default=16, validator=attrs.validators.ge(1))

        def __attrs_post_init__(self):
            if (self.path is None) == (self.preset is None):
                raise ValueError("siglip: give exactly one of `path` (a local checkpoint directory) or `preset: tiny-random`")

    def __init__(self, options: SiglipEncoder.Options | None = None):
        self.options = options or self.Options(preset="tiny-random")
        self._model = None
        self._processor = None

    def _load(self):
        import torch
        from transformers import SiglipVisionConfig, SiglipVisionModel
        from transformers.models.siglip import SiglipImageProcessorPil

        o = self.options
        if o.preset == "tiny-random":
            config = SiglipVisionConfig(**TINY)
            # Seeded without touching the process's global RNG state.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                model = SiglipVisionModel(config)
            processor = SiglipImageProcessorPil(size={"height": config.image_size, "width": config.image_size})
        else:
            directory = Path(o.path).expanduser()
            if not directory.is_dir():
                raise ModelError(f"siglip: checkpoint directory not found: {directory}")
            if not (directory / "config.json").is_file():
                raise ModelError(f"siglip: {directory} has no config.json (not a transformers checkpoint)")
            try:
                model = SiglipVisionModel.from_pretrained(str(directory))
            except (OSError, ValueError, KeyError) as exc:
                raise ModelError(f"siglip: cannot load a SigLIP vision model from {directory} ({exc})") from exc
            if (directory / "preprocessor_config.json").is_file():
                processor = SiglipImageProcessorPil.from_pretrained(str(directory))
            else:
                size = model.config.image_size
                processor = SiglipImageProcessorPil(size={"height": size, "width": size})
        self._model = model.to(o.device).eval()
        self._processor = processor

    def encode(self, frames: list[np.ndarray]) -> np.ndarray:
        import torch

        if self._model is None:
            self._load()
        out = []
        for start in range(0, len(frames), self.options.batch):
            chunk = [np.ascontiguousarray(f, dtype=np.uint8) for f in frames[start : start + self.options.batch]]
            pixels = self._processor(images=chunk, return_tensors="pt")["pixel_values"].to(self.options.device)
            with torch.no_grad():
                pooled = self._model(pixel_values=pixels).pooler_output.float()
            out.append(torch.nn.functional.normalize(pooled, dim=-1).cpu().numpy())
        if not out:
            return np.zeros((0, self._model.config.hidden_size), np.float32)
        return np.concatenate(out).astype(np.float32)


@hookimpl
def register_similarity_encoders(register):
    register("siglip", SiglipEncoder)
