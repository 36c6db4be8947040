"""Video SFT on TRL's ``SFTTrainer`` (the ``sft`` trainer's machinery; imported only to train).

TRL's SFTTrainer runs ``model(**batch, fused_lm_head=True)`` and averages ``-log p`` over the
tokens whose label is not ``-100``. The backend's SFT batch is exactly that (``input_ids``,
``attention_mask``, ``labels`` with the prompt masked, and the video tensors), so nothing of
the trainer is overridden: the dataset is declared prepared (``skip_prepare_dataset``) and
:class:`SFTCollator` encodes each batch with the backend.
"""

from __future__ import annotations

import json
from typing import Any

from temple_core.training.collate import SFTCollator, failures_log


def build_sft_trainer(options, tctx):
    """The stage's ``SFTTrainer`` (model with a fresh LoRA adapter, TRL config, video collator)."""
    from datasets import Dataset
    from trl import SFTTrainer

    from temple_core.training.options import build_config, lora_config, video_options
    from temple_core.training.runner import quiet_library_deprecations, seed_everything, stage_callbacks

    seed_everything(tctx.seed)
    backend = tctx.backend
    model = backend.load_model()
    config = build_config(
        "SFTConfig",
        options,
        tctx,
        # The collator tokenises and masks: TRL must not re-tokenise the rows.
        dataset_kwargs={"skip_prepare_dataset": True},
    )
    rows = [{"id": s["id"], "messages": json.dumps(s["messages"]), "videos": s["videos"]} for s in tctx.data]
    collator = SFTCollator(backend, video_options(options), options.max_length, pool=rows if options.too_long == "resample" else None,
                           seed=tctx.seed, log=failures_log(tctx))
    with quiet_library_deprecations():
        trainer = SFTTrainer(
            model=model,
            args=config,
            train_dataset=Dataset.from_list(rows),
            processing_class=backend.processor,
            data_collator=collator,
            peft_config=lora_config(model, backend, options.lora_r, options.lora_alpha, options.lora_dropout, options.vision),
            callbacks=stage_callbacks(tctx),
        )
    return trainer, collator


def train_sft(options, tctx) -> dict[str, Any]:
    """Train one SFT stage (the ``sft`` trainer's ``train``)."""
    from temple_core.training.runner import train_and_merge

    trainer, collator = build_sft_trainer(options, tctx)
    summary = train_and_merge(tctx, trainer, options.keep_checkpoints)
    summary.update(collator.counts(merge=tctx.is_main))  # after train_and_merge's wait
    return summary
