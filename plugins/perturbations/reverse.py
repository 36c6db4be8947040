"""``reverse``: reverse the order of contiguous groups of clips, order inside kept (SPEC §3)."""

from __future__ import annotations

import random
from collections.abc import Sequence

import attrs

from temple_core.contracts import Perturbation
from temple_core.generation.perturb import VARIANTS, contiguous_groups
from temple_core.hookspecs import hookimpl
from temple_core.records import Perturbed


class Reverse(Perturbation):
    """Reverse the order of groups of max(1, N // r) consecutive clips."""

    @attrs.define(kw_only=True, frozen=True)
    class Options:
        #: ``released``: groups of size max(1, N // r); ``paper``: ceil(N / r) groups. (SPEC §3)
        variant: str = attrs.field(default="released", validator=attrs.validators.in_(VARIANTS))

    def __init__(self, options: "Reverse.Options"):
        self.options = options

    def __call__(self, items: Sequence, difficulty: int, rng: random.Random) -> Perturbed:
        # Deterministic: rng is accepted for the common contract and left untouched.
        groups = contiguous_groups(len(items), difficulty, self.options.variant)
        kept = [i for group in reversed(groups) for i in group]
        return Perturbed(items=[items[i] for i in kept], kept_indices=kept)


@hookimpl
def register_perturbations(register):
    register("reverse", Reverse)
