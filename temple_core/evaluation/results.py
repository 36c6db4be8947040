"""Evaluation results on disk: ``eval/<checkpoint>/<evaluator>.json``, and reading them back.

One JSON per (checkpoint, evaluator)::

    {"evaluator": "temporal_order", "component": "temporal_order", "checkpoint": "final",
     "model": "/runs/x/train/4-sft/merged", "metric": "...", "score": 0.61, "interval": [0.55, 0.67],
     "n": 120, "metrics": {...}, "settings": {"frames": {...}, "options": {...}, ...},
     "started": "...", "finished": "...", "seconds": 12.3}

The per-item records are ``<evaluator>.jsonl`` beside it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs

from temple_core.store.files import write_text_atomic
from temple_core.store.layout import STALE, RunLayout


@attrs.define(kw_only=True)
class EvalResult:
    """What an evaluator's ``result`` returns."""

    #: The headline number (an accuracy in 0..1 for the built-ins); None when nothing was scored.
    score: float | None
    #: Its 95% interval ``[low, high]`` (None when it cannot be computed, e.g. one item).
    interval: list[float] | None
    #: What ``score`` is, in words (``length-normalised accuracy, all perturbations x r``).
    metric: str
    #: How many items the score is over.
    n: int
    #: Every other number (per perturbation x r, per-option counts...), JSON-serialisable.
    metrics: dict[str, Any] = attrs.Factory(dict)


def write_result(path: Path, data: dict[str, Any]) -> None:
    """Replace ``path`` all at once (temporary file, made durable, then renamed)."""
    write_text_atomic(path, json.dumps(data, indent=2, default=str))


def read_result(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "score" in data else None


def run_results(run_dir: Path) -> list[dict[str, Any]]:
    """Every result of a run, ordered by checkpoint as the run evaluated them, then evaluator."""
    layout = RunLayout(run_dir)
    eval_dir = layout.eval_dir
    if not eval_dir.is_dir():
        return []
    order: list[str] = []
    evaluators: list[str] = []
    index = layout.eval_index
    if index.is_file():
        try:
            data = json.loads(index.read_text())
            order = [c["name"] for c in data["checkpoints"]]
            evaluators = list(data["evaluators"])
        except (ValueError, KeyError, TypeError):
            order, evaluators = [], []
    folders = [p for p in eval_dir.iterdir() if p.is_dir() and not p.name.startswith((".", "_")) and STALE not in p.name]
    folders.sort(key=lambda p: (order.index(p.name) if p.name in order else len(order), p.name))
    out = []
    for folder in folders:
        files = sorted((f for f in folder.glob("*.json") if STALE not in f.name), key=lambda f: (evaluators.index(f.stem) if f.stem in evaluators else len(evaluators), f.stem))
        for file in files:
            data = read_result(file)
            if data is not None:
                data.setdefault("checkpoint", folder.name)
                data.setdefault("evaluator", file.stem)
                out.append(data)
    return out


def format_score(score, interval) -> str:
    """``0.612 [0.551, 0.668]`` (``-`` when there is no score)."""
    if score is None:
        return "-"
    text = f"{score:.3f}"
    if interval:
        text += f" [{interval[0]:.3f}, {interval[1]:.3f}]"
    return text
