"""The typed interface between the ``eval`` stage and an evaluator component.

Small on purpose: an evaluator gets one :class:`EvalRequest` per checkpoint and needs nothing
else from the core. Capabilities of an evaluator are class attributes (``needs_backend``,
``shards_items``), read by the stage; see the ``register_evaluators`` hook's contract.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import Any, Callable

import attrs

from temple_core.distributed import shard
from temple_core.errors import PluginError


def _optional_ge(low):
    def check(instance, attribute, value):
        if value is not None and value < low:
            raise ValueError(f"must be >= {low} (got {value})")

    return check


@attrs.define(kw_only=True, frozen=True)
class FrameSettings:
    """How videos are sampled for evaluation (their own settings, not training's)."""

    #: Frames sampled per second of video (the paper gives no evaluation rate; training's 2 fps).
    fps: float = attrs.field(default=2.0, validator=attrs.validators.gt(0.0))
    #: At most this many frames per video, spread over it when more. (SPEC §6: 64)
    max_frames: int = attrs.field(default=64, validator=attrs.validators.ge(1))
    #: At most this many pixels per frame after resizing. (SPEC §6: 250,000)
    max_pixels: int = attrs.field(default=250000, validator=attrs.validators.ge(784))
    #: At least this many pixels per frame; null: the backend's own minimum.
    min_pixels: int | None = attrs.field(default=None, validator=_optional_ge(784))

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.define(kw_only=True, frozen=True)
class EvaluatorOptions:
    """Options every built-in evaluator has (a third-party one may subclass this too)."""

    #: The evaluator's output name (``eval/<checkpoint>/<label>.json``); null: its component
    #: name. Give one to run the same evaluator twice (e.g. two multiple-choice files).
    label: str | None = attrs.field(default=None)


def output_name(spec) -> str:
    """``eval/<checkpoint>/<output_name>.json``: the evaluator's ``label``, else its component name."""
    return getattr(spec.options, "label", None) or spec.name


@attrs.define(frozen=True)
class Checkpoint:
    """One model the stage evaluates: its name in ``eval/<name>/`` and where its weights are."""

    #: ``base``, a train stage's folder name (``0-dpo``), ``final``, or a name made from a path.
    name: str
    #: The model directory (None for a built-in preset: ``source`` says which).
    path: str | None
    #: Human-readable: ``qwen2_vl preset=tiny-random``, a path...
    source: str
    #: Where in the recipe (``eval.checkpoints[1]``).
    where: str = ""
    #: The backend family that loads it (``qwen2_vl``) and its preset, if any (``tiny-random``).
    backend: str = ""
    preset: str | None = None


class ItemStore:
    """Per-item records of one evaluator on one checkpoint (``<evaluator>.jsonl`` beside its JSON).

    Backed by :class:`temple_core.store.ShardedJsonl` keyed by ``item_id``: a record is durable
    once ``add`` returns, so an interrupted run resumes without scoring an item twice."""

    def __init__(self, store, evaluator: str = "?"):
        self._store = store
        self.evaluator = evaluator  # its label, for the errors

    def done_keys(self) -> set:
        return self._store.done_keys()

    def add(self, record: dict[str, Any]) -> None:
        """Write one item's record durably, stamped with when and by which process it was scored."""
        if not isinstance(record, dict) or "item_id" not in record:
            got = f"keys {sorted(map(str, record))}" if isinstance(record, dict) else type(record).__name__
            raise PluginError(f"evaluator {self.evaluator!r} added a record without an 'item_id' ({got}); each record is a dict with its item's id")
        self._store.append({**record, "scored": {"time": time.strftime("%Y-%m-%d %H:%M:%S"), "pid": os.getpid()}})

    def records(self) -> list[dict[str, Any]]:
        return self._store.records()

    @property
    def path(self) -> Path:
        return self._store.merged_path


@attrs.define(kw_only=True)
class RunInfo:
    """What an evaluator may ask about the run being evaluated (all lazy)."""

    run_dir: Path
    recipe: Any
    plugins: Any
    #: ``{absolute video path: where this run uses it}`` for every input and training video.
    _training_videos: Callable[[], dict[str, str]] = attrs.field(alias="training_videos")
    #: ``(captioner, backend)`` of the recipe's generate section, or raises ``RecipeError``.
    _captioner: Callable[[], tuple[Any, Any]] = attrs.field(alias="captioner")

    def training_videos(self) -> dict[str, str]:
        return self._training_videos()

    def captioner(self) -> tuple[Any, Any]:
        return self._captioner()


@attrs.define(kw_only=True)
class EvalRequest:
    """One evaluator on one checkpoint. See the ``register_evaluators`` contract."""

    #: The evaluator's output name (its label, or its component name).
    evaluator: str
    #: Where it is in the recipe (``eval.evaluators[0]``), for error messages.
    where: str
    checkpoint: Checkpoint
    #: The backend for the checkpoint (None when the evaluator does not need one). Lazy: the
    #: model loads on first use.
    backend: Any
    frames: FrameSettings
    items: ItemStore
    #: ``eval/<checkpoint>/``: where the evaluator may write extra files (``<evaluator>.*``).
    out_dir: Path
    #: ``eval/_data/<evaluator>/``: preparations shared by every checkpoint (clip captions...).
    data_dir: Path
    run: RunInfo
    plugins: Any
    seed: int = 0
    #: Texts per forward pass when scoring.
    batch_size: int = 8
    #: ``eval.python``: an interpreter for tools that cannot live in temple's environment.
    python: str | None = None
    rank: int = 0
    world_size: int = 1
    progress: bool = False
    log: Callable[..., None] = print

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def rng(self, *parts: Any) -> random.Random:
        """A random stream that depends only on the seed, the evaluator and ``parts`` (e.g. a video id)."""
        return random.Random(":".join(str(p) for p in (self.seed, self.evaluator, *parts)))

    def share(self, items: list) -> list:
        """This process's share of ``items`` (all of them in a single process)."""
        return shard(list(items), self.rank, self.world_size)
