"""What a component of each plugin kind is: one small base class per kind.

A hook ``register_<kind>(register)`` registers factories; what a factory builds must do
what the kind's contract class below says. The built-in plugins subclass these classes; a
third-party plugin may subclass them too (recommended: the defaults and the docstrings come
with them) or only provide the same methods -- its factory is checked at registration
either way (:func:`check_component`), and a capability it does not declare takes the
contract's default.

*Capabilities* are class attributes that tell the stages what a component needs or gives,
declared once here with their defaults (``CaptionGenerator.needs_backend``,
``Trainer.data_kind``, ``Exporter.suffix``). The stages read them through
:attr:`temple_core.plugins.Component.capabilities`, never by probing a component.

The model backend's contract is larger; it lives with the model machinery in
:class:`temple_core.models.backend.Backend` and is re-exported here.
"""

from __future__ import annotations

import random
from abc import abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from temple_core.models.backend import Backend

if TYPE_CHECKING:  # for the annotations only: the contracts import nothing heavy
    import numpy as np

    from temple_core.evaluation.request import EvalRequest
    from temple_core.evaluation.results import EvalResult
    from temple_core.records import CaptionRecord, Pair, Perturbed, ShotDetection, VideoRecord
    from temple_core.training.context import TrainStageContext
    from temple_core.video.source import VideoSource


class Contract:
    """Base of the contract classes: the methods a component must have, its capabilities."""

    #: Methods every component of the kind provides (checked when a plugin registers it).
    required: ClassVar[tuple[str, ...]] = ()
    #: Capability attributes and their defaults, for components that do not declare them.
    capabilities: ClassVar[dict[str, Any]] = {}


class ShotDetector(Contract):
    """Video -> shots (hook ``register_shot_detectors``).

    Take what you need from *one* pass of ``video.iter_frames(width, height, format=...)``:
    the select stage sets ``video.record_gray_range`` so that the same pass also records each
    frame's grayscale range (a detector that decodes by other means costs the stage a second
    pass). Keep memory independent of the video's length (stream; do not collect the frames).
    Raise :class:`temple_core.errors.VideoError` for a video that cannot be read
    (``iter_frames`` already raises it for undecodable and truncated files: let it propagate).
    """

    required = ("detect",)

    @abstractmethod
    def detect(self, video: "VideoSource") -> "ShotDetection":
        """``shots`` (``[start, end]`` frame ranges, inclusive, in time order; frames inside a
        gradual transition may lie between shots), ``fps``, ``num_frames`` (the frames that
        decoded), optionally per-frame ``scores``."""
        raise NotImplementedError


class SimilarityEncoder(Contract):
    """Frames -> L2-normalised embeddings (hook ``register_similarity_encoders``)."""

    required = ("encode",)

    @abstractmethod
    def encode(self, frames: "list[np.ndarray]") -> "np.ndarray":
        """``frames``: RGB ``uint8`` arrays ``(H, W, 3)`` at any size (resize inside). Returns
        ``(len(frames), D)`` ``float32`` rows of unit L2 norm, so that the cosine similarity of
        two frames is the dot product of their rows. ``encode([])`` returns ``(0, D)`` and
        loads the model: the stage calls it once before any video so that a bad checkpoint
        fails early with a :class:`temple_core.errors.TempleError` naming the path."""
        raise NotImplementedError


class Perturbation(Contract):
    """An ordered sequence (the clips of a video) + difficulty r -> perturbed sequence
    (hook ``register_perturbations``)."""

    required = ("__call__",)

    @abstractmethod
    def __call__(self, items: Sequence, difficulty: int, rng: random.Random) -> "Perturbed":
        """``difficulty`` is SPEC §3's factor r (larger r = stronger perturbation). The result's
        ``kept_indices[j]`` is the index in ``items`` of ``items_out[j]``, so that
        ``[items[i] for i in kept_indices] == result.items`` always holds. All randomness
        comes from ``rng`` (same state, same result); ``items`` is never modified."""
        raise NotImplementedError


