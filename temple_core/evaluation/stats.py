"""Bootstrap 95% intervals for accuracies (scipy's ``stats.bootstrap``, percentile method).

Accuracies here are means of 0/1 (or 0.5 for a tie) outcomes. When several outcomes come from
one video (temporal order: one per perturbation x r), the videos are resampled, not the
outcomes (a cluster bootstrap: outcomes of one video are not independent draws), via
``paired=True`` over (sum of outcomes, count) per video.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Bootstrap resamples for every interval (scipy's default is 9,999; 2,000 keeps it fast).
RESAMPLES = 2000
CONFIDENCE = 0.95


def mean_interval(values: Sequence[float], seed: int = 0) -> list[float] | None:
    """The percentile-bootstrap 95% interval of the mean of ``values`` (None for fewer than 2)."""
    data = np.asarray(list(values), dtype=float)
    if len(data) < 2:
        return None
    if np.all(data == data[0]):
        return [float(data[0]), float(data[0])]
    from scipy.stats import bootstrap

    res = bootstrap((data,), np.mean, n_resamples=RESAMPLES, confidence_level=CONFIDENCE, method="percentile",
                    rng=np.random.default_rng(seed))
    return [float(res.confidence_interval.low), float(res.confidence_interval.high)]


def clustered_interval(sums: Sequence[float], counts: Sequence[int], seed: int = 0) -> list[float] | None:
    """95% interval of ``sum(sums) / sum(counts)`` resampling clusters (e.g. videos) with replacement."""
    s = np.asarray(list(sums), dtype=float)
    n = np.asarray(list(counts), dtype=float)
    keep = n > 0
    s, n = s[keep], n[keep]
    if len(s) < 2:
        return None
    ratios = s / n
    if np.all(ratios == ratios[0]):
        return [float(ratios[0]), float(ratios[0])]
    from scipy.stats import bootstrap

    def pooled(a, b, axis=-1):
        return a.sum(axis=axis) / b.sum(axis=axis)

    res = bootstrap((s, n), pooled, paired=True, vectorized=True, n_resamples=RESAMPLES, confidence_level=CONFIDENCE,
                    method="percentile", rng=np.random.default_rng(seed))
    return [float(res.confidence_interval.low), float(res.confidence_interval.high)]


def cell(outcomes: Sequence[float], seed: int = 0) -> dict:
    """``{"accuracy", "interval", "n"}`` of 0/1 outcomes (accuracy None when there are none)."""
    values = list(outcomes)
    return {
        "accuracy": float(np.mean(values)) if values else None,
        "interval": mean_interval(values, seed),
        "n": len(values),
    }
