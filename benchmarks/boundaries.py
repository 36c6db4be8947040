"""Shot-boundary agreement shared by the selection benchmarks: F1 of two boundary lists with a
frame tolerance (greedy one-to-one matching, as tests/selection/test_detectors.py scores them)."""

from __future__ import annotations


def f1(a, b, tolerance=1):
    """F1 of boundary frames ``a`` against ``b``: each matched at most once within ``tolerance``."""
    matched, used = 0, set()
    for x in a:
        for k, y in enumerate(b):
            if k not in used and abs(x - y) <= tolerance:
                matched += 1
                used.add(k)
                break
    if not a and not b:
        return 1.0
    p = matched / len(a) if a else 0.0
    r = matched / len(b) if b else 0.0
    return 0.0 if not matched else 2 * p * r / (p + r)