class CaptionGenerator(Contract):
    """Selected videos (+ a backend) -> clip captions, chosen and rejected responses
    (hook ``register_caption_generators``)."""

    required = ("generate",)
    capabilities = {"needs_backend": True}
    #: Whether ``generate`` must be given a backend (``generate.backend`` in the recipe).
    needs_backend: ClassVar[bool] = True

    @abstractmethod
    def generate(
        self,
        videos: "list[VideoRecord]",
        backend: Backend | None,
        perturbations: "list[tuple[str, Perturbation]]",
        difficulties: list[int],
        rng: list[random.Random],
        *,
        sampling: Any = None,
        seeds: list[int] | None = None,
    ) -> "list[CaptionRecord]":
        """One ``CaptionRecord`` per input video, in input order: its clip captions, its
        chosen response, and one rejected response per (perturbation, difficulty) with the
        kept indices. ``rng[i]`` is video i's own random stream (seeded from the recipe seed
        and its video id), so a video's perturbations do not depend on the batch it lands in.
        ``sampling`` is the recipe's ``generate.sampling``; ``seeds`` one sampling seed per
        video. Both are always passed; a generator without sampling ignores them."""
        raise NotImplementedError


class Trainer(Contract):
    """One training stage (hook ``register_trainers``)."""

    required = ("train",)
    capabilities = {"data_kind": None}
    #: What the stage's data must be: ``"pairs"`` (preference pairs), ``"sft"`` (messages +
    #: videos) or ``None`` (either). Checked against the data file when the recipe is read.
    data_kind: ClassVar[str | None] = None

    @abstractmethod
    def train(self, stage: "TrainStageContext") -> dict[str, Any]:
        """Train on ``stage.data`` starting from ``stage.backend`` (the recipe's model, or the
        previous stage's merged weights), writing ``metrics.jsonl``, ``curves.png``, the
        adapter and the merged model (``merged/``, loadable by the backend's ``path``) into
        ``stage.layout``; return a summary (steps, final loss, ...). Raise
        :class:`temple_core.errors.TempleError` for data it cannot train on."""
        raise NotImplementedError


class Exporter(Contract):
    """Preference pairs -> another tool's dataset format (hook ``register_exporters``)."""

    required = ("export",)
    capabilities = {"suffix": "jsonl"}
    #: The file name ending of what it writes (``generate/export/<name>.<suffix>``).
    suffix: ClassVar[str] = "jsonl"

    @abstractmethod
    def export(self, pairs: "list[Pair]", out_path: Path) -> int:
        """Write the file at ``out_path`` (parents created); return the number of records
        written. Zero pairs writes an empty file and warns; it is not an error."""
        raise NotImplementedError


class Evaluator(Contract):
    """A checkpoint (+ a backend) and held-out data -> a score with its interval, per-item
    records (hook ``register_evaluators``).

    The ``eval`` stage calls both methods, once per checkpoint. The request
    (:class:`temple_core.evaluation.request.EvalRequest`) gives the checkpoint (``name``,
    ``path``), its ``backend`` (loaded lazily, with the evaluation frame settings applied;
    ``None`` when the evaluator does not need one), the ``frames`` settings, a ``data_dir``
    for checkpoint-independent preparations (cached across checkpoints), ``seed`` /
    ``rng(*parts)`` for all randomness, ``batch_size``, the run (``run.training_videos()`` to
    refuse held-out overlap, ``run.captioner()``), the plugin manager to build
    sub-components (perturbations) and ``python`` (``eval.python``). Options classes may
    subclass :class:`temple_core.evaluation.request.EvaluatorOptions` for ``label`` (the
    output name, so one evaluator can run twice on different data). Errors a user can cause
    (a missing data file, held-out videos that are training videos) are
    :class:`temple_core.errors.TempleError` naming the recipe key (``request.where``).
    """

    required = ("score", "result")
    capabilities = {"needs_backend": True, "shards_items": True, "needs_python": False}
    #: The stage loads the checkpoint through the backend and hands it over.
    needs_backend: ClassVar[bool] = True
    #: Every process of a launch scores its share (``request.share(items)``); ``False``: the
    #: main process alone runs ``score`` (e.g. a subprocess bridge).
    shards_items: ClassVar[bool] = True
    #: It runs in another Python environment: the recipe must give ``eval.python``.
    needs_python: ClassVar[bool] = False

    @abstractmethod
    def score(self, request: "EvalRequest") -> None:
        """Write one record per item with ``request.items.add(record)`` (each carries its
        ``item_id``). ``request.items.done_keys()`` are the items finished before an
        interruption: skip them, so a killed run never scores an item twice."""
        raise NotImplementedError

    @abstractmethod
    def result(self, request: "EvalRequest", records: list[dict[str, Any]]) -> "EvalResult":
        """Every record (all processes, merged) -> the headline ``score`` with its 95%
        ``interval``, what it is (``metric``), the item count and every other number
        (``metrics``): ``temple_core.evaluation.EvalResult(score=..., interval=[low, high] or
        None, metric="...", n=..., metrics={...})``. The stage writes
        ``eval/<checkpoint>/<evaluator>.json`` from it."""
        raise NotImplementedError


