"""An opened video: metadata, one streaming pass at any size, frames by index.

Nothing here holds a whole video at full resolution: ``iter_frames`` streams, and
``read_frames`` / ``iter_range`` *seek* to the nearest keyframe before what they need, so
their cost depends on what is asked for, not on where in the video it lies.

Frame indices are positions in decode order of the first video stream (0-based). When
seeking, a decoded frame's index is recovered from its timestamp
(``round((pts - start) * time_base * fps)``); files whose timestamps do not allow that
(no pts, variable frame rate that disagrees with the count) fall back to counting frames
from the start, which is always right, only slower.
"""

from __future__ import annotations

import errno
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import av
import numpy as np

from temple_core.errors import VideoError
from temple_core.video import worker as decode_worker
from temple_core.video.decoding import Converter, GrayRanges, decode_frames, open_video

# Decoding forward is cheaper than a seek (which restarts at a keyframe) for short gaps.
_SEEK_GAP_FRAMES = 48


def not_a_file(path: Path) -> str:
    """Why ``path`` is not a readable regular file, in words (for its error record)."""
    if path.is_symlink():
        try:
            os.stat(path)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return "a symbolic link loop, not a video file"
            return f"a symbolic link to a missing file ({os.readlink(path)})"
    if path.is_dir():
        return "a directory, not a video file"
    if os.path.lexists(path):
        return "not a regular file (a FIFO, socket or device), not read"
    return "no such file"


