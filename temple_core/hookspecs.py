"""The hook specifications: one ``register_<kind>(register)`` hook per extension kind.

A plugin is a module with functions decorated by :data:`hookimpl`. For every component it
offers it calls ``register(name, factory)``:

* ``name`` -- the name a recipe uses to select it (``{name: drop}``); unique per kind.
* ``factory`` -- a callable taking one argument, the component's validated *options*
  object, and returning the component. Usually the component class itself.
  The options class is ``factory.Options`` (an attrs class; every field has a default)
  or is passed as ``register(name, factory, options=SomeOptions)``. A component with no
  options declares none and the recipe may give it none.
  ``register(..., summary="...")`` sets the one-line summary shown by
  ``temple plugins list``; it defaults to the first line of the factory's docstring.

Built-in plugins are listed in ``registry.yaml`` and loaded exactly like third-party ones,
which expose a module under the entry-point group ``temple``. See docs/plugins.md.

The *component contracts* below say what a component built by a factory must do. Errors a
user can cause (bad input file, bad option value discovered late) should be raised as
:class:`temple_core.errors.TempleError` subclasses with a message naming the thing at fault.
"""

from __future__ import annotations

import pluggy

PROJECT = "temple"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

#: The extension kinds, in pipeline order. ``register_<kind>`` is the hook for each.
KINDS = (
    "shot_detectors",
    "similarity_encoders",
    "perturbations",
    "caption_generators",
    "backends",
    "trainers",
    "exporters",
    "evaluators",
)


@hookspec
def register_shot_detectors(register):
    """Register shot detectors: video -> shots.

    Component contract::

        detector.detect(video: temple_core.video.VideoSource) -> temple_core.records.ShotDetection

    ``VideoSource`` is an opened video (path, fps, frame count) that can stream its frames at
    any size in one pass; a detector should take what it needs from *one* pass of
    ``video.iter_frames(width, height, format=...)``: the select stage sets
    ``video.record_gray_range`` so that the same pass also records each frame's grayscale
    range (a detector that decodes by other means costs the stage a second pass). Keep memory
    independent of the video's length (stream; do not collect the frames).
    ``ShotDetection`` carries ``shots`` (a list of ``[start, end]`` frame ranges, inclusive,
    in time order; frames inside a gradual transition may lie between shots), ``fps`` and
    ``num_frames`` (the frames that decoded), and optionally per-frame ``scores``. A detector
    raises :class:`temple_core.errors.VideoError` for a video it cannot read (``iter_frames``
    already raises it for undecodable and truncated files; let it propagate).
    """


@hookspec
def register_similarity_encoders(register):
    """Register similarity encoders: frames -> L2-normalised embeddings.

    Component contract::

        encoder.encode(frames: list[numpy.ndarray]) -> numpy.ndarray

    ``frames`` are RGB ``uint8`` arrays of shape ``(H, W, 3)`` (any size, full resolution:
    resize inside). The result has shape ``(len(frames), D)``, ``float32``, each row of unit
    L2 norm, so that the cosine similarity of two frames is the dot product of their rows.
    ``encode([])`` returns shape ``(0, D)`` and loads the model: the stage calls it once
    before any video so that a bad checkpoint fails early, with a
    :class:`temple_core.errors.TempleError` (e.g. ``ModelError``) naming the path.
    """


@hookspec
def register_perturbations(register):
    """Register perturbations of an ordered sequence (the clips of a video).

    Component contract::

        perturbation(items: Sequence[T], difficulty: int, rng: random.Random)
            -> temple_core.records.Perturbed   # .items: list[T], .kept_indices: list[int]

    ``difficulty`` is the factor r of SPEC §3 (larger r = stronger perturbation).
    ``kept_indices[j]`` is the index in ``items`` of ``Perturbed.items[j]``, so that
    ``[items[i] for i in kept_indices] == Perturbed.items`` always holds. All randomness
    comes from ``rng``: the same ``rng`` state gives the same result. ``items`` is never
    modified.
    """


