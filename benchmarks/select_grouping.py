"""Grouping time: temple_core.selection.group_wpgma (scipy's compiled weighted linkage, cut
at the threshold, labels by pointer jumping) against the straightforward pure-Python greedy
loop (same groups, asserted) and scipy's bare linkage (the full tree, no cut), on random
similarity matrices.

    python benchmarks/select_grouping.py [--sizes 32 256 1024] [--python-max 256]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy.cluster.hierarchy import linkage
from scipy.spatial.distance import squareform

from temple_core.selection.grouping import group_wpgma

# The pure-Python greedy loop is the tests' independent statement of the rule.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from testkit.references import wpgma_greedy  # noqa: E402


def similarity(n: int, seed: int = 0, kind: str = "clustered") -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "uniform":
        # Independent uniform similarities: ~20% of pairs above 0.8, long merge chains.
        u = np.triu(rng.random((n, n)), 1)
        s = u + u.T
        np.fill_diagonal(s, 1.0)
        return s
    # Embedding-like: clustered unit vectors (clusters of ~8), many merges above 0.8.
    centres = rng.normal(size=(max(1, n // 8), 64))
    x = centres[rng.integers(0, len(centres), n)] + 0.35 * rng.normal(size=(n, 64))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x @ x.T


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 256, 1024])
    parser.add_argument("--python-max", type=int, default=1024, help="largest size to run the pure-Python loop on")
    parser.add_argument("--kinds", nargs="+", default=["clustered", "uniform"])
    args = parser.parse_args()
    rows = []
    for kind, n in [(k, n) for k in args.kinds for n in args.sizes]:
        s = similarity(n, kind=kind)
        ours = best_of(lambda: group_wpgma(s, 0.8), 20 if n <= 256 else 3)
        dist = squareform(1.0 - s - np.diag(np.diag(1.0 - s)), checks=False)
        scipy_t = best_of(lambda: linkage(dist, method="weighted"), 3)
        row = {"data": kind, "shots": n, "group_wpgma_s": round(ours, 5), "scipy_linkage_s": round(scipy_t, 5)}
        if n <= args.python_max:
            loop = best_of(lambda: wpgma_greedy(s, 0.8), 3 if n <= 256 else 1)
            row["python_loop_s"] = round(loop, 4)
            row["speedup_vs_loop"] = round(loop / ours, 1)
            assert group_wpgma(s, 0.8) == wpgma_greedy(s, 0.8)
        row["groups"] = max(group_wpgma(s, 0.8)) + 1
        rows.append(row)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
