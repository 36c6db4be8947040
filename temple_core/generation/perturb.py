"""Shared arithmetic of the clip-order perturbations (SPEC §3), for the perturbation plugins.

Two readings of the difficulty factor r exist (SPEC §3):

* ``released`` (default, what produced the paper's tables): drop keeps ``max(1, N // r)``
  items; shuffle/reverse cut the sequence into contiguous groups of *size*
  ``max(1, N // r)``. Larger r means smaller groups, i.e. a stronger perturbation.
* ``paper`` (the paper's prose): drop keeps ``ceil(N / r)``; shuffle/reverse cut the
  sequence into ``ceil(N / r)`` contiguous groups (sizes as even as possible, larger first).
"""

from __future__ import annotations

import math
from typing import Literal

Variant = Literal["released", "paper"]
VARIANTS = ("released", "paper")


def keep_count(n: int, r: int, variant: Variant = "released") -> int:
    """How many of ``n`` items a drop at difficulty ``r`` keeps."""
    _check(n, r)
    if n == 0:
        return 0
    if variant == "paper":
        return max(1, math.ceil(n / r))
    return max(1, n // r)


def contiguous_groups(n: int, r: int, variant: Variant = "released") -> list[list[int]]:
    """The indices ``0..n-1`` cut into contiguous groups, order inside each group kept."""
    _check(n, r)
    if n == 0:
        return []
    if variant == "paper":
        count = min(n, max(1, math.ceil(n / r)))
        base, extra = divmod(n, count)
        sizes = [base + (1 if i < extra else 0) for i in range(count)]
    else:
        size = max(1, n // r)
        sizes = [size] * (n // size) + ([n % size] if n % size else [])
    groups, start = [], 0
    for size in sizes:
        groups.append(list(range(start, start + size)))
        start += size
    return groups


def _check(n: int, r: int) -> None:
    if n < 0:
        raise ValueError(f"number of items must be >= 0, got {n}")
    if r < 1:
        raise ValueError(f"difficulty r must be >= 1, got {r}")
