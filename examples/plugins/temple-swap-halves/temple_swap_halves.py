"""A third-party temple plugin: the ``swap-halves`` perturbation.

It swaps the first and second half of the clip sequence (the middle clip of an odd count
goes with the second half). Its only link to temple is the entry point in group ``temple``
(pyproject.toml) and pluggy's hook marker for the project name ``temple``.
"""

from __future__ import annotations

import attrs
import pluggy

hookimpl = pluggy.HookimplMarker("temple")


@attrs.define
class Perturbed:
    """Duck-typed like temple's own record: ``items`` and ``kept_indices``."""

    items: list
    kept_indices: list


class SwapHalves:
    """Swap the first and second half of the clips."""

    @attrs.define(kw_only=True, frozen=True)
    class Options:
        #: Only swap when at least this many clips are given (fewer: unchanged).
        min_items: int = attrs.field(default=2, validator=attrs.validators.ge(1))

    def __init__(self, options):
        self.options = options

    def __call__(self, items, difficulty, rng):
        n = len(items)
        if n < self.options.min_items:
            kept = list(range(n))
        else:
            half = n // 2
            kept = list(range(half, n)) + list(range(half))
        return Perturbed(items=[items[i] for i in kept], kept_indices=kept)


@hookimpl
def register_perturbations(register):
    register("swap-halves", SwapHalves)
