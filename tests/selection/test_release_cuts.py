"""TransNetV2 shots by the release's ``get_cuts`` (SPEC §1, docs/method.md), checked against
the release's loop written out here, on random transition sequences, on the cases where it
differs from the library's ``predictions_to_scenes``, and on real detections."""

import numpy as np
import pytest

from temple_core.video.source import VideoSource
from temple_plugins.shot_detectors.transnetv2 import TransNetV2Detector, release_cuts, scenes_from


def get_cuts(results: list[bool], min_frames: int = 8) -> list[list[int]]:
    """The release's ``tools/transnet/__init__.py:get_cuts``, without the timecodes."""
    cuts = []
    last = 0
    for i, result in enumerate(results):
        if result:
            start = last if len(cuts) == 0 else last + 1
            end = i
            if end - start + 1 >= min_frames:
                cuts.append([start, end])
            last = i
    if len(results) > 0:
        start = 0 if len(cuts) == 0 else last + 1
        end = len(results) - 1
        if end - start + 1 >= min_frames:
            cuts.append([start, end])
    return cuts


@pytest.mark.parametrize("density", [0.0, 0.01, 0.05, 0.2, 0.6, 1.0])
def test_release_cuts_are_the_releases_on_random_sequences(density):
    rng = np.random.default_rng(int(density * 100))
    for trial in range(200):
        n = int(rng.integers(0, 120))
        probabilities = np.where(rng.random(n) < density, rng.uniform(0.5, 1.0, n), rng.uniform(0.0, 0.5, n))
        probabilities[rng.random(n) < 0.02] = 0.5  # exactly the threshold: not a transition
        for min_frames in (1, 3, 8):
            expected = get_cuts([p > 0.5 for p in probabilities], min_frames)
            assert release_cuts(probabilities, 0.5, min_frames) == expected, (trial, n, min_frames)


def test_where_the_release_differs_from_the_library():
    def probabilities(n, transitions):
        p = np.zeros(n)
        p[list(transitions)] = 0.9
        return p

    # A short shot before the first kept one: the release starts the next shot ON the
    # transition frame (3), the library after it; the release has already dropped [0, 3].
    p = probabilities(60, [3, 30])
    assert release_cuts(p, 0.5) == [[3, 30], [31, 59]]
    assert scenes_from(p, 0.5) == [[0, 3], [4, 30], [31, 59]]
    # A run of transitions (a fade, 20-24): both end the shot on its first frame and start the
    # next one after its last; the release's one-frame shots in between are under 8 frames.
    p = probabilities(60, range(20, 25))
    assert release_cuts(p, 0.5) == scenes_from(p, 0.5) == [[0, 20], [25, 59]]
    # Two transitions 5 frames apart after a kept shot: the release drops the 5-frame shot.
    p = probabilities(60, [20, 25])
    assert release_cuts(p, 0.5) == [[0, 20], [26, 59]]
    assert scenes_from(p, 0.5) == [[0, 20], [21, 25], [26, 59]]
    # No shot of 8 frames anywhere: the release keeps the whole video as one shot.
    p = probabilities(20, [6, 12])
    assert release_cuts(p, 0.5) == [[0, 19]]
    # Too short a video: no shot at all.
    assert release_cuts(np.zeros(7), 0.5) == [] and release_cuts(np.zeros(0), 0.5) == []


def test_detector_cuts_real_detections_by_the_release_rule(videos_dir):
    """The default detector's shots are ``get_cuts`` of its own probabilities (the many-hot
    head, > 0.5); ``scenes: library`` gives the library's shots, the flash included."""
    detector = TransNetV2Detector()
    assert (detector.options.scenes, detector.options.min_frames) == ("release", 8)
    library = TransNetV2Detector(TransNetV2Detector.Options(scenes="library"))
    for name in ("flash", "fade", "cuts"):
        video = VideoSource(videos_dir / f"{name}.mp4")
        _, many = detector.probabilities(video)
        assert detector.detect(video).shots == get_cuts([p > 0.5 for p in many]), name
        assert library.detect(video).shots == scenes_from(many, 0.5), name
    # flash.mp4 has a 3-frame black flash at 25-27: the library returns it as a shot (the
    # select stage's min_shot_frames drops it), the release never makes it one.
    flash = VideoSource(videos_dir / "flash.mp4")
    assert any(e - s + 1 < 8 for s, e in library.detect(flash).shots)
    assert all(e - s + 1 >= 8 for s, e in detector.detect(flash).shots)


def test_scene_options_are_checked():
    from temple_core.config import structure
    from temple_core.errors import RecipeError

    with pytest.raises(RecipeError, match=r"select\.shot_detector\.scenes: must be one of 'release', 'library'"):
        structure(TransNetV2Detector.Options, {"scenes": "paper"}, "select.shot_detector")
    with pytest.raises(RecipeError, match=r"select\.shot_detector\.min_frames"):
        structure(TransNetV2Detector.Options, {"min_frames": 0}, "select.shot_detector")
