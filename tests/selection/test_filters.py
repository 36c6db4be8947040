"""Scene filters, segments and the segment filter on plain numbers (SPEC §1)."""

from temple_core.selection import filter_segments, filter_shots, segments_of
from temple_core.selection.filters import shot_gray_ranges

import numpy as np


def test_minimum_shot_and_short_scene_and_monochrome():
    # 50 fps: 0.2 s = 10 frames of distance (end - start).
    shots = [[0, 6], [7, 15], [16, 26], [27, 99], [100, 199], [200, 299], [300, 399]]
    spans = [50, 50, 50, 9, 10, 200, 200]
    d = filter_shots(shots, 50.0, spans, min_shots=1)
    # [0,6]: 7 frames < 8 -> not a shot; [7,15]: 9 frames, end-start 8 < 10 -> too short;
    # [16,26]: end-start 10, not < 10 -> kept; [27,99]: span 9 < 10 -> monochrome.
    assert d.kept == [[16, 26], [100, 199], [200, 299], [300, 399]]
    assert d.details["too_few_frames"] == 1
    assert d.details["too_short"] == 1
    assert d.details["monochrome"] == 1
    assert not d.rejected


def test_long_scene_rejects_video_with_numbers():
    shots = [[0, 49], [50, 211], [212, 260], [261, 300], [301, 350]]
    d = filter_shots(shots, 10.0, None)
    assert d.reason == "long_scene"
    assert d.details["clip"] == 1 and d.details["seconds"] == 16.1 and d.details["limit"] == 16.0
    # Exactly 16 s (end - start = 160 frames at 10 fps) is not longer than 16 s.
    ok = filter_shots([[0, 160], [161, 200], [201, 240], [241, 280]], 10.0, None)
    assert not ok.rejected


def test_shot_count_limits():
    four = [[i * 20, i * 20 + 19] for i in range(4)]
    assert not filter_shots(four, 10.0, None).rejected
    few = filter_shots(four[:3], 10.0, None)
    assert few.reason == "few_shots" and few.details["kept"] == 3 and few.details["limit"] == 4
    many = filter_shots([[i * 20, i * 20 + 19] for i in range(33)], 10.0, None)
    assert many.reason == "many_shots" and many.details["kept"] == 33
    assert not filter_shots([[i * 20, i * 20 + 19] for i in range(32)], 10.0, None).rejected


def test_gray_ranges_span_the_frames_of_a_shot_but_its_last():
    per_frame = np.array([[10, 15], [12, 14], [0, 5], [100, 101], [90, 99]], dtype=np.uint8)
    # The release's frames[start:end]: shot [0, 2] spans frames 0-1 (10..15), [3, 4] frame 3.
    assert shot_gray_ranges([[0, 2], [3, 4]], per_frame) == [5, 1]
    # With its last frame: frames 0-2 (0..15) and 3-4 (90..101).
    assert shot_gray_ranges([[0, 2], [3, 4]], per_frame, last_frame=True) == [15, 11]
    assert shot_gray_ranges([[4, 4]], per_frame) == [0]


def test_segments_are_runs_of_equal_groups():
    assert segments_of([0, 0, 1, 0, 2, 2, 2, 1]) == [[0, 1], [2], [3], [4, 5, 6], [7]]
    assert segments_of([]) == []


def test_segment_filter_rules():
    labels = [0, 1, 2, 3]
    assert not filter_segments(segments_of(labels), labels).rejected
    labels = [0, 1, 2]
    d = filter_segments(segments_of(labels), labels)
    assert d.reason == "few_segments" and d.details["segments"] == 3
    # 6 segments, group 0 appears as 3 > 6 // 3 = 2 -> rejected.
    labels = [0, 1, 0, 2, 0, 3]
    d = filter_segments(segments_of(labels), labels)
    assert d.reason == "repeated_group" and d.details["group"] == 0 and d.details["group_segments"] == 3
    # 6 segments, each group at most 2 -> kept.
    labels = [0, 1, 0, 2, 1, 2]
    assert not filter_segments(segments_of(labels), labels).rejected
    # 15 segments, a group appearing 4 times (<= 15 // 3 = 5) is still rejected: 4 or more.
    labels = [0, 1, 2, 0, 3, 4, 0, 5, 6, 0, 7, 8, 9, 10, 11]
    d = filter_segments(segments_of(labels), labels)
    assert d.reason == "repeated_group" and d.details["group_segments"] == 4
    labels = [0, 1, 2, 0, 3, 4, 0, 5, 6, 7, 8, 9, 10, 11, 12]
    assert not filter_segments(segments_of(labels), labels).rejected
