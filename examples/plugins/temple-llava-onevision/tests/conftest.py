"""The package's tests: tiny videos, the preset cached per session, one torch thread."""

import os
from fractions import Fraction

import av
import numpy as np
import pytest
import torch

torch.set_num_threads(1)
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def write_video(path, colours, fps=4, width=64, height=48):
    """A small H.264 video: one second per colour, a white bar moving across."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for k, colour in enumerate(colours):
            for i in range(fps):
                image = np.empty((height, width, 3), np.uint8)
                image[:] = colour
                x = (i * 9 + k * 5) % (width - 8)
                image[:, x : x + 8] = 255
                for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                    container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


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
