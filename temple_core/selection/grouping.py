"""Grouping of clips by similarity: WPGMA agglomerative clustering cut at a threshold.

Repeatedly merge the most similar pair of clusters while that similarity is strictly above
``threshold``; the merged cluster's similarity to every other is the *plain mean* of the
two rows (WPGMA). That is exactly scipy's ``linkage(1 - s, method="weighted")`` (compiled,
nearest-neighbour chain) with the tree cut strictly below distance ``1 - threshold``, so
the library does the work. The tests check it against the greedy loop written out in
similarity space (``tests/testkit/references.py``: ``wpgma_greedy``).

Exactness: ``1 - s`` is computed exactly for ``s >= 0.5`` (Sterbenz), so with the default
threshold a similarity exactly *at* the threshold never merges, as the rule says. Ties
between two equally similar candidate merges above the threshold may be taken in either
order (scipy's and the loop's orders can differ only then).
"""

from __future__ import annotations

import numpy as np
from scipy.cluster.hierarchy import linkage
from scipy.spatial.distance import squareform


def group_wpgma(similarity: np.ndarray, threshold: float = 0.8) -> list[int]:
    """Cluster labels (``0..k-1``, numbered by first appearance) for a symmetric
    similarity matrix."""
    full = np.asarray(similarity, dtype=np.float64)
    n = full.shape[0] if full.ndim else 0
    if full.ndim != 2 or full.shape != (n, n):
        raise ValueError(f"similarity must be a square matrix, got shape {full.shape}")
    if not np.isfinite(full).all():
        raise ValueError("similarity has NaN or infinite entries")
    if n < 2:
        return [0] * n
    distance = 1.0 - full
    np.fill_diagonal(distance, 0.0)
    tree = linkage(squareform(distance, checks=False), method="weighted")
    # The rows of the tree come sorted by height, and WPGMA heights never decrease: the merges
    # to apply are the first k, those strictly below the cut. Row i joins clusters a and b
    # into cluster n + i; every cluster points at the one it joined, and pointer jumping
    # (log-depth rounds) takes each item to its root. (fcluster does the same but spends
    # most of its time validating the tree in Python.)
    k = int(np.searchsorted(tree[:, 2], 1.0 - threshold, side="left"))
    parent = np.arange(n + k)
    joined = tree[:k, :2].astype(np.intp)
    parent[joined[:, 0]] = parent[joined[:, 1]] = np.arange(n, n + k)
    while True:
        grand = parent[parent]
        if np.array_equal(grand, parent):
            break
        parent = grand
    return _relabel(parent[:n])


def _relabel(roots: np.ndarray) -> list[int]:
    """Rename cluster ids to 0, 1, ... in order of first appearance."""
    roots = np.asarray(roots)
    _, first, inverse = np.unique(roots, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    return rank[inverse].tolist()


def groups_of(labels: list[int]) -> list[list[int]]:
    """Lists of item indices per label, in label order."""
    groups: list[list[int]] = [[] for _ in range(max(labels, default=-1) + 1)]
    for i, label in enumerate(labels):
        groups[label].append(i)
    return groups
