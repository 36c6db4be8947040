"""WPGMA grouping (scipy's weighted linkage, cut strictly below 1 - threshold) equals the
greedy loop written out in similarity space (merge only when strictly > threshold)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from temple_core.selection import group_wpgma, groups_of
from testkit.references import wpgma_greedy


def random_similarity(rng, n, tie_fraction, threshold, grid):
    if grid:
        # Dyadic values: 1 - s and pairwise means are exact, so ties stay exact ties.
        values = rng.integers(0, 17, size=(n, n)) / 16.0
    else:
        values = rng.random((n, n))
    s = np.triu(values, 1)
    s = s + s.T
    # Entries exactly at the threshold must never merge (strictly above only).
    mask = np.triu(rng.random((n, n)) < tie_fraction, 1)
    s[mask | mask.T] = threshold
    np.fill_diagonal(s, 1.0)
    return s


def has_tied_merges_above(sim, threshold):
    """True if the greedy run ever faces two equal best candidates above the threshold (then
    either order is WPGMA, and scipy and the loop may pick differently)."""
    s = sim.astype(float).copy()
    np.fill_diagonal(s, -np.inf)
    active = list(range(len(s)))
    while len(active) > 1:
        sub = s[np.ix_(active, active)]
        best = sub.max()
        if not best > threshold:
            return False
        if (np.triu(sub == best, 1)).sum() > 1:
            return True
        i, j = np.unravel_index(np.argmax(np.triu(sub == best, 1)), sub.shape)
        a, b = active[i], active[j]
        s[a] = s[:, a] = 0.5 * (s[a] + s[b])
        s[a, a] = -np.inf
        active.remove(b)
    return False


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 24),
    tie_fraction=st.sampled_from([0.0, 0.2, 0.6]),
    threshold=st.sampled_from([0.8, 0.5, 0.75]),
)
def test_equals_greedy_loop(seed, n, tie_fraction, threshold):
    rng = np.random.default_rng(seed)
    sim = random_similarity(rng, n, tie_fraction, threshold, grid=False)
    assert group_wpgma(sim, threshold) == wpgma_greedy(sim, threshold)


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 12), tie_fraction=st.sampled_from([0.0, 0.3]))
def test_equals_greedy_loop_on_exact_grid_with_ties_at_threshold(seed, n, tie_fraction):
    threshold = 0.75  # dyadic: values exactly at it exist in the grid
    rng = np.random.default_rng(seed)
    sim = random_similarity(rng, n, tie_fraction, threshold, grid=True)
    if has_tied_merges_above(sim, threshold):
        return  # equal candidates: either order is WPGMA; skip rather than compare orders
    assert group_wpgma(sim, threshold) == wpgma_greedy(sim, threshold)


def test_ties_at_threshold_never_merge():
    sim = np.full((4, 4), 0.8)
    np.fill_diagonal(sim, 1.0)
    assert group_wpgma(sim, 0.8) == [0, 1, 2, 3]
    sim[0, 1] = sim[1, 0] = np.nextafter(0.8, 1.0)
    assert group_wpgma(sim, 0.8) == [0, 0, 1, 2]


def test_merged_row_is_plain_mean_not_size_weighted():
    # Merges: a-b (0.95), then (ab)-c at mean(0.9, 0.9) = 0.9. Then d: WPGMA gives
    # (abc)-d = mean(mean(0.9, 0.9)... = mean((ab)-d, c-d) = mean(0.78, 0.86) = 0.82 > 0.8 -> joins;
    # a size-weighted mean (UPGMA) would give (2 * 0.78 + 0.86) / 3 = 0.8067, also > 0.8, so make
    # c-d 0.83: WPGMA mean(0.78, 0.83) = 0.805 joins, UPGMA (1.56 + 0.83) / 3 = 0.7967 does not.
    sim = np.array(
        [
            [1.0, 0.95, 0.9, 0.78],
            [0.95, 1.0, 0.9, 0.78],
            [0.9, 0.9, 1.0, 0.83],
            [0.78, 0.78, 0.83, 1.0],
        ]
    )
    assert group_wpgma(sim, 0.8) == [0, 0, 0, 0]
    assert wpgma_greedy(sim, 0.8) == [0, 0, 0, 0]


def test_groups_of():
    assert groups_of([0, 1, 0, 2]) == [[0, 2], [1], [3]]
    assert groups_of([]) == []


@pytest.mark.parametrize("n,kind", [(200, "uniform"), (300, "clustered")])
def test_equals_greedy_loop_on_large_matrices(n, kind):
    rng = np.random.default_rng(n)
    if kind == "uniform":
        sim = random_similarity(rng, n, 0.0, 0.8, grid=False)
    else:  # clustered unit vectors: many merges, many rounds, compaction exercised
        centres = rng.normal(size=(n // 8, 32))
        x = centres[rng.integers(0, len(centres), n)] + 0.35 * rng.normal(size=(n, 32))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        sim = x @ x.T
    assert group_wpgma(sim, 0.8) == wpgma_greedy(sim, 0.8)


def test_bad_matrices_are_refused():
    with pytest.raises(ValueError, match="square"):
        group_wpgma(np.ones((2, 3)))
    with pytest.raises(ValueError, match="NaN"):
        group_wpgma(np.array([[1.0, np.nan], [np.nan, 1.0]]))
    assert group_wpgma(np.ones((0, 0))) == []
    assert group_wpgma(np.ones((1, 1))) == [0]


def test_two_clusters_and_a_loner():
    # Two well-separated clusters of clips (cosine of unit vectors) and one loner.
    x = np.array([[1, 0, 0], [0.98, 0.2, 0], [0, 1, 0], [0.1, 0.99, 0], [0, 0, 1]], dtype=float)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    assert group_wpgma(x @ x.T, 0.8) == [0, 0, 1, 1, 2]
