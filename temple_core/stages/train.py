"""The ``train`` stage: an ordered list of training stages (DPO curriculum, SFT, any order).

Each entry of ``train.stages`` names its trainer, its data and the trainer's options::

    - {trainer: dpo, difficulty: 16}                 # this run's pairs at r = 16
    - {trainer: dpo, data: other_run/generate/pairs.jsonl, lr: 1e-6}
    - {trainer: sft, data: examples/sft/sample.jsonl}

After each stage the adapter is merged into the weights; the merged model is the next
stage's starting point (and DPO reference). SPEC §5.
"""

from __future__ import annotations

from typing import Any

import attrs

from temple_core.config import ComponentSpec, Structurer, component_field
from temple_core.errors import RecipeError

#: Keys of a stage entry that are not the trainer's options.
STAGE_KEYS = ("trainer", "name", "difficulty", "data", "perturbations")


@attrs.define(kw_only=True)
class Stage:
    """One validated entry of ``train.stages``."""

    index: int
    trainer: ComponentSpec
    name: str
    difficulty: int | None = None
    data: str | None = None
    perturbations: list[str] | None = None

    def to_data(self) -> dict[str, Any]:
        """The entry as a recipe would write it."""
        data = {"trainer": self.trainer.name, "name": self.name}
        for key in ("difficulty", "data", "perturbations"):
            if getattr(self, key) is not None:
                data[key] = getattr(self, key)
        options = self.trainer.to_data()
        options.pop("name")
        data.update(options)
        return data

    @property
    def dir_name(self) -> str:
        return f"{self.index}-{self.name}"


@attrs.define(kw_only=True)
class Config:
    """The recipe's ``train:`` section."""

    #: The model trained (may differ from generate.backend: cross-architecture transfer).
    backend: ComponentSpec = component_field("backends")
    stages: list[Any] = attrs.field(factory=list)
    #: Keep each stage's merged weights on disk (the last stage's are always kept).
    keep_merged: bool = True


def check_recipe(recipe, plugins) -> None:
    """Validate each stage entry: the trainer by name, its data, then its own options."""
    config = recipe.train
    if not config.stages:
        raise RecipeError("train.stages", "needs at least one stage")
    structurer = Structurer(plugins)
    stages = []
    for index, entry in enumerate(config.stages):
        path = f"train.stages[{index}]"
        if isinstance(entry, Stage):
            stages.append(entry)
            continue
        if not isinstance(entry, dict):
            raise RecipeError(path, "expected a mapping like {trainer: dpo, difficulty: 16}")
        if "trainer" not in entry:
            raise RecipeError(f"{path}.trainer", "required key is missing (dpo or sft, or a plugin's trainer)")
        options = {k: v for k, v in entry.items() if k not in STAGE_KEYS}
        trainer = structurer.component("trainers", {"name": entry["trainer"], **options}, path)
        if trainer.name != entry["trainer"]:
            raise RecipeError(f"{path}.trainer", "expected a trainer name")
        difficulty = structurer.value(int | None, entry.get("difficulty"), f"{path}.difficulty")
        data = structurer.value(str | None, entry.get("data"), f"{path}.data")
        perturbations = structurer.value(list[str] | None, entry.get("perturbations"), f"{path}.perturbations")
        name = structurer.value(str, entry.get("name", trainer.name), f"{path}.name")
        if difficulty is not None and data is not None:
            raise RecipeError(path, "give either difficulty (this run's pairs) or data (a file), not both")
        if data is not None:
            from pathlib import Path

            if not Path(data).expanduser().is_file():
                raise RecipeError(f"{path}.data", f"no such file: {data}")
        elif difficulty is None:
            raise RecipeError(path, "needs its data: difficulty (this run's pairs at that r) or data (a file)")
        elif recipe.generate is not None and difficulty not in recipe.generate.difficulties:
            raise RecipeError(
                f"{path}.difficulty",
                f"this run generates no pairs at r = {difficulty} (generate.difficulties: {recipe.generate.difficulties})",
            )
        stages.append(
            Stage(index=index, trainer=trainer, name=name, difficulty=difficulty, data=data, perturbations=perturbations)
        )
    config.stages = stages


def run(ctx) -> dict:
    from temple_core.errors import TempleError

    raise TempleError("the train stage is not implemented in this build yet")
