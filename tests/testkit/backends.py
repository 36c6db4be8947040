"""Helpers for the backend tests: small random videos, and the inputs of the committed
transformers-processor reference (``tests/backends/data/processor_reference.npz``)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def write_video(path: Path, width: int, height: int, frames: int, fps: int = 4, seed: int = 0) -> Path:
    """A small H.264 video of random-coloured frames with a moving bar."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            image = np.empty((height, width, 3), np.uint8)
            image[:] = rng.integers(0, 256, 3)
            x = (i * 7) % max(1, width - 8)
            image[:, x : x + 8] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


#: (seed, frames, height, width, max_pixels): upsampling, odd sizes under a max_pixels cap,
#: downsampling, and a single frame.
CASES = [(0, 3, 37, 101, 4000), (1, 5, 48, 64, 3136), (2, 2, 90, 160, 6000), (3, 1, 23, 17, 784)]


def case_input(seed: int, frames: int, height: int, width: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (frames, height, width, 3), dtype=np.uint8)
