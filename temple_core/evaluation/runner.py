"""The eval stage's loop: checkpoints x evaluators, per-item resumable, results written once.

Per checkpoint its backend is built once (the model loads on first use) and shared by the
evaluators; per (checkpoint, evaluator) the evaluator scores this process's share of the items
into ``<evaluator>.rank<r>.jsonl``, rank 0 merges the shards into ``<evaluator>.jsonl`` and
writes ``<evaluator>.json`` from the evaluator's ``result``.

Each (checkpoint, evaluator) is a unit of the run's ledger, ``eval/<checkpoint>/<evaluator>``,
like a training stage: its fingerprint is the evaluator's options, the checkpoint, the frame
settings and the seed; its upstream is the stamp of the training stage that made the
checkpoint (none for ``base`` and model directories). A finished unit is skipped, an
interrupted one resumes (the evaluator skips the items already recorded), an outdated one --
the evaluator's options changed, or its checkpoint was trained again -- has its files moved
aside and starts afresh.
"""

from __future__ import annotations

import gc
import time
from pathlib import Path
from typing import Any

import attrs

from temple_core.errors import PluginError, RecipeError
from temple_core.evaluation import checkpoints as ckpts
from temple_core.evaluation.heldout import training_videos
from temple_core.evaluation.request import EvalRequest, ItemStore, RunInfo, output_name
from temple_core.evaluation.results import EvalResult, format_score, read_result, write_result
from temple_core.store import ShardedJsonl, fingerprint, write_json_atomic
from temple_core.store.layout import STALE


def _once(fn):
    """``fn()``, computed on first call and kept."""
    cache: dict[str, Any] = {}

    def get():
        if "value" not in cache:
            cache["value"] = fn()
        return cache["value"]

    return get


def _captioner_of(ctx):
    """``(captioner, backend)`` of the recipe's generate section, built on first use."""

    def build():
        generate = ctx.recipe.generate
        if generate is None:
            raise RecipeError("generate", "clip captions by the run's captioner need a generate section (or give ground truth)")
        captioner = generate.captioner.build(ctx.plugins)
        backend = None
        if ctx.plugins.get("caption_generators", generate.captioner.name).capability("needs_backend"):
            if generate.backend is None:
                raise RecipeError("generate.backend", f"captioner '{generate.captioner.name}' needs a backend")
            backend = generate.backend.build(ctx.plugins)
        return captioner, backend

    return _once(build)