#: The contract of each plugin kind.
CONTRACTS: dict[str, type] = {
    "shot_detectors": ShotDetector,
    "similarity_encoders": SimilarityEncoder,
    "perturbations": Perturbation,
    "caption_generators": CaptionGenerator,
    "backends": Backend,
    "trainers": Trainer,
    "exporters": Exporter,
    "evaluators": Evaluator,
}

_CAPABILITY_TYPES = {
    "needs_backend": (bool,), "data_kind": (str, type(None)), "suffix": (str,), "shards_items": (bool,), "needs_python": (bool,),
}
_DATA_KINDS = ("pairs", "sft", None)


def check_component(kind: str, name: str, factory) -> dict[str, Any]:
    """Check what a plugin registers against its kind's contract; return its capabilities.

    A class factory must have the contract's methods; a plain function factory is checked
    when it builds its component (see :func:`check_built`). Raises ``TypeError`` saying what
    is missing."""
    contract = CONTRACTS[kind]
    required = getattr(contract, "required", ())
    if isinstance(factory, type):
        missing = [m for m in required if not _implements(factory, contract, m)]
        if missing:
            raise TypeError(f"{kind} '{name}' ({factory.__name__}) lacks {', '.join(missing)} of {contract.__qualname__}")
    capabilities = {}
    for key, default in getattr(contract, "capabilities", {}).items():
        value = getattr(factory, key, default)
        if not isinstance(value, _CAPABILITY_TYPES.get(key, (object,))):
            raise TypeError(f"{kind} '{name}': capability {key} = {value!r} has the wrong type")
        if key == "data_kind" and value not in _DATA_KINDS:
            raise TypeError(f"{kind} '{name}': data_kind must be 'pairs', 'sft' or None, got {value!r}")
        capabilities[key] = value
    return capabilities


def _implements(cls: type, contract: type, method: str) -> bool:
    """``cls`` has ``method``, and not only the contract's abstract placeholder (``object``'s
    and the metaclass's ``__call__`` do not count either)."""
    for klass in cls.__mro__:
        if klass is object:
            break
        if method in vars(klass):
            attr = vars(klass)[method]
            return callable(getattr(cls, method)) and not getattr(attr, "__isabstractmethod__", False)
    return False


def check_built(kind: str, name: str, component) -> None:
    """What a factory built has the contract's methods (``TypeError`` otherwise)."""
    contract = CONTRACTS[kind]
    missing = [
        m for m in getattr(contract, "required", ())
        if not callable(getattr(component, m, None)) or getattr(getattr(component, m), "__isabstractmethod__", False)
    ]
    if missing:
        raise TypeError(f"{kind} '{name}' built a {type(component).__name__} without {', '.join(missing)} of {contract.__qualname__}")


def render_markdown() -> str:
    """The contracts as docs/plugins.md shows them (a test checks that the page is current):
    per kind, the contract class, its capabilities with their defaults, and its methods."""
    import inspect

    out = []
    for kind, contract in CONTRACTS.items():
        out.append(f"### `register_{kind}`: `{contract.__module__}.{contract.__qualname__}`")
        out.append("")
        for paragraph in (inspect.getdoc(contract) or "").split("\n\n"):
            out += [" ".join(paragraph.split()), ""]
        for key, default in getattr(contract, "capabilities", {}).items():
            out.append(f"- capability `{key}` (default `{default!r}`)")
        for method in getattr(contract, "required", ()):
            function = getattr(contract, method)
            signature = str(inspect.signature(function)).replace('"', "")
            text = " ".join((inspect.getdoc(function) or "").split())
            out.append(f"- `{method}{signature}`" + (f": {text}" if text else ""))
        out.append("")
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":  # python -m temple_core.contracts: the section of docs/plugins.md
    from temple_core import contracts

    print(contracts.render_markdown(), end="")
