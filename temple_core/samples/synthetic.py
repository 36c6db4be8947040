"""Synthetic videos with known cuts, encoded with PyAV (H.264, small): for tests, benchmarks and
the `synthetic` sample set of the quickstart.

A video is a list of *shots*; each shot is a scene (a seeded colour texture that pans, so
that it moves) shown for a number of frames. Scenes with the same ``scene`` id look the
same (an interview's alternating speakers); different ids are visually distinct (different
hue, different texture). Helpers build the special shots the selection rules care about:
a black flash, a static shot, a fade between two scenes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import attrs
import av
import cv2
import numpy as np

W, H = 96, 64


@attrs.define
class Shot:
    scene: int  # which look; same id = same look
    frames: int
    kind: str = "moving"  # moving | static | black | fade (fade: from `scene` to `to`)
    to: int = 0


_HUE_NAMES = ((8, "red"), (22, "orange"), (34, "yellow"), (78, "green"), (96, "cyan"), (130, "blue"), (150, "purple"),
              (170, "magenta"), (180, "red"))


def _hue(scene: int) -> float:
    # Golden-ratio hue steps keep consecutive scene ids far apart in colour.
    return (scene * 0.618033988749895) % 1.0


def scene_hue(scene: int) -> str:
    """The colour name of a scene's tint (OpenCV hue bins)."""
    hue = int(_hue(scene) * 179)
    return next(name for bound, name in _HUE_NAMES if hue < bound)


def scene_texture(scene: int, width: int, height: int) -> np.ndarray:
    """A large RGB texture unique to ``scene``: smooth noise tinted by a scene-specific hue."""
    rng = np.random.default_rng(1000 + scene)
    tw, th = width * 3, height * 3
    noise = rng.random((6, 9)).astype(np.float32)
    smooth = cv2.resize(noise, (tw, th), interpolation=cv2.INTER_CUBIC)
    detail = cv2.resize(rng.random((24, 36)).astype(np.float32), (tw, th), interpolation=cv2.INTER_LINEAR)
    value = np.clip(0.55 * smooth + 0.45 * detail, 0, 1)
    hue = _hue(scene)
    hsv = np.zeros((th, tw, 3), np.uint8)
    hsv[..., 0] = int(hue * 179)
    hsv[..., 1] = (120 + 135 * smooth).clip(0, 255).astype(np.uint8)
    hsv[..., 2] = (40 + 215 * value).clip(0, 255).astype(np.uint8)
    rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    # A few bright shapes, placed per scene, so the structure differs as well as the colour.
    for _ in range(5):
        centre = (int(rng.integers(0, tw)), int(rng.integers(0, th)))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        cv2.circle(rgb, centre, int(rng.integers(height // 6, height // 2)), colour, -1)
    return rgb


def scene_frame(texture: np.ndarray, scene: int, t: int, width: int, height: int, moving: bool) -> np.ndarray:
    if not moving:
        t = 0
    # Each scene pans in its own direction at ~1 pixel per frame.
    dx = int((t * (1 + scene % 3)) % (texture.shape[1] - width))
    dy = int((t * (1 + scene % 2) // 2) % (texture.shape[0] - height))
    return texture[dy : dy + height, dx : dx + width]


def frames_of(shots: list[Shot], width: int = W, height: int = H) -> Iterator[np.ndarray]:
    textures: dict[int, np.ndarray] = {}

    def tex(scene: int) -> np.ndarray:
        if scene not in textures:
            textures[scene] = scene_texture(scene, width, height)
        return textures[scene]

    clock: dict[int, int] = {}  # a scene resumes where it left off (like a real camera)
    for shot in shots:
        for f in range(shot.frames):
            if shot.kind == "black":
                yield np.zeros((height, width, 3), np.uint8)
                continue
            t = clock.get(shot.scene, 0)
            clock[shot.scene] = t + 1
            frame = scene_frame(tex(shot.scene), shot.scene, t, width, height, shot.kind != "static")
            if shot.kind == "fade":
                u = clock.get(shot.to, 0)
                clock[shot.to] = u + 1
                other = scene_frame(tex(shot.to), shot.to, u, width, height, True)
                alpha = (f + 1) / (shot.frames + 1)
                frame = ((1 - alpha) * frame + alpha * other).astype(np.uint8)
            yield np.ascontiguousarray(frame)


def cut_frames(shots: list[Shot]) -> list[int]:
    """The first frame of every shot after the first (the hard cuts)."""
    cuts, position = [], 0
    for shot in shots[:-1]:
        position += shot.frames
        cuts.append(position)
    return cuts


def shot_ranges(shots: list[Shot]) -> list[list[int]]:
    out, position = [], 0
    for shot in shots:
        out.append([position, position + shot.frames - 1])
        position += shot.frames
    return out


def write_video(
    path: Path, shots: list[Shot], fps: int = 25, width: int = W, height: int = H, gop: int = 25,
    faststart: bool = False,
) -> Path:
    """Encode ``shots`` as H.264 (yuv420p, keyframe every ``gop`` frames, no B-frames)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), mode="w", options=options) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        # Near-lossless, so that detectors see what we drew; fixed GOP so seeking is exercised.
        stream.options = {"crf": "12", "g": str(gop), "bf": "0", "preset": "veryfast"}
        for array in frames_of(shots, width, height):
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_frames(path: Path, frames: Iterator[np.ndarray], fps: int, width: int, height: int) -> Path:
    """Encode arbitrary RGB frames (for benchmarks: long or large videos)."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "23", "g": str(fps * 2), "preset": "ultrafast"}
        for array in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_audio_only(path: Path, seconds: float = 1.0) -> Path:
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("aac", rate=16000)
        stream.layout = "mono"
        samples = int(16000 * seconds)
        t = np.arange(samples, dtype=np.float32) / 16000
        data = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None, :]
        for start in range(0, samples, 1024):
            frame = av.AudioFrame.from_ndarray(data[:, start : start + 1024], format="fltp", layout="mono")
            frame.sample_rate = 16000
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def interview(n_pairs: int = 3, frames: int = 30) -> list[Shot]:
    """Two scenes alternating, A B A B ... (2 * n_pairs shots)."""
    return [Shot(scene=i % 2, frames=frames) for i in range(2 * n_pairs)]
