"""``sft``: video instruction tuning on TRL's ``SFTTrainer`` (SPEC §5): LoRA r32/a32, lr 1e-4,
on the language model and the vision tower (not the projector). Data: a JSONL file of ``messages`` + ``videos`` (docs/training.md)."""

from __future__ import annotations

from typing import Any

import attrs

from temple_core.contracts import Trainer
from temple_core.hookspecs import hookimpl
from temple_core.training.options import TrainerOptions, args_validator

_pos = attrs.validators.gt(0)


class SFT(Trainer):
    """Video SFT (TRL SFTTrainer): next-token loss on the answers, LoRA r32/a32 on the LM and the vision tower."""

    #: What its ``data`` is: ``pairs`` (a pairs file / this run's pairs) or ``sft`` (an SFT file).
    data_kind = "sft"

    @attrs.define(kw_only=True, frozen=True)
    class Options(TrainerOptions):
        #: Learning rate, SPEC §5.
        lr: float = attrs.field(default=1e-4, validator=_pos)
        #: LoRA alpha, SPEC §5.
        lora_alpha: int = attrs.field(default=32, validator=_pos)
        #: The vision tower during SFT: ``lora`` (LoRA on the tower's linear layers, the projector
        #: not trained: the release's ``freeze_vit False`` with LoRA, SPEC §5), ``full`` (every
        #: parameter of the tower and the projector trained) or ``frozen``.
        vision: str = attrs.field(default="lora", validator=attrs.validators.in_(("lora", "full", "frozen")))
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
