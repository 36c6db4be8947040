"""The ``eval`` stage: score checkpoints of the run with evaluators (after ``train``).

``eval.checkpoints`` names the weights (``base``, a train stage, ``final``, a model directory;
see :mod:`temple_core.evaluation.checkpoints`), ``eval.evaluators`` the evaluators (plugin
kind ``evaluators``: ``temporal_order``, ``multiple_choice``, ``lmms_eval``...). Every
checkpoint is loaded with the evaluation frame settings ``eval.frames`` (SPEC §6: at most
250,000 pixels and 64 frames), which are recorded next to every score. Results:
``eval/<checkpoint>/<evaluator>.json`` with per-item records in ``<evaluator>.jsonl``;
a killed run resumes without scoring a finished item again. ``temple run RECIPE --stages eval``
evaluates a finished run alone.
"""

from __future__ import annotations

import attrs

from temple_core.config import ComponentSpec, Section, component_field, path_field
from temple_core.errors import RecipeError
from temple_core.evaluation.request import FrameSettings, output_name
from temple_core.store.layout import safe_component


@attrs.define(kw_only=True)
class Config(Section):
    """The recipe's ``eval:`` section."""

    #: What is scored: ``base`` (the starting weights), a train stage by folder (``0-dpo``) or
    #: name, ``final`` (the last stage's merged weights), or a model directory.
    checkpoints: list[str] = attrs.Factory(lambda: ["base", "final"])
    #: The evaluators, each ``{name: ..., label: ..., ...its options}``.
    evaluators: list[ComponentSpec] = component_field("evaluators", [])
    #: How checkpoints are loaded for evaluation (device, dtype...); null: train.backend
    #: (generate.backend for a run that does not train). Needed to score a model directory alone.
    backend: ComponentSpec | None = component_field("backends", None)
    #: Frame sampling for evaluation (SPEC §6), in place of each backend's own.
    frames: FrameSettings = attrs.Factory(FrameSettings)
    #: Texts scored per forward pass (likelihood evaluators).
    batch_size: int = attrs.field(default=8, validator=attrs.validators.ge(1))
    #: A Python interpreter with lmms-eval (and torchvision) installed, for the ``lmms_eval``
    #: evaluator: temple's own environment must not have torchvision.
    python: str | None = path_field(None)


    def check(self, recipe, plugins) -> None:
        from temple_core.evaluation import checkpoints

        if not self.evaluators:
            raise RecipeError("eval.evaluators", "needs at least one evaluator (temporal_order, multiple_choice, lmms_eval...)")
        checkpoints.check(recipe)
        labels: dict[str, int] = {}
        for i, spec in enumerate(self.evaluators):
            label = output_name(spec)
            try:
                safe_component(label, "an evaluator label")
            except ValueError as exc:
                raise RecipeError(f"eval.evaluators[{i}].label", str(exc)) from None
            if label.startswith(("_", ".")):
                raise RecipeError(f"eval.evaluators[{i}].label", f"{label!r} is not a usable file name (it starts with {label[0]!r})")
            if label in labels:
                raise RecipeError(
                    f"eval.evaluators[{i}]",
                    f"a second evaluator writes {label!r} (as eval.evaluators[{labels[label]}] does): give it a label",
                )
            labels[label] = i
            if plugins.get("evaluators", spec.name).capability("needs_python") and self.python is None:
                raise RecipeError(
                    "eval.python",
                    f"evaluator {spec.name!r} runs in its own Python environment: set eval.python to its interpreter "
                    "(e.g. a venv with lmms-eval and torchvision, which temple's environment must not have)",
                )


def outputs(layout, summary: dict) -> list:
    """What a finished ``eval`` vouches for: every (checkpoint, evaluator) result file (a
    deleted one, or a deleted checkpoint folder, is scored again; the rest is kept)."""
    return [layout.eval_result(r["checkpoint"], r["evaluator"]) for r in summary.get("results", [])
            if r.get("checkpoint") and r.get("evaluator")]


def run(ctx) -> dict:
    """Score every checkpoint with every evaluator; a finished (checkpoint, evaluator) is kept."""
    from temple_core.evaluation.runner import run_stage

    return run_stage(ctx)
