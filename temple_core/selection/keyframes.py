"""Keyframes: the clearest frame near 1/3 and 2/3 of each segment, as the release picks them (SPEC §1).

Reproduced bit for bit from the released rule, including its integer arithmetic:

* clarity of a frame = mean of the *saturated* absolute Laplacian: 3x3 Gaussian blur of the
  RGB frame, RGB -> gray, Laplacian (ksize 3) in int16, ``convertScaleAbs`` (|x| capped at 255);
* a segment runs from ``start`` (first frame of its first shot) to ``end`` (last frame of its
  last shot); ``interval = (end - start) / (k + 1)`` for ``k`` keyframes (3 for 2);
* keyframe i (1..k): anchor ``c = int(start + interval * i)``, half width ``h = int(interval) // 2``,
  the half-open window ``[c - h, c + h)`` and weights ``cos(pi * d / (2h))`` for ``d = frame - c``
  in ``[-h, h)``; the keyframe is the frame with the largest ``clarity x weight``, the first one on
  a tie. (The window is asymmetric: ``c - h`` has weight ``cos(-pi/2)`` ~ 6e-17, ``c + h`` is out.)

Edge case the release does not handle: when ``h`` is 0 (``end - start < 2 (k + 1)``, i.e. a
segment of under 7 frames for 2 keyframes) its window is empty and the release fails (``max``
of nothing). Here the keyframe is then the anchor ``c`` itself (a window of one frame). The
selection's minimum shot length (8 frames) means this only happens with changed defaults.
The weights are computed with numpy, as the release does (``np.cos`` and Python's ``math.cos``
may differ in the last bit, which could flip a near-tie).
"""

from __future__ import annotations

import cv2
import numpy as np


def clarity(frame: np.ndarray) -> float:
    """Mean saturated |Laplacian| of a frame (RGB ``(H, W, 3)``, or an already gray ``(H, W)``),
    exactly the float64 ``mean()`` of the release's ``convertScaleAbs`` image."""
    blurred = cv2.GaussianBlur(frame, (3, 3), 0)  # on the RGB frame, before the conversion (the release's order)
    gray = blurred if blurred.ndim == 2 else cv2.cvtColor(blurred, cv2.COLOR_RGB2GRAY)
    saturated = cv2.convertScaleAbs(cv2.Laplacian(gray, cv2.CV_16S, ksize=3))
    # The sum of uint8 values is exact in float64; one division, as numpy's mean does.
    return float(cv2.norm(saturated, cv2.NORM_L1)) / saturated.size


def keyframe_windows(start: int, end: int, count: int = 2) -> list[tuple[int, int, list[int]]]:
    """Per keyframe of segment ``start..end``: ``(anchor c, half width h, frames of its window)``."""
    interval = (end - start) / (count + 1)
    out = []
    for i in range(1, count + 1):
        anchor = int(start + interval * i)
        half = int(interval) // 2
        frames = list(range(anchor - half, anchor + half)) if half > 0 else [anchor]
        out.append((anchor, half, frames))
    return out


def pick_keyframes(start: int, end: int, scores: dict[int, float], count: int = 2) -> list[int]:
    """The keyframes of segment ``start..end`` given the clarity of every frame of its windows."""
    picks = []
    for anchor, half, frames in keyframe_windows(start, end, count):
        if half == 0:
            picks.append(anchor)
            continue
        weights = np.cos(np.pi * np.arange(-half, half) / (half * 2))
        weighted = (np.array([scores[i] for i in frames]) * weights).tolist()
        picks.append(frames[weighted.index(max(weighted))])  # the first best, as list.index gives
    return picks
