"""Are the built-in sample videos the same bytes every time they are written, on a loaded machine?

    python benchmarks/sample_determinism.py --rounds 10 --busy 3 [--threads 1] [--x264-params mbtree=0] [--sets transnetv2_test,synthetic]

Each round writes every sample set into a fresh folder (``temple_core.samples.materialize``,
what a run does on first use) while ``--busy`` processes spin on the CPUs, and hashes every
file. Printed: per file, how many distinct contents the rounds gave (1 = deterministic).
``--threads`` sets ``temple_core.samples.ENCODER_THREADS`` (0: libx264's default, one thread
per core) and ``--x264-params`` ``temple_core.samples.X264_PARAMS`` ("": libx264's defaults,
macroblock-tree rate control on): ``--threads 0 --x264-params ""`` is how temple wrote them
before. Exit code 1 when any file had more than one content. Results go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path


def _spin(seconds: float) -> None:
    end = time.time() + seconds
    while time.time() < end:
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--busy", type=int, default=3, help="background processes spinning on the CPUs")
    parser.add_argument("--threads", type=int, default=None, help="libx264 threads (default: temple's setting)")
    parser.add_argument("--x264-params", default=None, help="libx264 parameters (default: temple's setting)")
    parser.add_argument("--sets", default="transnetv2_test,synthetic")
    args = parser.parse_args()

    from temple_core import samples

    if args.threads is not None:
        samples.ENCODER_THREADS = args.threads
    if args.x264_params is not None:
        samples.X264_PARAMS = args.x264_params
    busy = [multiprocessing.Process(target=_spin, args=(24 * 3600,), daemon=True) for _ in range(args.busy)]
    for process in busy:
        process.start()
    contents: dict[str, set[str]] = {}
    started = time.time()
    try:
        for round_ in range(args.rounds):
            with tempfile.TemporaryDirectory() as folder:
                for name in args.sets.split(","):
                    for path in samples.materialize(name, Path(folder) / name):
                        digest = hashlib.sha256(path.read_bytes()).hexdigest()
                        contents.setdefault(path.name, set()).add(digest)
            print(f"round {round_ + 1}/{args.rounds} done ({time.time() - started:.0f} s)", file=sys.stderr, flush=True)
    finally:
        for process in busy:
            process.terminate()
            process.join()
    result = {
        "encoder_threads": samples.ENCODER_THREADS,
        "x264_params": samples.X264_PARAMS,
        "rounds": args.rounds,
        "busy_processes": args.busy,
        "cpus": multiprocessing.cpu_count(),
        "seconds": round(time.time() - started, 1),
        "distinct_contents": {name: len(digests) for name, digests in sorted(contents.items())},
    }
    print(json.dumps(result, indent=2))
    return 0 if all(n == 1 for n in result["distinct_contents"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
