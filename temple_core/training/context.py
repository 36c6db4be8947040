"""What a trainer component gets for one stage of ``train.stages`` (hookspecs: ``trainer.train(ctx)``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs

from temple_core.store.jsonl import read_json
from temple_core.store.layout import TrainStageLayout


@attrs.define(kw_only=True)
class TrainStageContext:
    """One training stage: its starting model, its data, where it writes, and its place in a launch.

    ``backend`` loads the starting weights lazily: the recipe's model for the first stage,
    the previous stage's ``merged/`` folder after that. That same model, with the stage's
    LoRA adapter disabled, is the DPO reference.
    """

    index: int
    name: str
    trainer: str
    #: Where in the recipe this stage is, for error messages (``train.stages[2]``).
    where: str
    backend: Any
    #: Human-readable description of the starting weights (a path or a preset).
    start: str
    #: ``pairs`` (``data`` holds :class:`temple_core.records.Pair`) or ``sft`` (dicts, see
    #: :mod:`temple_core.training.data`).
    kind: str
    data: list
    #: Samples left out before training (unreadable video): ``{"id", "reason"}`` each.
    skipped: list[dict[str, Any]] = attrs.Factory(list)
    #: The stage's folder and the paths inside it (``train/<k>-<name>/``).
    layout: TrainStageLayout
    seed: int = 0
    rank: int = 0
    world_size: int = 1
    progress: bool = True
    #: Extra ``transformers.TrainerCallback`` objects (tests and plugins hook in here).
    callbacks: list = attrs.Factory(list)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def out_dir(self) -> Path:
        return self.layout.folder

    @property
    def checkpoint_dir(self) -> Path:
        return self.layout.checkpoints

    @property
    def merged_dir(self) -> Path:
        return self.layout.merged

    @property
    def adapter_dir(self) -> Path:
        return self.layout.adapter

    @property
    def metrics_path(self) -> Path:
        return self.layout.metrics

    def last_checkpoint(self) -> str | None:
        """The newest *complete* ``checkpoint-<step>`` folder of an interrupted earlier attempt.

        transformers writes ``trainer_state.json`` last, so a folder without it -- or with it
        cut short, by a full disk -- was cut off mid-save and is passed over
        (``get_last_checkpoint`` would pick it and fail to resume).
        """
        if not self.checkpoint_dir.is_dir():
            return None
        steps = []
        for folder in self.checkpoint_dir.glob("checkpoint-*"):
            step = folder.name.rpartition("-")[2]
            if step.isdigit() and isinstance(read_json(folder / "trainer_state.json"), dict):
                steps.append((int(step), folder))
        return str(max(steps)[1]) if steps else None
