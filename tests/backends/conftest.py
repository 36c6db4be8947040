"""Backend tests: tiny videos of several sizes, the presets cached per test session."""

import os
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
# Small models on a 2-core machine: one intra-op thread avoids threads spinning against each other.
torch.set_num_threads(1)


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


@pytest.fixture(scope="session")
def videos(tmp_path_factory):
    """Three videos of different sizes and lengths (even sizes: H.264 4:2:0)."""
    folder = tmp_path_factory.mktemp("videos")
    return [
        write_video(folder / "a.mp4", 64, 48, 12, seed=1),  # 3 s
        write_video(folder / "b.mp4", 80, 40, 9, seed=2),  # 2.25 s: odd frame counts after sampling
        write_video(folder / "c.mp4", 48, 64, 20, seed=3),  # portrait, 5 s
    ]


@pytest.fixture(scope="session", autouse=True)
def preset_cache(tmp_path_factory):
    """Presets built once per session into a fresh cache (exercises the build path)."""
    if not os.environ.get("TEMPLE_CACHE"):
        os.environ["TEMPLE_CACHE"] = str(tmp_path_factory.mktemp("temple-cache"))
    yield
