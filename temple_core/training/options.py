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
    "lr_scheduler_type": "lr_scheduler",
    "optim": "optimizer",
    "weight_decay": "weight_decay",
    "adam_beta1": "adam_betas",
    "adam_beta2": "adam_betas",
    "seed": "seed",
    "data_seed": "seed",
    "output_dir": "(the stage's folder)",
    "max_length": "max_length",
    "beta": "beta",
    "loss_type": "loss_type",
    "loss_weights": "rpo_alpha",
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
_opt_pos = attrs.validators.optional(_pos)

#: Training video input presets (SPEC §5). ``paper``: what the paper's appendix states;
#: ``release``: what the authors' launchers ran (ms-swift with ``FPS=1 FPS_MAX_FRAMES=600
#: VIDEO_TOTAL_PIXELS=9000000 VIDEO_MIN_PIXELS=3136``, ``--max_length 16384``). ``max_pixels``
#: of ``release`` is qwen-vl-utils' per-frame cap ``VIDEO_MAX_PIXELS`` = 768 x 28 x 28, which the
#: launchers left at its default; ``total_pixels`` is the per-video budget the per-frame cap is
#: derived from (see docs/training.md). ``None``: the backend's own option.
VIDEO_PRESETS: dict[str, dict[str, Any]] = {
    "paper": {"fps": 2.0, "max_frames": 100, "max_pixels": 90000, "min_pixels": None, "total_pixels": None, "max_length": 8192},
    "release": {"fps": 1.0, "max_frames": 600, "max_pixels": 768 * 28 * 28, "min_pixels": 3136, "total_pixels": 9_000_000,
                "max_length": 16384},
}
#: The options a preset fills in (the ones a stage entry leaves unset).
PRESET_KEYS = ("fps", "max_frames", "max_pixels", "min_pixels", "total_pixels", "max_length")


def _betas(instance, attribute, value):
    if len(value) != 2 or not all(0.0 <= b < 1.0 for b in value):
        raise ValueError(f"must be two numbers in [0, 1), got {value}")


def _steps(instance, attribute, value):
    if value != -1 and value < 1:
        raise ValueError(f"must be -1 (run the epochs) or a number of steps >= 1, got {value}")


@attrs.define(kw_only=True, frozen=True)
class TrainerOptions:
    """The options every trainer takes; ``dpo`` and ``sft`` add their own and set their defaults.

    The video-input keys (``fps``, ``max_frames``, ``max_pixels``, ``min_pixels``,
    ``total_pixels``) and ``max_length`` left unset are filled in from the ``video`` preset
    when the options are built, so what a stage ran with is always written out in full.
    """

    #: Global batch: per_device_batch_size x gradient accumulation x processes (SPEC §5).
    batch_size: int = attrs.field(default=16, validator=_pos)
    #: Samples per process per forward; the accumulation makes up the global batch.
    per_device_batch_size: int = attrs.field(default=1, validator=_pos)
    #: Epochs over the stage's data (SPEC §5); at most 10,000.
    epochs: float = attrs.field(default=1.0, validator=[_pos, attrs.validators.le(10_000)])
    #: Stop after this many optimizer steps (-1: run the epochs).
    max_steps: int = attrs.field(default=-1, validator=_steps)
    #: Fraction of the steps spent warming the learning rate up, both trainers (SPEC §5; a number >= 1 is a step count).
    warmup_ratio: float = attrs.field(default=0.05, validator=_ge0)
    #: transformers learning-rate schedule name (SPEC §5: cosine).
    lr_scheduler: str = "cosine"
    #: transformers optimizer name (``optim``); ms-swift's default, which the release ran with, is AdamW (SPEC §5).
    optimizer: str = "adamw_torch"
    #: Decoupled weight decay (not on biases and norms), ms-swift's default (SPEC §5).
    weight_decay: float = attrs.field(default=0.1, validator=_ge0)
    #: AdamW (beta1, beta2), ms-swift's default (SPEC §5).
    adam_betas: list[float] = attrs.field(factory=lambda: [0.9, 0.95], validator=_betas)
    #: LoRA rank on all linear layers of the language model (SPEC §5); at most 4,096.
    lora_r: int = attrs.field(default=32, validator=[_pos, attrs.validators.le(4096)])
    #: LoRA dropout.
    lora_dropout: float = attrs.field(default=0.05, validator=_ge0)
    #: Video input preset (SPEC §5): ``paper`` (2 fps, <= 100 frames, <= 90,000 px per frame,
    #: max_length 8,192) or ``release`` (the authors' launchers: 1 fps, <= 600 frames, <= 9,000,000
    #: px per video in total, >= 3,136 px per frame, max_length 16,384). Keys set in the stage win.
    video: str = attrs.field(default="paper", validator=attrs.validators.in_(tuple(VIDEO_PRESETS)))
    #: Longest training sequence in tokens; a longer sample is never cut (``too_long`` says what happens to it). Unset: the preset's (SPEC §5).
    max_length: int | None = attrs.field(default=None, validator=_opt_pos)
    #: A sample longer than ``max_length`` (or whose video fails to decode mid-stage): ``resample``
    #: -- ms-swift's, the release's: another sample of the stage takes its place in the batch (up
    #: to 9 tries, in an order fixed by the seed and the sample); ``skip``: the batch goes on without
    #: it. A micro-batch left with none stops the stage, naming its videos. See docs/method.md.
    too_long: str = attrs.field(default="resample", validator=attrs.validators.in_(["resample", "skip"]))
    #: Frames sampled per second of video. Unset: the preset's (SPEC §5).
    fps: float | None = attrs.field(default=None, validator=_opt_pos)
    #: At most this many frames per video. Unset: the preset's (SPEC §5).
    max_frames: int | None = attrs.field(default=None, validator=_opt_pos)
    #: At most this many pixels per frame. Unset: the preset's (SPEC §5).
    max_pixels: int | None = attrs.field(default=None, validator=_opt_pos)
    #: At least this many pixels per frame. Unset: the preset's, else the backend's (SPEC §5).
    min_pixels: int | None = attrs.field(default=None, validator=_opt_pos)
    #: Pixel budget of a whole video: each frame gets at most ``max(min(max_pixels,
    #: total_pixels / frames x 2), 1.05 x min_pixels)`` (qwen-vl-utils' rule). Unset: the preset's (SPEC §5).
    total_pixels: int | None = attrs.field(default=None, validator=_opt_pos)
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

    def __attrs_post_init__(self):
        preset = VIDEO_PRESETS[self.video]
        for key in PRESET_KEYS:
            if getattr(self, key) is None and preset[key] is not None:
                object.__setattr__(self, key, preset[key])  # frozen: filled in once, here


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
    """The stage's video input (its ``video`` preset with the stage's own keys on top), as
    keyword arguments of the backend's ``encode_*``; what is still unset is the backend's own."""
    keys = ("fps", "max_frames", "max_pixels", "min_pixels", "total_pixels")
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
        optim=options.optimizer,
        weight_decay=options.weight_decay,
        adam_beta1=float(options.adam_betas[0]),
        adam_beta2=float(options.adam_betas[1]),
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
    to the vision tower: ``frozen`` (not trained: DPO), ``lora`` (LoRA on the tower's linear
    layers too, the projector not trained: SFT, SPEC §5) or ``full`` (every parameter of the
    tower and the projector trained, saved with the adapter, merged after)."""
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
