"""Colour-histogram frame embeddings: no weights, fast on CPU (the default encoder).

A frame becomes its joint HSV histogram (``bins`` = hue x saturation x value bins), square
rooted and L2-normalised: the cosine similarity of two frames is then the Bhattacharyya
coefficient of their colour distributions (1 = same colours, 0 = disjoint).
"""

from __future__ import annotations

import attrs
import cv2
import numpy as np

from temple_core.contracts import SimilarityEncoder
from temple_core.hookspecs import hookimpl


class ColorHistEncoder(SimilarityEncoder):
    """HSV colour histogram embeddings (no weights; the CPU default)."""

    @attrs.define(kw_only=True)
    class Options:
        #: Histogram bins for hue.
        hue_bins: int = attrs.field(default=12, validator=[attrs.validators.ge(1), attrs.validators.le(180)])
        #: Histogram bins for saturation.
        saturation_bins: int = attrs.field(default=4, validator=[attrs.validators.ge(1), attrs.validators.le(256)])
        #: Histogram bins for value (brightness).
        value_bins: int = attrs.field(default=4, validator=[attrs.validators.ge(1), attrs.validators.le(256)])
        # Frames are shrunk to at most this width first: histograms barely change, time does.
        max_width: int = attrs.field(default=160, validator=attrs.validators.ge(8))

    def __init__(self, options: ColorHistEncoder.Options | None = None):
        self.options = options or self.Options()

    def embed_one(self, frame: np.ndarray) -> np.ndarray:
        o = self.options
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"colorhist: expected an RGB frame (H, W, 3), got shape {frame.shape}")
        h, w = frame.shape[:2]
        if w > o.max_width:
            frame = cv2.resize(frame, (o.max_width, max(1, round(h * o.max_width / w))), interpolation=cv2.INTER_AREA)
        hsv = cv2.cvtColor(np.ascontiguousarray(frame, dtype=np.uint8), cv2.COLOR_RGB2HSV)
        hist = cv2.calcHist([hsv], [0, 1, 2], None, [o.hue_bins, o.saturation_bins, o.value_bins], [0, 180, 0, 256, 0, 256])
        vec = np.sqrt(hist.reshape(-1).astype(np.float64))
        norm = np.linalg.norm(vec)
        return (vec / norm).astype(np.float32) if norm > 0 else vec.astype(np.float32)

    def encode(self, frames: list[np.ndarray]) -> np.ndarray:
        size = self.options.hue_bins * self.options.saturation_bins * self.options.value_bins
        if not frames:
            return np.zeros((0, size), np.float32)
        return np.stack([self.embed_one(f) for f in frames])


@hookimpl
def register_similarity_encoders(register):
    register("colorhist", ColorHistEncoder)
