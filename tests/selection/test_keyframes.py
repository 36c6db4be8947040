"""Keyframes: clarity-weighted choice near 1/3 and 2/3 of a segment (SPEC §1)."""

import math

import cv2
import numpy as np
import pytest

from temple_core.selection import clarity, keyframe_windows, pick_keyframes
from temple_core.video.source import VideoSource


def test_windows_follow_the_spec():
    # 30 frames: interval 10, anchors at 10 and 20, windows |i - anchor| <= 5.
    (a1, w1, f1), (a2, w2, f2) = keyframe_windows(0, 29)
    assert (a1, a2, w1, w2) == (10.0, 20.0, 10.0, 10.0)
    assert f1 == list(range(5, 16)) and f2 == list(range(15, 26))
    # Offsets into a later segment.
    (a1, _, f1), _ = keyframe_windows(100, 129)
    assert a1 == 110.0 and f1[0] == 105


def test_cosine_weight_prefers_anchor_on_equal_clarity():
    scores = {i: 1.0 for i in range(0, 30)}
    assert pick_keyframes(0, 29, scores) == [10, 20]


def test_sharp_frame_beats_blurred_ones_near_anchor():
    scores = {i: 1.0 for i in range(0, 30)}
    scores[13] = 3.0  # weight cos(pi * 3 / 10) = 0.59 -> 1.76 > 1.0 at the anchor
    scores[24] = 1.2  # weight cos(pi * 4 / 10) = 0.31 -> 0.37: loses to the anchor
    assert pick_keyframes(0, 29, scores) == [13, 20]
    # At the window's edge the weight is cos(pi / 2) = 0: never picked.
    scores = {i: 1.0 for i in range(0, 30)}
    scores[15] = 1000.0
    assert pick_keyframes(0, 29, scores)[0] == 10
    assert math.isclose(math.cos(math.pi * 5 / 10), 0.0, abs_tol=1e-12)


def test_clarity_orders_sharp_over_blurred():
    rng = np.random.default_rng(0)
    sharp = (rng.random((64, 96, 3)) * 255).astype(np.uint8)
    blurred = cv2.GaussianBlur(sharp, (9, 9), 3)
    assert clarity(sharp) > 3 * clarity(blurred)
    assert clarity(np.zeros((8, 8, 3), np.uint8)) == 0.0
    # Grayscale input gives the same as RGB converted to gray.
    gray = cv2.cvtColor(sharp, cv2.COLOR_RGB2GRAY)
    assert clarity(gray) == pytest.approx(clarity(sharp))


def test_sharp_frames_planted_in_a_real_video_are_chosen(tmp_path, plugins):
    """A 30-frame segment of blurred frames with sharp ones planted near each anchor."""
    from temple_core.stages.select import Config, Selector
    from temple_core.samples.synthetic import write_frames

    rng = np.random.default_rng(1)
    base = (rng.random((64, 96, 3)) * 255).astype(np.uint8)
    frames = []
    for i in range(30):
        frame = cv2.GaussianBlur(np.roll(base, i, axis=1), (15, 15), 5)
        if i in (12, 22):
            frame = np.roll(base, i, axis=1)  # sharp, 2 frames from each anchor
        frames.append(frame)
    path = write_frames(tmp_path / "blur.mp4", iter(frames), fps=10, width=96, height=64)
    selector = Selector(Config(), detector=None, encoder=None)
    assert selector._keyframes(VideoSource(path), 0, 29) == [12, 22]


def test_clarity_is_exactly_the_spec_formula():
    """mean |Laplacian(ksize 3)| of the 3x3-Gaussian-blurred gray frame, computed in float64."""
    rng = np.random.default_rng(3)
    for shape in [(72, 128), (27, 48, 3)]:
        frame = (rng.random(shape) * 255).astype(np.uint8)
        gray = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        reference = np.abs(cv2.Laplacian(cv2.GaussianBlur(gray, (3, 3), 0), cv2.CV_64F, ksize=3)).mean()
        assert clarity(frame) == pytest.approx(reference, rel=1e-12)
