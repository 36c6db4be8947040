"""The package's tests: tiny videos, the preset cached per session, one torch thread."""

import os

import pytest
import torch
from llava_videos import write_video

torch.set_num_threads(1)
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session", autouse=True)
def preset_cache(tmp_path_factory):
    if not os.environ.get("TEMPLE_CACHE"):
        os.environ["TEMPLE_CACHE"] = str(tmp_path_factory.mktemp("temple-cache"))


@pytest.fixture(scope="session")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    return [write_video(folder / "a.mp4", [(200, 40, 40), (40, 70, 200), (40, 170, 60)]),
            write_video(folder / "b.mp4", [(220, 200, 40), (160, 60, 200)], width=80, height=40),
            write_video(folder / "c.mp4", [(30, 200, 200)] * 5, width=48, height=64)]
