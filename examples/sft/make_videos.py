"""Write the tiny videos that ``sample.jsonl`` refers to (64x48, 4 s at 2 fps, H.264).

They are committed (a few KB each); this script says how they were made and rewrites them:
    python examples/sft/make_videos.py
Each video is a sequence of flat-coloured "scenes" with a moving bar, so that the order of
events is visible and a caption like "first red, then blue" is true of it.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

HERE = Path(__file__).parent
W, H, FPS, SECONDS = 64, 48, 2, 4

COLOURS = {"red": (200, 40, 40), "green": (40, 170, 60), "blue": (40, 70, 200), "yellow": (220, 200, 40)}
VIDEOS = {
    "red_then_blue": ["red", "red", "blue", "blue"],
    "green_then_yellow": ["green", "yellow", "yellow", "yellow"],
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
                image[:, x : x + 8] = 255  # a white bar that moves right
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
