"""Per-step metrics of a training stage: ``metrics.jsonl`` and a compact progress bar.

One line per optimizer step (``logging_steps: 1``) with the step, epoch, ``loss``,
``grad_norm``, ``learning_rate`` and, for DPO, ``rewards/chosen``, ``rewards/rejected``,
``rewards/margins``, ``rewards/accuracies`` (and the rest of what TRL logs). Only the main
process writes. A resumed stage first cuts the lines after the checkpoint it resumes from,
so that the steps it replays are not counted twice.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from transformers import TrainerCallback
from transformers.trainer_callback import ProgressCallback

from temple_core.store import append_jsonl, read_jsonl, write_jsonl_atomic

METRICS_FILE = "metrics.jsonl"
#: What the curves show first, in this order, when present.
KEY_METRICS = (
    "loss",
    "grad_norm",
    "learning_rate",
    "rewards/chosen",
    "rewards/rejected",
    "rewards/margins",
    "rewards/accuracies",
)


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class MetricsFileCallback(TrainerCallback):
    """Appends each training log (one per ``logging_steps``) to ``metrics.jsonl``."""

    def __init__(self, path: Path, stage: str, trainer: str):
        self.path = Path(path)
        self.stage = stage
        self.trainer = trainer

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        # Resumed from a checkpoint at ``global_step``: later lines are from steps being redone.
        lines = read_jsonl(self.path)
        kept = [line for line in lines if line.get("step", 0) <= state.global_step]
        if len(kept) != len(lines) or (self.path.exists() and state.global_step == 0 and lines):
            write_jsonl_atomic(self.path, kept if state.global_step > 0 else [])

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs or "loss" not in logs:
            return  # evaluation logs and the end-of-training summary are not steps
        record = {"stage": self.stage, "trainer": self.trainer, "step": state.global_step, "epoch": _plain(state.epoch)}
        record.update({k: _plain(v) for k, v in logs.items() if k not in ("step", "epoch")})
        append_jsonl(self.path, record)


class CompactProgressCallback(ProgressCallback):
    """transformers' tqdm bar, with the latest loss (and reward accuracy) as its postfix
    instead of one printed dict per step."""

    def __init__(self, description: str):
        super().__init__()
        self.description = description

    def on_train_begin(self, args, state, control, **kwargs):
        # transformers' own opens the bar without a label and draws it at once (a stray,
        # unlabelled "0/N" line before ours): the same bar, labelled from the start.
        from tqdm.auto import tqdm

        if state.is_world_process_zero:
            self.training_bar = tqdm(total=state.max_steps, desc=self.description, dynamic_ncols=True)
        self.current_step = 0

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and self.training_bar is not None and logs and "loss" in logs:
            postfix = {"loss": f"{logs['loss']:.4f}"}
            if "rewards/accuracies" in logs:
                postfix["acc"] = f"{logs['rewards/accuracies']:.2f}"
            self.training_bar.set_postfix(postfix, refresh=False)


def read_metrics(stage_dir: Path) -> list[dict[str, Any]]:
    return read_jsonl(Path(stage_dir) / METRICS_FILE)
