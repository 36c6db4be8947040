"""Peak memory of the selection of one long 720p video: a 1-minute and a 10-minute synthetic
video (1280x720, 25 fps, a new moving scene every 12 s), each selected in a fresh process;
the ratio of the two peaks shows whether memory grows with the video's length.

    python benchmarks/select_memory.py [--minutes 1 10] [--detector pyscenedetect] [--workdir /tmp/temple-mem]

The stage config for this benchmark raises ``max_shots`` to 64 and ``group_threshold`` to
0.95 and ``max_group_segments`` to 64, so that the 10-minute video (50 shots of scenes whose
colours repeat) is kept and its keyframes are computed too. The peak is measured from after
the imports and model loading (``/proc/self/clear_refs`` resets ``VmHWM``). The detection
pass decodes in the stage's decode worker process (``select.decode_worker``, on by default):
its own peak (``VmHWM``, from its start) is reported, and the ratio is taken on the sum of the
two processes' peaks (``--no-worker``: in-process decoding, the main process only).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

W, H, FPS, SHOT_SECONDS = 1280, 720, 25, 12


def frames(minutes: float):
    import numpy as np
    from temple_core.samples.synthetic import scene_frame, scene_texture

    shots = int(minutes * 60 / SHOT_SECONDS)
    for scene in range(shots):
        texture = scene_texture(scene, W, H)  # one texture at a time: the generator stays small
        for t in range(SHOT_SECONDS * FPS):
            yield np.ascontiguousarray(scene_frame(texture, scene, t, W, H, True))


def make(path: Path, minutes: float) -> None:
    from temple_core.samples.synthetic import write_frames

    if not path.exists():
        tmp = path.with_suffix(".tmp.mp4")
        write_frames(tmp, frames(minutes), FPS, W, H)
        tmp.rename(path)


def select_one(path: str, detector: str, worker: bool = True) -> None:
    """Child process: select one video, print the record summary and the peak RSS."""
    os.environ.setdefault("TEMPLE_LOAD_PLUGINS", "transnetv2,pyscenedetect,colorhist")
    from temple_core.plugins import get_plugin_manager

    from temple_core.config import structure
    from temple_core.stages.select import Config, Selector

    plugins = get_plugin_manager()
    config = structure(
        Config,
        {"shot_detector": {"name": detector}, "max_shots": 64, "group_threshold": 0.95, "max_group_segments": 64,
         "decode_worker": worker},
        "select",
        plugins=plugins,
    )
    selector = Selector(config, config.shot_detector.build(plugins), config.encoder.build(plugins))
    if detector == "transnetv2":
        selector.detector.model  # loaded once per process in the stage: part of the baseline
    baseline = _status("VmRSS")
    # Reset the peak-RSS counter so the peak below is the selection's own, not the imports'.
    Path("/proc/self/clear_refs").write_text("5")
    started = time.perf_counter()
    record = selector.select("bench", Path(path))
    peak_kib = _status("VmHWM")
    from temple_core.video import worker as decode_worker

    pid = decode_worker.get_worker().pid if worker else None
    worker_kib = _status("VmHWM", pid) if pid else 0
    print(json.dumps({"worker_peak_rss_mib": round(worker_kib / 1024, 1),
                      "total_peak_rss_mib": round((peak_kib + worker_kib) / 1024, 1),"status": record.status, "reason": record.reason, "frames": record.num_frames,
                      "clips": len(record.clips), "segments": len(record.segments),
                      "seconds": round(time.perf_counter() - started, 1), "baseline_rss_mib": round(baseline / 1024, 1), "peak_rss_mib": round(peak_kib / 1024, 1),
                      "peak_above_baseline_mib": round((peak_kib - baseline) / 1024, 1),
                      "ru_maxrss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))


def _status(key: str, pid: int | None = None) -> int:
    """A ``/proc/<pid>/status`` memory field (this process by default), in KiB."""
    for line in Path(f"/proc/{pid or 'self'}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, nargs="+", default=[1, 10])
    parser.add_argument("--detector", default="pyscenedetect")
    parser.add_argument("--workdir", default="/tmp/temple-mem")
    parser.add_argument("--no-worker", action="store_true", help="decode in-process (select.decode_worker: false)")
    parser.add_argument("--child", nargs=2, metavar=("VIDEO", "DETECTOR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        select_one(*args.child, worker=not args.no_worker)
        return
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    peaks = []
    for minutes in args.minutes:
        path = work / f"synthetic-{minutes:g}min-720p.mp4"
        started = time.perf_counter()
        make(path, minutes)
        made = time.perf_counter() - started
        out = subprocess.run([sys.executable, __file__, "--child", str(path), args.detector]
                             + (["--no-worker"] if args.no_worker else []), capture_output=True, text=True, check=True)
        row = {"minutes": minutes, "detector": args.detector, "generate_s": round(made, 1),
               "size_mb": round(path.stat().st_size / 1e6, 1), **json.loads(out.stdout.strip().splitlines()[-1])}
        peaks.append(row["total_peak_rss_mib"])
        print(json.dumps(row), flush=True)
    if len(peaks) >= 2:
        print(json.dumps({"peak_ratio_longest_to_shortest": round(peaks[-1] / peaks[0], 3)}))


if __name__ == "__main__":
    main()
