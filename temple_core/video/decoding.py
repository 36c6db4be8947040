"""Decoding with PyAV: open a file with the decoder settings every pass uses, decode its
frames, convert them to arrays at any size, measure each frame's grayscale range.

Shared by the in-process passes of :class:`temple_core.video.source.VideoSource` and the
decode worker process (:mod:`temple_core.video.worker`), so that both give the same frames
and the same errors. Imports nothing else of ``temple_core.video`` (no cycle).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import av
import cv2
import numpy as np
from av.video.reformatter import VideoReformatter

from temple_core.errors import VideoError

# At or below this many pixels a frame is "small": swscale's threads cost more than they save.
_SMALL_PIXELS = 640 * 360

# FFmpeg's decoder threading. ``AUTO`` (frame threads) is also what gives a file whose last
# packet is cut short the same outcome as before -- fewer frames, then the truncation check;
# slice or no threading decode a 160x90 video ~15% faster but fail on that packet instead.
DECODE_THREAD_TYPE = "AUTO"


class Converter:
    """Frame -> ``numpy`` array at a size and pixel format, reusing one swscale context.

    ``VideoFrame.to_ndarray(width=..., height=...)`` builds a new scaling context for every
    frame, which costs ~10x the conversion itself on small outputs; one ``VideoReformatter``
    per pass keeps its context. Scaling is bicubic, ffmpeg's default (``-s 48x27`` in the
    TransNetV2 reference pipeline uses it).

    swscale's own slice threads (PyAV's default: one per CPU) cost ~90 us a frame in
    hand-offs, 8x the conversion of a 160x90 frame: small frames are converted on one thread.
    The output is the same bytes either way (checked on test.mp4 and a 720p video, scaled
    and not, rgb24/bgr24/gray).
    """

    def __init__(self, width: int | None, height: int | None, format: str):
        self.width, self.height, self.format = width, height, format
        self.reformatter = VideoReformatter()
        self.interpolation = "BICUBIC" if width or height else None

    def __call__(self, frame: av.VideoFrame) -> np.ndarray:
        threads = {"threads": 1 if frame.width * frame.height <= _SMALL_PIXELS else 0} if _REFORMAT_THREADS else {}
        out = self.reformatter.reformat(frame, self.width, self.height, self.format, interpolation=self.interpolation, **threads)
        return out.to_ndarray(format=self.format)


# ``reformat(threads=...)`` came with PyAV 16; older PyAV (lmms-eval's environment pins
# av<16) converts with its default threads -- the same bytes, a little slower on small frames.
_REFORMAT_THREADS = int(av.__version__.split(".")[0]) >= 16


# 8-bit planar/semi-planar YUV layouts whose first plane is the luma (Y) plane.
_LUMA_FIRST = {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv12", "nv21", "yuv411p", "yuv440p"}


def gray_range_of(frame: av.VideoFrame, to_gray: Converter) -> tuple[int, int]:
    """(min, max) grayscale level of a frame, full range (0-255), over all its pixels.

    For YUV frames the luma plane *is* the grayscale image (up to the video range): its
    min and max are read in place and mapped to full range (``(y - 16) * 255 / 219`` for
    limited-range video), which is monotonic, so it maps min to min and max to max. This
    avoids a full-resolution conversion per frame. Other pixel formats are converted.
    """
    if frame.format.name in _LUMA_FIRST:
        plane = frame.planes[0]
        luma = np.frombuffer(plane, np.uint8).reshape(frame.height, plane.line_size)[:, : frame.width]
        low, high = (int(v) for v in cv2.minMaxLoc(luma)[:2])  # half numpy's min + max on small frames
        full = frame.format.name.startswith("yuvj") or frame.color_range == 2  # AVCOL_RANGE_JPEG
        if not full:
            low, high = (min(255, max(0, round((v - 16) * 255 / 219))) for v in (low, high))
        return low, high
    gray = to_gray(frame)
    return int(gray.min()), int(gray.max())


#: How a frame's grayscale levels are measured (``select.monochrome_gray``).
GRAY_RULES = ("rgb", "luma")


class GrayRanges:
    """Per frame ``(min, max)`` grayscale level over all its pixels, full range, by ``rule``:

    * ``rgb``: OpenCV's gray (``0.299 R + 0.587 G + 0.114 B``, rounded) of the decoded RGB
      frame at full size -- the release's ``cv2.cvtColor(frame, COLOR_BGR2GRAY)`` on
      ``cv2.VideoCapture``'s frames. It is not the luma: on test.mp4 the brightest level of
      most frames is a few levels apart (up to 9, either way). When the pass itself
      produces full-size RGB (or BGR) frames, those are measured, not converted again.
    * ``luma``: the luma plane read in place (:func:`gray_range_of`): no conversion.
    """

    def __init__(self, rule: str, width: int | None, height: int | None, format: str):
        if rule not in GRAY_RULES:
            raise ValueError(f"gray rule must be one of {GRAY_RULES}, not {rule!r}")
        self.rule = rule
        self.to_gray = Converter(None, None, "gray") if rule == "luma" else None
        full_size = not width and not height
        self.code = {"rgb24": cv2.COLOR_RGB2GRAY, "bgr24": cv2.COLOR_BGR2GRAY}.get(format) if full_size else None
        self.to_rgb = Converter(None, None, "rgb24") if rule == "rgb" and self.code is None else None

    def __call__(self, frame: av.VideoFrame, array: np.ndarray) -> tuple[int, int]:
        """``array``: the pass's own conversion of ``frame``."""
        if self.rule == "luma":
            return gray_range_of(frame, self.to_gray)
        if self.code is not None:
            gray = cv2.cvtColor(array, self.code)
        else:
            gray = cv2.cvtColor(self.to_rgb(frame), cv2.COLOR_RGB2GRAY)
        low, high = cv2.minMaxLoc(gray)[:2]
        return int(low), int(high)


def open_video(path: Path):
    """``(container, first video stream)`` with the decoder settings every pass uses."""
    try:
        container = av.open(str(path))
    except Exception as exc:
        raise VideoError(f"{path}: cannot open as video ({exc})") from exc
    stream = container.streams.video[0]
    stream.thread_type = DECODE_THREAD_TYPE
    return container, stream


def decode_frames(path: Path) -> Iterator[av.VideoFrame]:
    """Every frame of ``path``'s first video stream, in decode order; a failure is a
    :class:`VideoError` naming the file (the in-process pass and the decode worker both use
    this, so their frames and errors are the same)."""
    container, stream = open_video(path)
    try:
        with container:
            yield from container.decode(stream)
    except av.error.FFmpegError as exc:
        raise VideoError(f"{path}: decoding failed ({exc})") from exc