def run_stage(ctx) -> dict[str, Any]:
    config = ctx.recipe.eval
    log = print if ctx.is_main else (lambda *a, **k: None)
    layout = ctx.layout
    ctx.stage_dir("eval")
    resolved = ckpts.resolve(ctx.recipe, ctx.run_dir)
    if ctx.is_main:  # the order the recipe gives, for the report and temple compare
        write_index(layout.eval_index, {
            "checkpoints": [{"name": c.name, "path": c.path, "source": c.source} for c, _ in resolved],
            "evaluators": [output_name(spec) for spec in config.evaluators]})
    run = RunInfo(run_dir=Path(ctx.run_dir), recipe=ctx.recipe, plugins=ctx.plugins,
                  training_videos=_once(lambda: training_videos(ctx)), captioner=_captioner_of(ctx))
    evaluators = [(output_name(spec), spec, spec.build(ctx.plugins), f"eval.evaluators[{i}]")
                  for i, spec in enumerate(config.evaluators)]
    labels = [label for label, *_ in evaluators]
    ledger = ctx.ledger
    results = []
    for checkpoint, spec in resolved:
        backend_spec = ckpts.with_frames(spec, config.frames)
        backend = None
        out_dir = layout.eval_checkpoint(checkpoint.name)
        out_dir.mkdir(parents=True, exist_ok=True)
        for label, espec, evaluator, where in evaluators:
            out = layout.eval_result(checkpoint.name, label)
            unit = f"eval/{checkpoint.name}/{label}"
            fp = fingerprint({
                "seed": ctx.recipe.seed, "evaluator": espec.to_data(), "checkpoint": attrs.asdict(checkpoint),
                "frames": config.frames.to_dict(), "batch_size": config.batch_size, "python": config.python,
            })
            upstream = _checkpoint_upstream(ctx, checkpoint)
            done = ledger.finished(unit, fp, upstream, out)
            data = read_result(out) if done is not None else None
            if data is not None:
                log(f"[eval] {checkpoint.name}: {label} done earlier: {format_score(data['score'], data.get('interval'))}")
                results.append(_row(data))
                continue
            ctx.barrier()  # every process has read the ledger before the main one writes it
            if ctx.is_main:
                ledger.begin(unit, _unit_files(out_dir, label, labels), fp, upstream)
            ctx.barrier()
            capabilities = ctx.plugins.get("evaluators", espec.name).capabilities
            needs_backend = capabilities["needs_backend"]
            if needs_backend and backend is None:
                backend = backend_spec.build(ctx.plugins)
            store = ShardedJsonl(out_dir, label, key="item_id", rank=ctx.rank, world_size=ctx.world_size)
            request = EvalRequest(
                evaluator=label, where=where, checkpoint=checkpoint, backend=backend if needs_backend else None,
                frames=config.frames, items=ItemStore(store, label), out_dir=out_dir, data_dir=layout.eval_data(label),
                run=run, plugins=ctx.plugins, seed=ctx.recipe.seed, batch_size=config.batch_size, python=config.python,
                rank=ctx.rank, world_size=ctx.world_size, progress=ctx.progress, log=log,
            )
            request.data_dir.mkdir(parents=True, exist_ok=True)
            log(f"[eval] {checkpoint.name}: {label} ({espec.name}) on {checkpoint.source}")
            started, began = time.strftime("%Y-%m-%d %H:%M:%S"), time.time()
            if capabilities["shards_items"] or ctx.is_main:
                evaluator.score(request)
            ctx.barrier()
            if ctx.is_main:
                store.merge()
                result = evaluator.result(request, store.records())
                if not isinstance(result, EvalResult):
                    raise PluginError(
                        f"evaluator {espec.name!r} ({where}): result() returned {type(result).__name__}; it returns "
                        "temple_core.evaluation.EvalResult(score=..., interval=..., metric=..., n=..., metrics={...})"
                    )
                data = {
                    "evaluator": label,
                    "component": espec.name,
                    "checkpoint": checkpoint.name,
                    "model": checkpoint.path or checkpoint.source,
                    "backend": backend.describe() if backend is not None else backend_spec.name,
                    "metric": result.metric,
                    "score": result.score,
                    "interval": result.interval,
                    "n": result.n,
                    "metrics": result.metrics,
                    "settings": {
                        "frames": ckpts.frame_settings_of(backend, config.frames) if backend is not None else config.frames.to_dict(),
                        "options": espec.to_data(),
                        "batch_size": config.batch_size,
                        "seed": ctx.recipe.seed,
                    },
                    "records": store.merged_path.name,
                    "started": started,
                    "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
                    "seconds": round(time.time() - began, 2),
                }
                write_result(out, data)
                ledger.finish(unit, fp, upstream, _row(data), data["seconds"])
                log(f"[eval] {checkpoint.name}: {label} = {format_score(result.score, result.interval)} ({result.metric}; {result.n} items)")
            ctx.barrier()
            data = read_result(out)
            if data is not None:
                results.append(_row(data))
        del backend
        gc.collect()  # one checkpoint's model at a time
    return {"checkpoints": [c.name for c, _ in resolved], "results": results}


def _checkpoint_upstream(ctx, checkpoint) -> str | None:
    """The ledger stamp of the training stage whose merged weights ``checkpoint`` is."""
    train = ctx.recipe.train
    if train is None or checkpoint.path is None:
        return None
    for stage in train.stages:
        if Path(checkpoint.path) == ctx.layout.train_stage(stage.index, stage.name).merged:
            return ctx.ledger.stamp(f"train/{stage.dir_name}")
    return None


def _unit_files(out_dir: Path, label: str, labels: list[str]) -> list[Path]:
    """What one evaluator writes for one checkpoint: ``<label>.json``, ``<label>.jsonl``, its
    shards and extra files ``<label>.*`` -- not those of another label that starts ``<label>.``."""
    others = [other for other in labels if other != label and other.startswith(f"{label}.")]
    return [
        path for path in sorted(out_dir.glob(f"{label}.*"))
        if STALE not in path.name and not any(path.name.startswith(f"{other}.") for other in others)
    ]


def _row(data: dict) -> dict:
    return {k: data.get(k) for k in ("checkpoint", "evaluator", "metric", "score", "interval", "n", "seconds")}


def write_index(path: Path, data: dict) -> None:
    write_json_atomic(path, data)
