"""What every HF-Trainer-based stage does around ``trainer.train()``: callbacks, resume, merge.

* resume: an earlier attempt's newest complete checkpoint is passed as
  ``resume_from_checkpoint`` (model/adapter, optimizer, scheduler, RNG and data position),
  and TRL's running token count (``num_tokens``) continues from it;
* after training: the adapter is saved (``adapter/``), merged into the weights and the
  merged model written by the backend (``merged/``) so that the backend's ``path:`` loads it;
* checkpoints are deleted once the merged model is safely on disk (unless kept).
"""

from __future__ import annotations

import contextlib
import time
import warnings
from pathlib import Path
from typing import Any

from temple_core.store import read_json
from temple_core.training.metrics import CompactProgressCallback, MetricsFileCallback


@contextlib.contextmanager
def quiet_library_deprecations():
    """PEFT 0.21 and TRL 1.16 read transformers 5's deprecated ``is_gradient_checkpointing``
    (when wrapping the model, and on every reference forward): a warning no user can act on,
    repeated every stage."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*is_gradient_checkpointing.* is deprecated", category=FutureWarning)
        yield


def stage_callbacks(tctx) -> list:
    return [MetricsFileCallback(tctx.metrics_path, tctx.name, tctx.trainer), *tctx.callbacks]


def _use_compact_progress(trainer, tctx) -> None:
    """transformers prints every log dict (PrinterCallback) or draws its own bar; one
    compact bar per stage, on the main process only, says enough."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    for callback in list(trainer.callback_handler.callbacks):
        if type(callback) in (PrinterCallback, ProgressCallback):
            trainer.remove_callback(callback)
    if tctx.progress and tctx.is_main:
        trainer.add_callback(CompactProgressCallback(tctx.name))


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch before the adapter is created: LoRA's A matrices are
    random, so without it two runs of one recipe differ from the first step."""
    from transformers import set_seed

    set_seed(seed)


def merge_saved_adapter(tctx, out_dir) -> None:
    """Merge ``adapter/`` into a fresh copy of the stage's starting weights and save it.

    What a sharded (FSDP) run does after training, and a check that ``adapter/`` alone, on
    top of the starting weights, is the stage's result."""
    from peft import PeftModel

    backend = type(tctx.backend)(tctx.backend.options)  # same start, not the trained instance
    model = PeftModel.from_pretrained(backend.load_model(), str(tctx.adapter_dir))
    backend.merge_and_save(model, out_dir)


def restore_token_count(trainer, checkpoint) -> None:
    """TRL 1.16's DPOTrainer and SFTTrainer count the tokens seen (logged as ``num_tokens``) in
    ``_total_train_tokens``, set to 0 when the trainer is built and not part of a checkpoint:
    a resumed stage would count again from 0. The checkpoint's ``trainer_state.json`` holds
    the count at its last logged step (``logging_steps: 1``); the count continues from it."""
    if not hasattr(trainer, "_total_train_tokens"):
        return
    state = read_json(Path(checkpoint) / "trainer_state.json") or {}
    counts = [entry["num_tokens"] for entry in state.get("log_history", []) if "num_tokens" in entry]
    if counts:
        trainer._total_train_tokens = int(counts[-1])


def train_and_merge(tctx, trainer, keep_checkpoints: bool = False) -> dict[str, Any]:
    """Train (resuming when a checkpoint exists), save the adapter, merge, save the merged model."""
    _use_compact_progress(trainer, tctx)
    resume = tctx.last_checkpoint()
    if resume:
        restore_token_count(trainer, resume)
    if resume and tctx.is_main:
        print(f"[train] {tctx.name}: resuming from {resume}")
    began = time.time()
    with quiet_library_deprecations():
        output = trainer.train(resume_from_checkpoint=resume)
    trainer.accelerator.wait_for_everyone()
    # save_model gathers a sharded (FSDP/ZeRO-3) model's adapter onto the main process.
    trainer.save_model(str(tctx.adapter_dir))
    trainer.accelerator.wait_for_everyone()
    if tctx.is_main:
        layout = tctx.layout
        tmp = layout.merged_tmp
        layout.remove(tmp)  # a merge cut off by a crash
        if trainer.is_fsdp_enabled:
            # Sharded parameters cannot be merged in place: rebuild from the gathered adapter.
            merge_saved_adapter(tctx, tmp)
        else:
            tctx.backend.merge_and_save(trainer.accelerator.unwrap_model(trainer.model), tmp)
        layout.publish_merged(tmp)  # a merged/ folder is always complete
    trainer.accelerator.wait_for_everyone()
    metrics = dict(output.metrics)
    return {
        "steps": trainer.state.global_step,
        "resumed_from": resume,
        "train_loss": metrics.get("train_loss"),
        "train_seconds": round(time.time() - began, 2),
        # The stage runner deletes checkpoints/ once the ledger says the stage finished: until
        # then an interrupted stage resumes from its last checkpoint instead of step 0.
        "checkpoints_kept": keep_checkpoints,
        **distribution_of(trainer),
    }


def distribution_of(trainer) -> dict[str, Any]:
    """How accelerate ran the stage: ``distributed_type`` (``NO``, ``MULTI_CPU``, ``MULTI_GPU``,
    ``DEEPSPEED``, ``FSDP``...) and, under DeepSpeed, the ZeRO stage -- what a launch config
    asked for is not always what runs (FSDP without GPUs falls back to data parallel)."""
    state = trainer.accelerator.state
    out: dict[str, Any] = {"distributed_type": getattr(state.distributed_type, "value", str(state.distributed_type))}
    plugin = getattr(state, "deepspeed_plugin", None)
    if plugin is not None:
        out["zero_stage"] = plugin.zero_stage
    return out
