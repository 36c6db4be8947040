"""OpenCLIP image embeddings (optional extra: ``pip install -e '.[openclip]'`` in the checkout)."""

from __future__ import annotations

import importlib.util

import attrs
import numpy as np

from temple_core.contracts import SimilarityEncoder
from temple_core.errors import TempleError
from temple_core.hookspecs import hookimpl


class OpenClipEncoder(SimilarityEncoder):
    """OpenCLIP image embeddings (needs the optional open_clip_torch package)."""

    @attrs.define(kw_only=True)
    class Options:
        #: OpenCLIP architecture name.
        model: str = "ViT-B-32"
        # A local weights file or an open_clip pretrained tag already in its cache.
        pretrained: str | None = None
        #: Torch device.
        device: str = "cpu"
        #: Frames per forward pass.
        batch: int = attrs.field(default=16, validator=attrs.validators.ge(1))

    def __init__(self, options: OpenClipEncoder.Options | None = None):
        self.options = options or self.Options()
        if importlib.util.find_spec("open_clip") is None:
            raise TempleError(
                "similarity encoder 'openclip' needs the optional package open_clip_torch: "
                "pip install -e '.[openclip]' in the checkout (or pip install open_clip_torch)"
            )
        self._model = None

    def _load(self):
        import open_clip

        o = self.options
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(o.model, pretrained=o.pretrained, device=o.device)
        except Exception as exc:  # open_clip raises RuntimeError / HF errors for unknown names
            raise TempleError(f"openclip: cannot load model {o.model!r} (pretrained={o.pretrained!r}): {exc}") from exc
        self._model, self._preprocess = model.eval(), preprocess

    def encode(self, frames: list[np.ndarray]) -> np.ndarray:
        import torch
        from PIL import Image

        if self._model is None:
            self._load()
        out = []
        for start in range(0, len(frames), self.options.batch):
            images = [self._preprocess(Image.fromarray(f)) for f in frames[start : start + self.options.batch]]
            with torch.no_grad():
                feats = self._model.encode_image(torch.stack(images).to(self.options.device)).float()
            out.append(torch.nn.functional.normalize(feats, dim=-1).cpu().numpy())
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, 0), np.float32)


@hookimpl
def register_similarity_encoders(register):
    register("openclip", OpenClipEncoder)
