"""Grouping of clips by similarity: WPGMA agglomerative clustering cut at a threshold.

Repeatedly merge the most similar pair of clusters while that similarity is strictly above
``threshold``; the merged cluster's similarity to every other is the *plain mean* of the
two rows (WPGMA). This is ``scipy.cluster.hierarchy.linkage(1 - s, method="weighted")``
cut below distance ``1 - threshold`` (tests check it). Ties between equally similar
candidate merges are broken deterministically (by index), which can give a different
partition from scipy's only when two candidate merges above the threshold have exactly
equal similarity; a similarity exactly *at* the threshold never merges, as in scipy.

Cost: items without any partner above the threshold are set aside first; then each round
merges *every* pair of reciprocal nearest neighbours above the threshold at once, in a few
vectorised O(n^2) numpy operations, and drops the clusters that can no longer merge. Clustered data needs few rounds (each about halves the
clusters); the worst case (a chain) needs up to n rounds.
"""

from __future__ import annotations

import numpy as np


def group_wpgma(similarity: np.ndarray, threshold: float = 0.8) -> list[int]:
    """Cluster labels (``0..k-1``, numbered by first appearance) for a symmetric
    similarity matrix."""
    full = np.asarray(similarity, dtype=np.float64)
    n = full.shape[0]
    if full.shape != (n, n):
        raise ValueError(f"similarity must be square, got shape {full.shape}")
    if n == 0:
        return []
    labels = np.arange(n)  # each item's cluster, named by its surviving row
    # Items with no partner strictly above the threshold can never merge (a WPGMA similarity
    # is a mean of item similarities): leave them out of the loop entirely.
    partner = full > threshold
    np.fill_diagonal(partner, False)
    alive = np.flatnonzero(partner.any(axis=1))
    s = full[np.ix_(alive, alive)]  # a copy: the caller's matrix is never modified
    np.fill_diagonal(s, -np.inf)
    rows = alive  # rows[k] = the item naming cluster k
    while len(rows) > 1:
        m = len(rows)
        best = s.argmax(axis=1)
        value = s[np.arange(m), best]
        # Reciprocal nearest neighbours above the threshold. WPGMA is reducible, so such a
        # pair is merged with each other in the greedy order too, and merging all of them in
        # one round gives the same tree (the idea behind the NN-chain algorithm).
        mutual = (best[best] == np.arange(m)) & (np.arange(m) < best) & (value > threshold)
        if not mutual.any():
            break
        a = np.flatnonzero(mutual)
        b = best[a]
        # Plain means, rows then columns: for two merged pairs this gives the mean of the four
        # cross similarities, as merging them one after the other would.
        merged = 0.5 * (s[a] + s[b])
        # The matrix stays symmetric, so the new columns are the new rows transposed, except
        # the block between merged clusters, which averages the new rows' columns a and b.
        block = 0.5 * (merged[:, a] + merged[:, b])
        s[a] = merged
        s[:, a] = merged.T
        s[np.ix_(a, a)] = block
        s[a, a] = -np.inf
        rename = np.arange(n)
        rename[rows[b]] = rows[a]
        labels = rename[labels]
        # Drop b (merged into a) and every cluster whose best similarity was already <= the
        # threshold: later similarities to it are means of values <= the threshold, so it can
        # never merge again. Dropped rows are masked with -inf; the matrix is compacted only
        # when half of it is dead, since a numpy gather costs more than the masked argmax.
        dead = ~(value > threshold)
        dead[b] = True
        newly = np.flatnonzero(dead & (rows >= 0))  # masked before: already -inf
        s[newly] = -np.inf
        s[:, newly] = -np.inf
        live = ~dead
        rows = np.where(live, rows, -1)
        if live.sum() * 2 < m:
            s = s[np.ix_(live, live)]
            rows = rows[live]
    return _relabel(labels)


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
