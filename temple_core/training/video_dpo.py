"""Video DPO on TRL's ``DPOTrainer`` (the ``dpo`` trainer's machinery; imported only to train).

TRL 1.16's ``DPOTrainer._compute_loss`` takes a batch ``{input_ids, attention_mask,
completion_mask, **model_kwargs}`` whose rows are ``[chosen; rejected]``, runs the policy as
``model(**model_kwargs, labels=..., fused_lm_head=True)`` and the reference as the same call
with the adapter disabled, and computes the loss and the reward metrics from the summed
completion log-probabilities. So the only thing video needs is the batch:

* :class:`~temple_core.training.collate.PreferenceCollator` encodes pairs with the backend (video decoding, chat template,
  labels) and pads them -- one video per pair, shared by its chosen and rejected rows;
* :meth:`VideoDPOTrainer.video_batch` builds TRL's concatenated batch from it and attaches
  the video: either the raw video tensors, repeated for the rejected rows (the vision tower
  then runs for every row of every forward: 4 times per pair), or -- with
  ``reuse_vision_features`` -- the vision tower's output computed once per pair under
  ``no_grad`` and passed to both forwards as precomputed encoder outputs;
* with ``prefix_sharing`` (where the backend supports it) the pair runs as one packed row
  ``[prompt; chosen; rejected]`` (``temple_core.training.prefix_sharing``): TRL's batch keeps its
  ``[chosen; rejected]`` rows for the loss, and hooks on the model run the packed row instead;
* with ``vision_once_per_video`` the pairs of one video come one after another
  (:class:`VideoGroupedSampler`) and the tower's output of a video is kept for the rest of the
  optimizer step, so it runs once per video per step.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from trl import DPOTrainer

from temple_core.errors import TempleError
from temple_core.training.collate import PreferenceCollator, failures_log
from temple_core.training.prefix_sharing import PACKED_KEY, PackedPairs, PrefixSharedForward

log = logging.getLogger("temple.train")
#: Reasons already logged for a fallback to the concatenated batch (each is logged once per process).
_fallbacks_logged: set[str] = set()


def _pad_to(tensor: torch.Tensor, length: int, value) -> torch.Tensor:
    if tensor.shape[1] == length:
        return tensor
    pad = tensor.new_full((tensor.shape[0], length - tensor.shape[1], *tensor.shape[2:]), value)
    return torch.cat([tensor, pad], dim=1)


class VideoGroupedSampler(torch.utils.data.Sampler):
    """The pairs of a video one after another in the micro-batches of one process.

    Videos (and the pairs within a video) come in a seeded random order that changes with the
    epoch. Under several processes, accelerate deals the sampler's micro-batches of
    ``per_device`` pairs round robin (process ``p`` gets micro-batches ``p, p + world, ...``), so
    the order is built per process: each video's pairs go to one process's stream (the shortest
    so far), and the streams are interleaved the way accelerate deals them. A video's pairs then
    sit in consecutive micro-batches of one process and straddle at most one step boundary
    (but for at most ``world - 1`` videos split to give every process an equal share). When the
    pairs do not fill the last round, accelerate's ``even_batches`` (its default) repeats pairs
    from the start to fill it, so a few more videos may then appear on two processes: that is
    accelerate's padding, outside this order."""

    def __init__(self, videos: list[str], seed: int, per_device: int = 1, world: int = 1):
        self.groups: dict[str, list[int]] = {}
        for index, video in enumerate(videos):
            self.groups.setdefault(video, []).append(index)
        self.seed, self.epoch, self.size = seed, 0, len(videos)
        self.per_device, self.world = per_device, world

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self):
        rng = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        groups = list(self.groups.values())
        streams: list[list[int]] = [[] for _ in range(self.world)]
        for g in torch.randperm(len(groups), generator=rng).tolist():
            members = groups[g]
            shortest = min(range(self.world), key=lambda p: len(streams[p]))
            streams[shortest] += [members[i] for i in torch.randperm(len(members), generator=rng).tolist()]
        # Equal lengths (to one pair), as accelerate deals equal shares: the longest streams give
        # their last pairs to the shortest (at most world - 1 videos are split so).
        order = sorted(range(self.world), key=lambda p: -len(streams[p]))
        target = {p: self.size // self.world + (rank < self.size % self.world) for rank, p in enumerate(order)}
        spare = [streams[p].pop() for p in order for _ in range(len(streams[p]) - target[p])]
        for p in order:
            while len(streams[p]) < target[p]:
                streams[p].append(spare.pop())
        # Position of process p's k-th pair in the dealt order; sorting closes the gaps of a
        # last, incomplete round.
        slots = []
        for p, stream in enumerate(streams):
            for k, index in enumerate(stream):
                round_, offset = divmod(k, self.per_device)
                slots.append(((round_ * self.world + p) * self.per_device + offset, index))
        yield from (index for _, index in sorted(slots))


class VideoDPOTrainer(DPOTrainer):
    """TRL's DPOTrainer with a video batch. ``backend`` builds and reads the batches.

    ``reuse_vision_features``, ``prefix_sharing`` and ``vision_once_per_video`` are plain
    attributes, read per batch (the benchmark switches them step by step); ``prefix_sharing``
    only where the backend supports it (the hooks are in place then)."""

    def __init__(self, *args, backend, reuse_vision_features: bool = True, prefix_sharing: bool = False,
                 vision_once_per_video: bool = False, **kwargs):
        self.backend = backend
        self.reuse_vision_features = reuse_vision_features
        self.vision_once_per_video = vision_once_per_video
        self._video_features: dict[str, torch.Tensor] = {}
        self._video_features_step = -1
        super().__init__(*args, **kwargs)
        self.prefix_sharing = False
        self.prefix_sharing_off: str | None = None  # why prefix sharing is off, when asked for
        self._prefix_hooks = None
        if prefix_sharing:
            reason = self.backend.prefix_sharing_unsupported(self.accelerator.unwrap_model(self.model))
            if reason is None:
                self._prefix_hooks = PrefixSharedForward(self.model)
                self.prefix_sharing = True
            else:
                self.prefix_sharing_off = reason
                if reason not in _fallbacks_logged:
                    _fallbacks_logged.add(reason)
                    log.warning("prefix sharing off (%s): concatenated [chosen; rejected] rows instead", reason)

    # The pairs are encoded per batch by the collator (videos are too big to pre-tokenise).
    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        return dataset

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if self.vision_once_per_video and dataset is not None:
            return VideoGroupedSampler(list(dataset["video_path"]), self.args.data_seed or self.args.seed,
                                       self.args.per_device_train_batch_size, self.args.world_size)
        return super()._get_train_sampler(train_dataset)

    def vision_features(self, model, shared: dict[str, Any], keys: list[str] | None):
        """The frozen tower's output per pair: computed for this batch, or -- with
        ``vision_once_per_video`` -- once per video per optimizer step (kept for the step's
        other micro-batches, then dropped)."""
        with torch.no_grad():
            if not self.vision_once_per_video or keys is None:
                return self.backend.vision_features(model, shared)
            if self._video_features_step != self.state.global_step:
                self._video_features, self._video_features_step = {}, self.state.global_step
            missing: dict[str, int] = {}
            for i, key in enumerate(keys):
                if key not in self._video_features and key not in missing:
                    missing[key] = i
            if missing:
                computed = self.backend.vision_features(model, self.backend.select_videos(shared, list(missing.values())))
                self._video_features.update(zip(missing, computed))
            return tuple(self._video_features[key] for key in keys)

    def video_batch(self, model, inputs: dict[str, Any]) -> dict[str, Any]:
        """TRL's ``[chosen; rejected]`` batch from the backend's preference batch."""
        chosen = {k[len("chosen_"):]: v for k, v in inputs.items() if k.startswith("chosen_")}
        rejected = {k[len("rejected_"):]: v for k, v in inputs.items() if k.startswith("rejected_")}
        shared = {k: v for k, v in inputs.items() if not k.startswith(("chosen_", "rejected_"))}
        keys = shared.pop("video_keys", None)
        length = max(chosen["input_ids"].shape[1], rejected["input_ids"].shape[1])
        pad_id = self._tokenizer.pad_token_id
        batch: dict[str, Any] = {}
        for key in chosen:
            value = {"input_ids": pad_id, "labels": -100}.get(key, 0)
            batch[key] = torch.cat([_pad_to(chosen[key], length, value), _pad_to(rejected[key], length, value)])
        labels = batch.pop("labels")
        completion = labels != -100
        # TRL rebuilds the labels as input_ids where completion_mask is set: they must agree.
        if not torch.equal(labels[completion], batch["input_ids"][completion]):
            raise TempleError(f"{self.backend.describe()}: preference labels differ from input_ids on completion tokens")
        batch["completion_mask"] = completion.long()
        unwrapped = self.accelerator.unwrap_model(model)
        # Frozen tower, adapter only on the language model: the features are constants of the
        # pair. Computed without grad, once, for both rows and both forwards.
        features = self.vision_features(unwrapped, shared, keys) if self.reuse_vision_features else None
        if not self.prefix_sharing:
            batch.update(self.backend.model_inputs(shared, vision_features=features, repeat=2))
            return batch
        # One packed row per pair; TRL keeps the concatenated rows (ids, mask, completion) for
        # its loss and metrics, the model gets the packed ones (PrefixSharedForward).
        packed = PackedPairs(batch["input_ids"], batch["attention_mask"], completion)
        extras = {k: batch.pop(k) for k in list(batch) if k not in ("input_ids", "attention_mask", "completion_mask")}
        positions = self.backend.position_ids(unwrapped, batch["input_ids"], batch["attention_mask"], extras, shared, repeat=2)
        packed.model_kwargs = {
            "input_ids": packed.to_packed(batch["input_ids"], pad_id),
            "position_ids": packed.to_packed(positions, 0),
            **{k: packed.to_packed(v, 0) for k, v in extras.items()},
            **self.backend.model_inputs(shared, vision_features=features, repeat=1),
        }
        batch[PACKED_KEY] = packed
        return batch

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        return super().compute_loss(model, self.video_batch(model, inputs), return_outputs, num_items_in_batch)


def loss_settings(options) -> dict[str, Any]:
    """TRL's ``loss_type`` / ``loss_weights`` for the stage's loss.

    The release (ms-swift 3.7 on TRL 0.20) adds ``rpo_alpha`` x ``nll_loss`` to each pair's DPO
    loss, where ``nll_loss = -per_token_logps[chosen][loss_mask].mean()``: the mean of ``-log p``
    over every chosen answer token of the micro-batch (token-weighted, not a mean of per-pair
    means). TRL 1.16's ``"sft"`` loss type is that same quantity
    (``-chosen_per_token_logps[chosen_mask].mean()``), weighted by its ``loss_weights`` entry, so
    the release's loss is ``["sigmoid", "sft"]`` with weights ``[1, rpo_alpha]``."""
    types = [t.strip() for t in options.loss_type.split(",")]
    weights = [1.0] * len(types)
    if options.rpo_alpha > 0:
        types.append("sft")
        weights.append(float(options.rpo_alpha))
    return {"loss_type": types, "loss_weights": weights}


def build_dpo_trainer(options, tctx) -> tuple[VideoDPOTrainer, PreferenceCollator]:
    """The stage's trainer (model with a fresh LoRA adapter, TRL config, video collator)."""
    from datasets import Dataset

    from temple_core.training.options import build_config, lora_config, video_options
    from temple_core.training.runner import quiet_library_deprecations, seed_everything, stage_callbacks

    if options.reuse_vision_features and not options.freeze_vision:
        raise TempleError(f"{tctx.where}.reuse_vision_features: needs freeze_vision (a trained tower's output changes)")
    if options.vision_once_per_video and not options.reuse_vision_features:
        raise TempleError(f"{tctx.where}.vision_once_per_video: needs reuse_vision_features (features computed outside the model)")
    seed_everything(tctx.seed)
    backend = tctx.backend
    model = backend.load_model()
    config = build_config("DPOConfig", options, tctx, beta=options.beta, **loss_settings(options))
    if config.precompute_ref_log_probs:
        raise TempleError(f"{tctx.where}.args.precompute_ref_log_probs: not supported for video pairs")
    rows = [
        {"pair_id": p.pair_id, "video_path": p.video_path, "prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected}
        for p in tctx.data
    ]
    collator = PreferenceCollator(
        backend, video_options(options), options.max_length, pool=rows if options.too_long == "resample" else None, seed=tctx.seed,
        log=failures_log(tctx),
    )
    vision = "frozen" if options.freeze_vision else "full"
    with quiet_library_deprecations():
        trainer = VideoDPOTrainer(
            model=model,
            args=config,
            train_dataset=Dataset.from_list(rows),
            processing_class=backend.processor,
            data_collator=collator,
            peft_config=lora_config(model, backend, options.lora_r, options.lora_alpha, options.lora_dropout, vision),
            callbacks=stage_callbacks(tctx),
            backend=backend,
            reuse_vision_features=options.reuse_vision_features,
            prefix_sharing=options.prefix_sharing,
            vision_once_per_video=options.vision_once_per_video,
        )
    # Under FSDP the vision tower's parameters are sharded outside the wrapped forward.
    trainer.reuse_vision_features = options.reuse_vision_features and not trainer.is_fsdp_enabled
    trainer.vision_once_per_video = trainer.vision_once_per_video and trainer.reuse_vision_features
    return trainer, collator


def train_dpo(options, tctx) -> dict[str, Any]:
    """Train one DPO stage (the ``dpo`` trainer's ``train``)."""
    from temple_core.training.runner import train_and_merge

    trainer, collator = build_dpo_trainer(options, tctx)
    summary = train_and_merge(tctx, trainer, options.keep_checkpoints)
    summary.update(collator.counts(merge=tctx.is_main))  # after train_and_merge's wait
    summary["vision_features_reused"] = trainer.reuse_vision_features
    summary["vision_once_per_video"] = trainer.vision_once_per_video
    summary["prefix_sharing"] = trainer.prefix_sharing
    if trainer.prefix_sharing_off:
        summary["prefix_sharing_off"] = trainer.prefix_sharing_off
    return summary
