"""``shuffle``: shuffle contiguous groups of clips, order inside a group kept (SPEC §3)."""

from __future__ import annotations

import random
from collections.abc import Sequence

import attrs

from temple_core.contracts import Perturbation
from temple_core.generation.perturb import VARIANTS, contiguous_groups
from temple_core.hookspecs import hookimpl
from temple_core.records import Perturbed


class Shuffle(Perturbation):
    """Shuffle groups of max(1, N // r) consecutive clips."""

    @attrs.define(kw_only=True, frozen=True)
    class Options:
        #: ``released``: groups of size max(1, N // r); ``paper``: ceil(N / r) groups. (SPEC §3)
        variant: str = attrs.field(default="released", validator=attrs.validators.in_(VARIANTS))
        #: Reshuffle until the order differs from the original (when it can). The released
        #: pipeline does not, so an unlucky shuffle there yields an unperturbed "rejected".
        avoid_identity: bool = False
        #: Reshuffles tried before giving up on ``avoid_identity``.
        max_tries: int = attrs.field(default=100, validator=attrs.validators.ge(1))

    def __init__(self, options: "Shuffle.Options"):
        self.options = options

    def __call__(self, items: Sequence, difficulty: int, rng: random.Random) -> Perturbed:
        groups = contiguous_groups(len(items), difficulty, self.options.variant)
        order = list(range(len(groups)))
        tries = self.options.max_tries if self.options.avoid_identity and len(groups) > 1 else 1
        for _ in range(tries):
            rng.shuffle(order)
            if order != sorted(order):
                break
        kept = [i for g in order for i in groups[g]]
        return Perturbed(items=[items[i] for i in kept], kept_indices=kept)


@hookimpl
def register_perturbations(register):
    register("shuffle", Shuffle)