class VideoSource:
    """An opened video file: ``fps``, ``num_frames``, ``duration``, ``width``, ``height``.

    Set ``record_gray_range = True`` before a streaming pass (:meth:`iter_frames`) to also
    get, per frame, the min and max grayscale level over all its pixels at full resolution
    (``gray_range``: ``uint8`` array ``(num_frames, 2)``), measured as ``gray_rule`` says
    (:class:`temple_core.video.decoding.GrayRanges`: ``rgb``, the release's, or ``luma``) --
    selection's monochrome filter needs them, and computing them during the detector's pass
    saves a second decode.

    With ``decode_worker=True`` a streaming pass decodes in a separate, persistent worker
    process (:mod:`temple_core.video.worker`) while the caller works on the frames it has
    (on 2+ CPUs; otherwise, or while that worker is busy with another pass, in-process). The
    frames, ranges, counts and errors are the same as in-process; a worker that dies or stalls
    is a :class:`VideoError` for this video. Seeking reads are always in-process.
    """

    def __init__(self, path: str | Path, decode_worker: bool = False):
        self.path = Path(path)
        self.decode_worker = decode_worker
        if not self.path.is_file():
            raise VideoError(f"{self.path}: {not_a_file(self.path)}")
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
                if not self.width or not self.height:
                    raise VideoError(f"{self.path}: video stream has no frame size")
                self._stream_frames = int(stream.frames or 0)
                self._time_base = stream.time_base
                self._start_pts = int(stream.start_time or 0)
        except VideoError:
            raise
        except Exception as exc:  # PyAV raises many kinds (InvalidDataError, ...)
            raise VideoError(f"{self.path}: cannot open as video ({exc})") from exc
        self._num_frames: int | None = None
        self._seekable = self._time_base is not None
        self.record_gray_range = False
        self.gray_rule = "rgb"
        self.gray_range: np.ndarray | None = None

    def __repr__(self) -> str:
        return f"VideoSource({str(self.path)!r}, fps={self.fps:.3f}, {self.width}x{self.height})"

    @property
    def num_frames(self) -> int:
        """Frames that actually decode. The header's count is used until a full pass has
        counted them (a pass always wins: headers of truncated files overstate)."""
        if self._num_frames is None:
            if self._stream_frames > 0:
                return self._stream_frames
            self._num_frames = sum(1 for _ in self._decode())
        return self._num_frames

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps

    # -- decoding ------------------------------------------------------------------------
    def _open(self):
        return open_video(self.path)

    def _decode(self) -> Iterator[av.VideoFrame]:
        return decode_frames(self.path)

    def iter_frames(
        self, width: int | None = None, height: int | None = None, format: str = "rgb24"
    ) -> Iterator[np.ndarray]:
        """Every frame in order, as RGB ``uint8`` ``(H, W, 3)`` (or another PyAV ``format``,
        e.g. ``bgr24``), resized when asked.

        A pass that runs to the end fixes ``num_frames`` to the frames that decoded (and
        ``gray_range`` when ``record_gray_range`` is set).
        """
        ranges: list[tuple[int, int]] | None = [] if self.record_gray_range else None
        count = 0
        chunks = self._worker_pass(width, height, format, self.gray_rule if ranges is not None else None)
        if chunks is not None:
            for frames, gray in chunks:
                if ranges is not None:
                    ranges.extend(gray)
                yield from frames
                count += len(frames)
        else:
            gray = GrayRanges(self.gray_rule, width, height, format) if ranges is not None else None
            convert = Converter(width, height, format)
            for frame in self._decode():
                array = convert(frame)
                if gray is not None:
                    ranges.append(gray(frame, array))
                yield array
                count += 1
        if count == 0:
            raise VideoError(f"{self.path}: no frame decodes")
        # A file cut short but with its index intact (``faststart`` MP4) decodes without an
        # error, just fewer frames than its header lists: that is a truncated file.
        if self._stream_frames > 0 and count < self._stream_frames - max(2, self._stream_frames // 100):
            raise VideoError(
                f"{self.path}: truncated: the header lists {self._stream_frames} frames, only {count} decode"
            )
        self._num_frames = count
        if ranges is not None:
            self.gray_range = np.asarray(ranges, dtype=np.uint8).reshape(-1, 2)

    def _worker_pass(self, width: int | None, height: int | None, format: str, gray: str | None):
        """The pass's ``(frames, gray ranges)`` chunks from the decode worker, or ``None`` to
        decode in-process (worker off or busy, one CPU, a format the ring does not carry)."""
        if not self.decode_worker or format not in decode_worker.PIPE_FORMATS or not decode_worker.usable():
            return None
        shape = (height or self.height, width or self.width, decode_worker.PIPE_FORMATS[format])
        return decode_worker.get_worker().try_pass(self.path, width, height, format, shape, gray)

    def _index_of(self, frame: av.VideoFrame) -> int | None:
        if frame.pts is None or frame.time_base is None:
            return None
        return int(round(float((frame.pts - self._start_pts) * frame.time_base) * self.fps))

    def _seek_to(self, container, stream, index: int) -> None:
        seconds = index / self.fps
        target = int(seconds / float(self._time_base)) + self._start_pts
        container.seek(target, stream=stream, backward=True, any_frame=False)

    def _iter_indexed(self, first: int) -> Iterator[tuple[int, av.VideoFrame]]:
        """(index, frame) from a keyframe at or before ``first`` onwards, by seeking; falls
        back to a counted decode from the start when timestamps cannot be trusted."""
        if self._seekable and first > _SEEK_GAP_FRAMES:
            container, stream = self._open()
            try:
                with container:
                    # Seek a little early: some demuxers land on the keyframe *after* the target.
                    self._seek_to(container, stream, max(0, first - 1))
                    previous = None
                    trusted = True
                    for frame in container.decode(stream):
                        index = self._index_of(frame)
                        if index is None or (previous is None and index > first) or (
                            previous is not None and index != previous + 1
                        ):
                            trusted = False
                            break
                        previous = index
                        yield index, frame
                    if trusted:
                        return
            except av.error.FFmpegError as exc:
                raise VideoError(f"{self.path}: decoding failed ({exc})") from exc
            # Timestamps did not give consecutive indices: count from the start instead.
            self._seekable = False
            for index, frame in enumerate(self._decode()):
                if previous is None or index > previous:
                    yield index, frame
            return
        yield from enumerate(self._decode())

    def iter_range(
        self, start: int, end: int, width: int | None = None, height: int | None = None, format: str = "rgb24"
    ) -> Iterator[tuple[int, np.ndarray]]:
        """``(index, frame)`` for every frame in ``[start, end]`` (inclusive), by seeking."""
        if start < 0 or end < start:
            raise VideoError(f"{self.path}: bad frame range [{start}, {end}]")
        last = -1
        convert = Converter(width, height, format)
        for index, frame in self._iter_indexed(start):
            if index > end:
                break
            last = index
            if index >= start:
                yield index, convert(frame)
        if last < end:
            raise VideoError(f"{self.path}: frame {max(last + 1, start)} is past the end of the video")

    def read_frames(
        self, indices: Sequence[int], width: int | None = None, height: int | None = None
    ) -> list[np.ndarray]:
        """The frames at ``indices`` (any order, repeats allowed), RGB ``uint8``.

        Seeks to each run of nearby indices, so the cost does not grow with the video's length.
        """
        wanted = sorted(set(int(i) for i in indices))
        if not wanted:
            return []
        if wanted[0] < 0:
            raise VideoError(f"{self.path}: negative frame index {wanted[0]}")
        found: dict[int, np.ndarray] = {}
        # Runs of indices close enough to decode through rather than seek between.
        runs: list[list[int]] = [[wanted[0]]]
        for i in wanted[1:]:
            if i - runs[-1][-1] <= _SEEK_GAP_FRAMES:
                runs[-1].append(i)
            else:
                runs.append([i])
        convert = Converter(width, height, "rgb24")
        for run in runs:
            want = set(run)
            last_seen = -1
            for index, frame in self._iter_indexed(run[0]):
                last_seen = index
                if index in want:
                    found[index] = convert(frame)
                if index >= run[-1]:
                    break
            missing = [i for i in run if i not in found]
            if missing:
                raise VideoError(
                    f"{self.path}: frame {missing[0]} is past the end of the video "
                    f"(last decodable frame {last_seen})"
                )
        return [found[int(i)] for i in indices]


def frame_range(num_frames: int, native_fps: float, start: float | None = None, end: float | None = None) -> tuple[int, int]:
    """The frames ``[first, stop)`` of ``[start, end)`` seconds (the whole video when both are None)."""
    first = 0 if start is None else max(0, int(math.floor(start * native_fps)))
    stop = num_frames if end is None else min(num_frames, int(math.ceil(end * native_fps)))
    if stop <= first:
        raise VideoError(f"empty time range [{start}, {end}) for a video of {num_frames} frames")
    return first, stop


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
    first, stop = frame_range(num_frames, native_fps, start, end)
    seconds = (stop - first) / native_fps
    count = max(1, int(round(seconds * fps)))
    if max_frames is not None:
        count = min(count, max_frames)
    positions = np.linspace(first, stop - 1, count)
    return [int(round(p)) for p in positions]
