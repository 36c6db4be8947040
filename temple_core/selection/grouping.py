"""Grouping of clips by similarity: WPGMA agglomerative clustering cut at a threshold.

Repeatedly merge the most similar pair of clusters while that similarity is strictly above
``threshold``; the merged cluster's similarity to every other is the *plain mean* of the
two rows (WPGMA). This is ``scipy.cluster.hierarchy.linkage(1 - s, method="weighted")``
cut below distance ``1 - threshold`` (tests check it). Ties between equally similar
candidate merges are broken deterministically (by index), which can give a different
partition from scipy's only when two candidate merges above the threshold have exactly
equal similarity; a similarity exactly *at* the threshold never merges, as in scipy.

Cost: each merge updates two rows in O(n) with numpy and keeps a cached maximum per row, so
a whole clustering is O(n^2) work in vectorised steps (rows whose cached maximum pointed
at a merged cluster are rescanned).
"""

from __future__ import annotations

import numpy as np


def group_wpgma(similarity: np.ndarray, threshold: float = 0.8) -> list[int]:
    """Cluster labels (``0..k-1``, numbered by first appearance) for a symmetric
    similarity matrix."""
    s = np.array(similarity, dtype=np.float64, copy=True)
    n = s.shape[0]
    if s.shape != (n, n):
        raise ValueError(f"similarity must be square, got shape {s.shape}")
    if n == 0:
        return []
    parent = np.arange(n)  # union-find over original items; root = surviving row
    np.fill_diagonal(s, -np.inf)
    row_best = s.argmax(axis=1)
    row_max = s[np.arange(n), row_best]
    active = np.ones(n, dtype=bool)
    for _ in range(n - 1):
        i = int(np.argmax(row_max))
        best = row_max[i]
        if not best > threshold:  # strictly above; NaN never merges
            break
        j = int(row_best[i])
        a, b = min(i, j), max(i, j)
        merged = 0.5 * (s[a] + s[b])
        # Row a becomes the merged cluster; row b disappears.
        s[a] = merged
        s[:, a] = merged
        s[a, a] = -np.inf
        s[b] = -np.inf
        s[:, b] = -np.inf
        active[b] = False
        parent[parent == b] = a
        row_max[b] = -np.inf
        # Rows whose best partner was a or b must be rescanned; others only compare with
        # their new value in column a.
        stale = active & ((row_best == a) | (row_best == b))
        stale[a] = True
        if stale.any():
            rows = np.flatnonzero(stale)
            row_best[rows] = s[rows].argmax(axis=1)
            row_max[rows] = s[rows, row_best[rows]]
        others = active & ~stale
        better = others & (s[:, a] > row_max)
        row_best[better] = a
        row_max[better] = s[better, a]
    return _relabel(parent)


def _relabel(roots: np.ndarray) -> list[int]:
    mapping: dict[int, int] = {}
    return [mapping.setdefault(int(r), len(mapping)) for r in roots]


def groups_of(labels: list[int]) -> list[list[int]]:
    """Lists of item indices per label, in label order."""
    groups: list[list[int]] = [[] for _ in range(max(labels, default=-1) + 1)]
    for i, label in enumerate(labels):
        groups[label].append(i)
    return groups


def group_wpgma_reference(similarity, threshold: float = 0.8) -> list[int]:
    """The straightforward pure-Python version (for tests and the benchmark baseline)."""
    n = len(similarity)
    s = [[float(similarity[i][j]) for j in range(n)] for i in range(n)]
    members = {i: [i] for i in range(n)}
    while len(members) > 1:
        best, pair = None, None
        keys = sorted(members)
        for x, i in enumerate(keys):
            for j in keys[x + 1 :]:
                if best is None or s[i][j] > best:
                    best, pair = s[i][j], (i, j)
        if not best > threshold:
            break
        a, b = pair
        for k in keys:
            if k not in (a, b):
                s[a][k] = s[k][a] = 0.5 * (s[a][k] + s[b][k])
        members[a].extend(members.pop(b))
    labels = [0] * n
    for root, items in members.items():
        for item in items:
            labels[item] = root
    return _relabel(np.array(labels))