@hookspec
def register_caption_generators(register):
    """Register caption generators: selected video (+ a backend) -> captions and responses.

    Component contract::

        generator.generate(videos: list[temple_core.records.VideoRecord],
                           backend: object | None,
                           perturbations: list[tuple[str, perturbation]],
                           difficulties: list[int],
                           rng: list[random.Random],      # one stream per video
                           *, sampling=None, seeds=None) -> list[temple_core.records.CaptionRecord]

    One ``CaptionRecord`` per input video, in input order: its clip captions, its chosen
    response, and one rejected response per (perturbation, difficulty) with the kept indices.
    ``rng[i]`` is video i's own random stream (seeded from the recipe seed and its video id),
    so a video's perturbations do not depend on the batch it lands in. ``sampling`` (the
    recipe's ``generate.sampling``) and ``seeds`` (one sampling seed per video) are passed
    only to a ``generate`` that declares them. ``generator.needs_backend`` says whether a
    backend must be given.
    """


@hookspec
def register_backends(register):
    """Register model backends: one Video LLM family each.

    Component contract (see ``temple_core.models.backend.Backend`` for the full protocol)::

        backend.describe() -> str                         # family and model, for provenance
        backend.chat(conversations, **sampling) -> list[str]   # batched generation
        backend.encode_preference(...), backend.encode_sft(...)  # training examples
        backend.collate_preference(...), backend.collate_sft(...)  # padded training batches
        backend.vision_module_names(), backend.lora_target_modules()
        backend.merge_and_save(model, out_dir)

    The model is loaded lazily, on first use, from the ``path`` or ``preset`` option.
    """


@hookspec
def register_trainers(register):
    """Register trainers: one training stage each.

    Component contract::

        trainer.train(stage: temple_core.training.context.TrainStageContext) -> dict

    The stage context gives the backend (loading the starting weights: the recipe's model,
    or the previous stage's merged weights), the data (``kind`` ``pairs`` or ``sft``), the
    stage's output directory, the seed and the process's place in a launch. The trainer
    writes ``metrics.jsonl``, ``curves.png``, the adapter and the merged model
    (``merged/``, loadable by the backend's ``path``) into the output directory and returns
    a summary dict (steps, final loss, ...). A trainer raises
    :class:`temple_core.errors.TempleError` for data it cannot train on.
    """


@hookspec
def register_exporters(register):
    """Register exporters: preference pairs -> another tool's dataset format.

    Component contract::

        exporter.export(pairs: list[temple_core.records.Pair], out_path: pathlib.Path) -> int

    Writes the file at ``out_path`` (parents created) and returns the number of records
    written. Zero pairs writes an empty file and warns; it is not an error.
    """


@hookspec
def register_evaluators(register):
    """Register evaluators: a checkpoint (+ a backend) and held-out data -> scores with intervals.

    Component contract (the ``eval`` stage calls both, once per checkpoint)::

        evaluator.score(request: temple_core.evaluation.EvalRequest) -> None
        evaluator.result(request, records: list[dict]) -> temple_core.evaluation.EvalResult

    ``score`` writes one record per item with ``request.items.add(record)`` (each record
    carries its ``item_id``; ``request.items.done_keys()`` are the items finished before an
    interruption: skip them, so a killed run never scores an item twice). It scores only this
    process's share, ``request.share(items)``. ``result`` turns every record (all processes,
    merged) into an ``EvalResult``: the headline ``score`` with its 95% ``interval``, what the
    score is (``metric``), the item count and every other number in ``metrics``. The stage
    writes ``eval/<checkpoint>/<evaluator>.json`` from it, with the frame settings, the model
    and the times.

    The request gives the checkpoint (``name``, ``path``), its ``backend`` (loaded lazily, with
    the evaluation frame settings applied; ``None`` when the evaluator does not need one), the
    ``frames`` settings, a ``data_dir`` for checkpoint-independent preparations (cached across
    checkpoints), ``seed`` / ``rng(*parts)`` for all randomness, ``batch_size``, the run
    (``run.training_videos()`` to refuse held-out overlap, ``run.captioner()``), the plugin
    manager to build sub-components (perturbations) and ``python`` (``eval.python``).

    Capabilities are class attributes, never discovered from signatures:
    ``needs_backend`` (default True: the stage loads the checkpoint through the backend),
    ``shards_items`` (default True: every process of a launch scores its share; False: the main
    process alone runs ``score``, e.g. a subprocess bridge). Options classes may subclass
    ``temple_core.evaluation.EvaluatorOptions`` for ``label`` (the output name, so one
    evaluator can run twice on different data). Errors a user can cause (a missing data file,
    held-out videos that are training videos) are :class:`temple_core.errors.TempleError`
    naming the recipe key (``request.where``).
    """
