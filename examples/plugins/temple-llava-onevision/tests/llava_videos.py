"""Tiny videos for the package's tests (a module of its own: tests import it by name, never
from ``conftest``, which another project's conftest can shadow when suites run together)."""

from fractions import Fraction

import av
import numpy as np


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
