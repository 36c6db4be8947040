"""What the ``dpo`` and ``sft`` trainers share: batch arithmetic, precision, the pass-through
``args`` checked against TRL's config class, and the TRL config itself.

The recipe names the *global* batch (SPEC §5: 16). It is reached as
``per_device_batch_size x gradient accumulation x processes``; the accumulation is derived
from the launch, so the same recipe gives the same optimisation on 1 or 8 processes.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import attrs

from temple_core.config import did_you_mean
from temple_core.errors import TempleError

#: TRL/transformers config fields that a trainer sets from its own named options; ``args``
#: may not set them too (two places for one number is how recipes go wrong).
RESERVED = {
    "learning_rate": "lr",
    "per_device_train_batch_size": "per_device_batch_size",
    "gradient_accumulation_steps": "batch_size",
    "num_train_epochs": "epochs",
    "max_steps": "max_steps",
    "warmup_steps": "warmup_ratio",
    "warmup_ratio": "warmup_ratio",
    "seed": "seed",
    "data_seed": "seed",
    "output_dir": "(the stage's folder)",
    "max_length": "max_length",
    "beta": "beta",
    "loss_type": "loss_type",
    "save_steps": "save_steps",
    "gradient_checkpointing": "gradient_checkpointing",
    "activation_checkpointing": "gradient_checkpointing",
    "bf16": "precision",
    "fp16": "precision",
    "remove_unused_columns": "(always false: the video collator needs every column)",
    "resume_from_checkpoint": "(automatic: a re-run resumes from the last checkpoint)",
}


_pos = attrs.validators.gt(0)
_ge0 = attrs.validators.ge(0)


def _steps(instance, attribute, value):
    if value != -1 and value < 1:
        raise ValueError(f"must be -1 (run the epochs) or a number of steps >= 1, got {value}")


@attrs.define(kw_only=True, frozen=True)
class TrainerOptions:
    """The options every trainer takes; ``dpo`` and ``sft`` add their own and set their defaults."""

    #: Global batch: per_device_batch_size x gradient accumulation x processes (SPEC §5).
    batch_size: int = attrs.field(default=16, validator=_pos)
    #: Samples per process per forward; the accumulation makes up the global batch.
    per_device_batch_size: int = attrs.field(default=1, validator=_pos)
    #: Epochs over the stage's data (SPEC §5); at most 10,000.
    epochs: float = attrs.field(default=1.0, validator=[_pos, attrs.validators.le(10_000)])
    #: Stop after this many optimizer steps (-1: run the epochs).
    max_steps: int = attrs.field(default=-1, validator=_steps)
    #: transformers learning-rate schedule name.
    lr_scheduler: str = "cosine"
    #: LoRA rank on all linear layers of the language model (SPEC §5); at most 4,096.
    lora_r: int = attrs.field(default=32, validator=[_pos, attrs.validators.le(4096)])
    #: LoRA dropout.
    lora_dropout: float = attrs.field(default=0.05, validator=_ge0)
    #: Longest training sequence in tokens (SPEC §5); longer samples are skipped, never cut.
    max_length: int = attrs.field(default=8192, validator=_pos)
    #: Video input during training: frames per second, at most this many frames, at most
    #: this many pixels per frame. Unset: the backend's own options (SPEC §5: 2, 100, 90000).
    fps: float | None = attrs.field(default=None, validator=attrs.validators.optional(_pos))
    #: At most this many frames per video (unset: the backend's), SPEC §5.
    max_frames: int | None = attrs.field(default=None, validator=attrs.validators.optional(_pos))
    #: At most this many pixels per frame (unset: the backend's), SPEC §5.
    max_pixels: int | None = attrs.field(default=None, validator=attrs.validators.optional(_pos))
    #: Checkpoint every this many optimizer steps (a re-run resumes from the last one).
    save_steps: int = attrs.field(default=50, validator=_pos)
    #: Checkpoints kept while the stage runs.
    save_total_limit: int = attrs.field(default=2, validator=_pos)
    #: Keep the checkpoints once the stage has finished (they are removed by default).
    keep_checkpoints: bool = False
    #: Recompute activations in the backward pass (less memory, more time).
    gradient_checkpointing: bool = True
    #: ``auto`` (bf16 on a GPU that has it, else fp32), ``fp32``, ``bf16`` or ``fp16``.
    precision: str = attrs.field(default="auto", validator=attrs.validators.in_(("auto", "fp32", "bf16", "fp16")))
    #: DataLoader worker processes (videos are decoded in the collator); at most 128.
    num_workers: int = attrs.field(default=0, validator=[_ge0, attrs.validators.le(128)])


def _config_class(name: str):
    import trl

    return getattr(trl, name)


def args_validator(config_class: str):
    """An attrs validator for an ``args: dict`` option: every key must be a field of
    ``trl.<config_class>`` not set elsewhere. Raises ``ValueError`` (the recipe loader turns
    it into an error naming ``train.stages[k].args``)."""

    def validate(instance, attribute, value):
        if not value:
            return
        fields = {f.name for f in dataclasses.fields(_config_class(config_class)) if f.init}
        for key in value:
            if key in RESERVED:
                raise ValueError(f"'{key}' is set by the stage's option {RESERVED[key]!r}, not through args")
            if key not in fields:
                raise ValueError(f"'{key}' is not a {config_class} option{did_you_mean(key, sorted(fields))}")

    return validate


def accumulation_steps(batch_size: int, per_device: int, world_size: int, where: str) -> int:
    per_step = per_device * world_size
    if batch_size < per_step or batch_size % per_step:
        raise TempleError(
            f"{where}.batch_size: the global batch {batch_size} is not a multiple of "
            f"per_device_batch_size {per_device} x {world_size} process(es) = {per_step}"
        )
    return batch_size // per_step


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def precision_flags(precision: str) -> dict[str, bool]:
    """``bf16`` / ``fp16`` flags for TRL's config. ``auto``: bf16 on a GPU that has it, else fp32
    (CPU runs stay fp32, which is what makes them bit-repeatable)."""
    import torch

    if precision == "auto":
        precision = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"
    return {"bf16": precision == "bf16", "fp16": precision == "fp16"}


def video_options(options) -> dict[str, Any]:
    """The stage's video sampling overrides; what it leaves unset is the backend's own."""
    keys = ("fps", "max_frames", "max_pixels")
    return {k: getattr(options, k) for k in keys if getattr(options, k) is not None}


def build_config(config_class: str, options, tctx, **specific: Any):
    """``trl.<config_class>`` for one stage: the trainer's named options, then ``args``."""
    where = tctx.where
    accumulation = accumulation_steps(options.batch_size, options.per_device_batch_size, tctx.world_size, where)
    kwargs: dict[str, Any] = dict(
        output_dir=str(tctx.checkpoint_dir),
        learning_rate=options.lr,
        per_device_train_batch_size=options.per_device_batch_size,
        gradient_accumulation_steps=accumulation,
        num_train_epochs=options.epochs,
        max_steps=options.max_steps,
        # transformers 5 reads a float in [0, 1) as a fraction of the total steps.
        warmup_steps=float(options.warmup_ratio) if options.warmup_ratio < 1 else int(options.warmup_ratio),
        lr_scheduler_type=options.lr_scheduler,
        logging_steps=1,
        save_strategy="steps",
        save_steps=options.save_steps,
        save_total_limit=options.save_total_limit,
        seed=tctx.seed,
        data_seed=tctx.seed,
        report_to=[],
        disable_tqdm=True,  # our own bar (CompactProgressCallback) replaces transformers' printing one
        remove_unused_columns=False,
        activation_checkpointing=options.gradient_checkpointing,
        max_length=options.max_length,
        dataloader_num_workers=options.num_workers,
        dataloader_pin_memory=cuda_available(),
        # Without a GPU, say so: transformers then sets up gloo DDP for a multi-process launch
        # (torchrun, accelerate launch --multi_gpu) instead of silently training each process
        # alone.
        use_cpu=not cuda_available(),
        **precision_flags(options.precision),
    )
    kwargs.update(specific)
    kwargs.update(options.args or {})
    try:
        return _config_class(config_class)(**kwargs)
    except (ValueError, TypeError) as exc:
        raise TempleError(f"{where}: {config_class} rejected the stage's options: {exc}") from None


def lora_config(model, backend, r: int, alpha: int, dropout: float, vision: str):
    """LoRA on every linear layer of the language model (SPEC §5). ``vision`` says what happens
    to the vision tower: ``frozen`` (not trained: DPO), ``lora`` (LoRA on its linear layers
    too) or ``full`` (every vision parameter trained, saved with the adapter, merged after)."""
    from peft import LoraConfig

    targets = list(backend.lora_target_modules(model))
    modules_to_save = None
    if vision == "lora":
        targets += list(backend.vision_lora_target_modules(model))
    elif vision == "full":
        modules_to_save = list(backend.vision_module_names(model))
    if not targets:
        raise TempleError(f"{backend.describe()}: the backend names no LoRA target modules")
    return LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=targets,
        modules_to_save=modules_to_save,
        bias="none",
    )
