"""``dpo``: video DPO on TRL's ``DPOTrainer`` (SPEC §5), LoRA on the language model, vision frozen.

TRL's trainer does not take videos. :class:`VideoDPOTrainer` subclasses it only where video
needs it:

* the data are encoded per batch by the backend (:class:`PreferenceCollator`): videos are
  decoded and tokenised on the fly, never pre-tokenised into an Arrow table;
* :meth:`VideoDPOTrainer.compute_loss` turns the backend's ``chosen_*`` / ``rejected_*``
  batch into TRL's concatenated ``[chosen; rejected]`` batch and attaches the video;
* the vision tower is frozen and LoRA does not touch it, so its output for a video is the
  same for the chosen and the rejected sequence and for the policy and the reference. It is
  computed **once per pair** and handed to both forwards as precomputed encoder outputs
  (``reuse_vision_features``), instead of four times.

Everything else is TRL's: the loss -- by default the release's sigmoid DPO + ``rpo_alpha`` x the
chosen answer's NLL (TRL's ``loss_type=["sigmoid", "sft"]``, SPEC §5) -- the reference as the
same model with the adapter disabled (no second copy), the reward metrics, the optimizer loop.
"""

from __future__ import annotations

from typing import Any

import attrs

from temple_core.contracts import Trainer
from temple_core.hookspecs import hookimpl
from temple_core.training.options import TrainerOptions, args_validator

_pos = attrs.validators.gt(0)
_ge0 = attrs.validators.ge(0)


def _loss_types(instance, attribute, value):
    types = [t.strip() for t in value.split(",")]
    if not all(types):
        raise ValueError(f"an empty loss type in {value!r}")
    if "sft" in types:
        raise ValueError("'sft' is the chosen answer's NLL: set rpo_alpha (its weight) instead")


class DPO(Trainer):
    """Video DPO (TRL DPOTrainer): sigmoid loss + the chosen answer's NLL, beta 0.1, LoRA r32/a64 on the LM, vision frozen."""

    #: What its ``data`` is: ``pairs`` (a pairs file / this run's pairs) or ``sft`` (an SFT file).
    data_kind = "pairs"

    @attrs.define(kw_only=True, frozen=True)
    class Options(TrainerOptions):
        #: Sigmoid DPO temperature, SPEC §5.
        beta: float = attrs.field(default=0.1, validator=_pos)
        #: TRL's preference loss types (``sigmoid``, SPEC §5); several: comma-separated. The
        #: chosen answer's NLL is ``rpo_alpha``, not ``sft`` here.
        loss_type: str = attrs.field(default="sigmoid", validator=_loss_types)
        #: Weight of the chosen answer's NLL added to the loss (SPEC §5: ms-swift 3.x's
        #: ``rpo_alpha`` default 1.0, which the release ran with): the mean over every chosen
        #: answer token of the batch of ``-log p``. 0: plain DPO.
        rpo_alpha: float = attrs.field(default=1.0, validator=_ge0)
        #: Learning rate, SPEC §5.
        lr: float = attrs.field(default=5e-6, validator=_pos)
        #: LoRA alpha, SPEC §5.
        lora_alpha: int = attrs.field(default=64, validator=_pos)
        #: The vision tower is not trained during DPO (SPEC §5).
        freeze_vision: bool = True
        #: One vision pass per pair instead of four (needs freeze_vision).
        reuse_vision_features: bool = True
        #: Run each pair as one packed sequence [prompt; chosen; rejected] whose answers attend
        #: to the prompt and to themselves only: the shared prompt (the video) is computed once
        #: per pair instead of twice. Where the backend or the attention implementation cannot,
        #: it falls back to the concatenated rows (logged).
        prefix_sharing: bool = True
        #: Order the pairs of a video one after another and compute its frozen tower's output once
        #: per optimizer step (needs reuse_vision_features). Changes the data order.
        vision_once_per_video: bool = False
        #: Any other ``trl.DPOConfig`` option, passed through (checked against its fields).
        args: dict[str, Any] = attrs.field(factory=dict, validator=args_validator("DPOConfig"))

    def __init__(self, options: "DPO.Options"):
        self.options = options

    def train(self, tctx) -> dict[str, Any]:
        from temple_core.errors import TempleError

        if tctx.kind != "pairs":
            raise TempleError(f"{tctx.where}: a dpo stage needs preference pairs, got an SFT file")
        from temple_core.training.video_dpo import train_dpo  # imports TRL: only when training

        return train_dpo(self.options, tctx)


@hookimpl
def register_trainers(register):
    register("dpo", DPO)
