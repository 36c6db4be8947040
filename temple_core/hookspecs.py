"""The hook specifications: one ``register_<kind>(register)`` hook per extension kind.

A plugin is a module with functions decorated by :data:`hookimpl`. For every component it
offers it calls ``register(name, factory)``:

* ``name`` -- the name a recipe uses to select it (``{name: drop}``); unique per kind.
* ``factory`` -- a callable returning the component, usually the component class itself.
  It is called with one argument, the component's validated *options* object; the options
  class is ``factory.Options`` (an attrs class; every field has a default) or is passed as
  ``register(name, factory, options=SomeOptions)``. A component with no options declares
  none, the recipe may give it none, and its factory is called with no argument.
  ``register(..., summary="...")`` sets the one-line summary shown by
  ``temple plugins list``; it defaults to the first line of the factory's docstring.

Built-in plugins are listed in ``registry.yaml`` and loaded exactly like third-party ones,
which expose a module under the entry-point group ``temple``. See docs/plugins.md.

What a component built by a factory must do is its kind's *contract*: one small class per
kind in :mod:`temple_core.contracts` (the backend's in :class:`temple_core.models.backend.Backend`),
with its methods and its declared capabilities (``needs_backend``, ``data_kind``, ...). A
factory is checked against it when it registers. Errors a user can cause (bad input file,
bad option value discovered late) should be raised as :class:`temple_core.errors.TempleError`
subclasses with a message naming the thing at fault.
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

    Each component is built by ``register(name, factory)``'s factory and follows
    :class:`temple_core.contracts.ShotDetector`.
    """


@hookspec
def register_similarity_encoders(register):
    """Register similarity encoders: frames -> L2-normalised embeddings.

    Each component is built by ``register(name, factory)``'s factory and follows
    :class:`temple_core.contracts.SimilarityEncoder`.
    """


@hookspec
def register_perturbations(register):
    """Register perturbations of an ordered sequence (the clips of a video).

    Each component is built by ``register(name, factory)``'s factory and follows
    :class:`temple_core.contracts.Perturbation`.
    """


@hookspec
def register_caption_generators(register):
    """Register caption generators: selected videos (+ a backend) -> captions and responses.

    Each component is built by ``register(name, factory)``'s factory and follows
    :class:`temple_core.contracts.CaptionGenerator`.
    """


@hookspec
def register_backends(register):
    """Register model backends: one Video LLM family each.

    Each component is built by ``register(name, factory)``'s factory and follows
    :class:`temple_core.models.backend.Backend`.
    """


@hookspec
def register_trainers(register):
    """Register trainers: one training stage each.

    Each component is built by ``register(name, factory)``'s factory and follows
    :class:`temple_core.contracts.Trainer`.
    """


@hookspec
def register_exporters(register):
    """Register exporters: preference pairs -> another tool's dataset format.

    Each component is built by ``register(name, factory)``'s factory and follows
    :class:`temple_core.contracts.Exporter`.
    """


@hookspec
def register_evaluators(register):
    """Register evaluators: a checkpoint (+ a backend) and held-out data -> scores with intervals.

    Each component is built by ``register(name, factory)``'s factory and follows
    :class:`temple_core.contracts.Evaluator`.
    """
