"""The stages of a run, in order: one module each, with its recipe section's ``Config``
class and ``run(ctx) -> dict`` (a summary). :mod:`.runner` chains them through the run's
ledger (:mod:`temple_core.store.ledger`); the recipe schema (:mod:`temple_core.recipe`)
types its sections with these ``Config`` classes. No stage module imports the runner or the
recipe module, so there is no import cycle."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from temple_core.stages import eval as evaluate
from temple_core.stages import generate, select, train


@attrs.frozen
class StageSpec:
    """One stage: its name (the recipe section and the run-directory folder), its section's
    schema, the function that runs it, and whether its sub-stages keep their own ledger
    records (then the stage folder as a whole is never moved aside; see ``train``).
    ``outputs(layout, summary)``: what the stage's finished record vouches for inside its
    folder (its sub-stages' outputs: deleting one makes the stage run again)."""

    name: str
    config: type
    run: Callable[..., dict[str, Any]]
    substages: bool = False
    outputs: Callable[..., list[Path]] | None = None


STAGES: tuple[StageSpec, ...] = (
    StageSpec("select", select.Config, select.run),
    StageSpec("generate", generate.Config, generate.run),
    StageSpec("train", train.Config, train.run, substages=True, outputs=train.outputs),
    StageSpec("eval", evaluate.Config, evaluate.run, substages=True, outputs=evaluate.outputs),
)
STAGE_NAMES: tuple[str, ...] = tuple(s.name for s in STAGES)


def stage(name: str) -> StageSpec:
    return next(s for s in STAGES if s.name == name)


def recipe_keys() -> dict[str, list[str]]:
    """Plugin kind -> the recipe keys that name a component of it (``generate.captioner``,
    ``eval.evaluators[]``...): each section's component fields, and a training stage's ``trainer``."""
    from temple_core.config import component_kind

    keys: dict[str, list[str]] = {"trainers": ["train.stages[].trainer"]}
    for spec in STAGES:
        for field in attrs.fields(spec.config):
            kind = component_kind(field)
            if kind is not None:
                many = "list" in str(field.type)
                keys.setdefault(kind, []).append(f"{spec.name}.{field.name}{'[]' if many else ''}")
    return keys
