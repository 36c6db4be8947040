"""Write the tiny videos that ``sample_mc.jsonl`` asks about (64x48, 4 s at 2 fps, H.264).

Committed (a few KB each); this script says how they were made and rewrites them:
    python examples/eval/make_videos.py
Two colours in sequence with a moving white bar, in both orders (a Vinoground-style pair: the
same two captions, the videos differ only in order). None of them is a training video of the
quickstart (examples/sft/videos/ are).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

HERE = Path(__file__).parent
W, H, FPS, SECONDS = 64, 48, 2, 4

COLOURS = {"purple": (150, 50, 190), "cyan": (30, 200, 210), "orange": (240, 140, 20), "green": (40, 170, 60)}
VIDEOS = {
    "purple_then_cyan": ["purple", "cyan"],
    "cyan_then_purple": ["cyan", "purple"],
    "orange_then_green": ["orange", "green"],
    "green_then_orange": ["green", "orange"],
}


def write(path: Path, scenes: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frames_per_scene = FPS * SECONDS // len(scenes)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(FPS))
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.options = {"crf": "30", "preset": "veryslow"}
        index = 0
        for scene in scenes:
            for _ in range(frames_per_scene):
                image = np.empty((H, W, 3), np.uint8)
                image[:] = COLOURS[scene]
                x = (index * 7) % (W - 8)
                image[:, x : x + 8] = 255
                for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                    container.mux(packet)
                index += 1
        for packet in stream.encode():
            container.mux(packet)


def main() -> None:
    for name, scenes in VIDEOS.items():
        write(HERE / "videos" / f"{name}.mp4", scenes)


if __name__ == "__main__":
    main()
