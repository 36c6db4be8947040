"""``drop``: keep a random subset of the clips, in their original order (SPEC §3)."""

from __future__ import annotations

import random
from collections.abc import Sequence

import attrs

from temple_core.contracts import Perturbation
from temple_core.generation.perturb import VARIANTS, keep_count
from temple_core.hookspecs import hookimpl
from temple_core.records import Perturbed


class Drop(Perturbation):
    """Drop clips at random, keeping the order of the rest (keeps max(1, N // r))."""

    @attrs.define(kw_only=True, frozen=True)
    class Options:
        #: ``released`` keeps max(1, N // r) clips; ``paper`` keeps ceil(N / r). (SPEC §3)
        variant: str = attrs.field(default="released", validator=attrs.validators.in_(VARIANTS))

    def __init__(self, options: "Drop.Options"):
        self.options = options

    def __call__(self, items: Sequence, difficulty: int, rng: random.Random) -> Perturbed:
        count = keep_count(len(items), difficulty, self.options.variant)
        kept = sorted(rng.sample(range(len(items)), count))
        return Perturbed(items=[items[i] for i in kept], kept_indices=kept)


@hookimpl
def register_perturbations(register):
    register("drop", Drop)
