"""``sft``: video instruction tuning on TRL's ``SFTTrainer`` (SPEC §5): LoRA r32/a32, lr 1e-4,
vision tower trainable. Data: a JSONL file of ``messages`` + ``videos`` (docs/training.md)."""

from __future__ import annotations

from typing import Any

import attrs

from temple_core.contracts import Trainer
from temple_core.hookspecs import hookimpl
from temple_core.training.options import TrainerOptions, args_validator

_pos = attrs.validators.gt(0)
_ge0 = attrs.validators.ge(0)


class SFT(Trainer):
    """Video SFT (TRL SFTTrainer): next-token loss on the answers, LoRA r32/a32, vision trained."""

    #: What its ``data`` is: ``pairs`` (a pairs file / this run's pairs) or ``sft`` (an SFT file).
    data_kind = "sft"

    @attrs.define(kw_only=True, frozen=True)
    class Options(TrainerOptions):
        #: Learning rate, SPEC §5.
        lr: float = attrs.field(default=1e-4, validator=_pos)
        #: Fraction of the steps spent warming the learning rate up.
        warmup_ratio: float = attrs.field(default=0.03, validator=_ge0)
        #: LoRA alpha, SPEC §5.
        lora_alpha: int = attrs.field(default=32, validator=_pos)
        #: The vision tower during SFT: ``full`` (every parameter trained, SPEC §5), ``lora``
        #: (LoRA on its linear layers) or ``frozen``.
        vision: str = attrs.field(default="full", validator=attrs.validators.in_(("full", "lora", "frozen")))
        #: Any other ``trl.SFTConfig`` option, passed through (checked against its fields).
        args: dict[str, Any] = attrs.field(factory=dict, validator=args_validator("SFTConfig"))

    def __init__(self, options: "SFT.Options"):
        self.options = options

    def train(self, tctx) -> dict[str, Any]:
        from temple_core.errors import TempleError

        if tctx.kind != "sft":
            raise TempleError(f"{tctx.where}: an sft stage needs an SFT file (messages + videos), got preference pairs")
        from temple_core.training.video_sft import train_sft  # imports TRL: only when training

        return train_sft(self.options, tctx)


@hookimpl
def register_trainers(register):
    register("sft", SFT)
