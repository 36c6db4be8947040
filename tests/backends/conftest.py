"""Backend tests: tiny videos of several sizes, the presets cached per test session."""

import os

import pytest
import torch

from testkit.backends import write_video

# Small models on a 2-core machine: one intra-op thread avoids threads spinning against each other.
torch.set_num_threads(1)


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
