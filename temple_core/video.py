"""Video decoding with PyAV: metadata, one streaming pass at any size, frames by index.

Nothing here holds a whole video at full resolution: ``iter_frames`` streams, and
``read_frames`` keeps only the frames asked for.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import av
import numpy as np

from temple_core.errors import VideoError


class VideoSource:
    """An opened video file: ``fps``, ``num_frames``, ``duration``, ``width``, ``height``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise VideoError(f"{self.path}: no such file")
        if self.path.stat().st_size == 0:
            raise VideoError(f"{self.path}: empty file (0 bytes)")
        try:
            with av.open(str(self.path)) as container:
                if not container.streams.video:
                    raise VideoError(f"{self.path}: no video stream")
                stream = container.streams.video[0]
                rate = stream.average_rate or stream.guessed_rate
                if not rate:
                    raise VideoError(f"{self.path}: video stream has no frame rate")
                self.fps = float(rate)
                self.width = stream.codec_context.width
                self.height = stream.codec_context.height
                self._stream_frames = int(stream.frames or 0)
        except VideoError:
            raise
        except Exception as exc:  # PyAV raises many kinds (InvalidDataError, ...)
            raise VideoError(f"{self.path}: cannot open as video ({exc})") from exc
        self._num_frames: int | None = None

    @property
    def num_frames(self) -> int:
        """Frames that actually decode (counted once, by a decode pass, when the header lacks it)."""
        if self._num_frames is None:
            if self._stream_frames > 0:
                self._num_frames = self._stream_frames
            else:
                self._num_frames = sum(1 for _ in self._decode())
        return self._num_frames

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps

    def _decode(self) -> Iterator[av.VideoFrame]:
        try:
            with av.open(str(self.path)) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                yield from container.decode(stream)
        except av.error.FFmpegError as exc:
            raise VideoError(f"{self.path}: decoding failed ({exc})") from exc

    def iter_frames(self, width: int | None = None, height: int | None = None) -> Iterator[np.ndarray]:
        """Every frame in order, as RGB ``uint8`` ``(H, W, 3)``, resized when asked."""
        for frame in self._decode():
            yield frame.to_ndarray(format="rgb24", width=width, height=height)

    def read_frames(
        self, indices: Sequence[int], width: int | None = None, height: int | None = None
    ) -> list[np.ndarray]:
        """The frames at ``indices`` (any order, repeats allowed), RGB ``uint8``."""
        wanted = sorted(set(int(i) for i in indices))
        if not wanted:
            return []
        if wanted[0] < 0:
            raise VideoError(f"{self.path}: negative frame index {wanted[0]}")
        found: dict[int, np.ndarray] = {}
        last = wanted[-1]
        want = set(wanted)
        for index, frame in enumerate(self._decode()):
            if index in want:
                found[index] = frame.to_ndarray(format="rgb24", width=width, height=height)
            if index >= last:
                break
        missing = [i for i in wanted if i not in found]
        if missing:
            raise VideoError(f"{self.path}: frame {missing[0]} is past the end of the video")
        return [found[int(i)] for i in indices]


def sample_indices(
    num_frames: int,
    native_fps: float,
    fps: float,
    start: float | None = None,
    end: float | None = None,
    max_frames: int | None = None,
) -> list[int]:
    """Frame indices that sample ``[start, end)`` seconds at ``fps`` (at most ``max_frames``,
    spread evenly over the range when there would be more)."""
    first = 0 if start is None else max(0, int(math.floor(start * native_fps)))
    stop = num_frames if end is None else min(num_frames, int(math.ceil(end * native_fps)))
    if stop <= first:
        raise VideoError(f"empty time range [{start}, {end}) for a video of {num_frames} frames")
    seconds = (stop - first) / native_fps
    count = max(1, int(round(seconds * fps)))
    if max_frames is not None:
        count = min(count, max_frames)
    positions = np.linspace(first, stop - 1, count)
    return [int(round(p)) for p in positions]
