"""The eval stage's loop: checkpoints x evaluators, per-item resumable, results written once.

Per checkpoint its backend is built once (the model loads on first use) and shared by the
evaluators; per (checkpoint, evaluator) the evaluator scores this process's share of the items
into ``<evaluator>.rank<r>.jsonl``, rank 0 merges the shards into ``<evaluator>.jsonl`` and
writes ``<evaluator>.json`` from the evaluator's ``result``. A present JSON means done: a
re-run (after a kill) skips it, and inside an unfinished one the evaluator skips the items
already recorded.
"""

from __future__ import annotations

import gc
import time
from pathlib import Path
from typing import Any

from temple_core.errors import RecipeError
from temple_core.evaluation import checkpoints as ckpts
from temple_core.evaluation.heldout import training_videos
from temple_core.evaluation.request import EvalRequest, ItemStore, RunInfo
from temple_core.evaluation.results import format_score, read_result, write_result
from temple_core.store import ShardedJsonl


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
        if getattr(captioner, "needs_backend", False):
            if generate.backend is None:
                raise RecipeError("generate.backend", f"captioner '{generate.captioner.name}' needs a backend")
            backend = generate.backend.build(ctx.plugins)
        return captioner, backend

    return _once(build)


def run_stage(ctx) -> dict[str, Any]:
    from temple_core.stages.eval import output_name

    config = ctx.recipe.eval
    log = print if ctx.is_main else (lambda *a, **k: None)
    eval_dir = ctx.stage_dir("eval")
    resolved = ckpts.resolve(ctx.recipe, ctx.run_dir)
    if ctx.is_main:  # the order the recipe gives, for the report and temple compare
        write_index(eval_dir / "index.json", {
            "checkpoints": [{"name": c.name, "path": c.path, "source": c.source} for c, _ in resolved],
            "evaluators": [output_name(spec) for spec in config.evaluators]})
    run = RunInfo(run_dir=Path(ctx.run_dir), recipe=ctx.recipe, plugins=ctx.plugins,
                  training_videos=_once(lambda: training_videos(ctx)), captioner=_captioner_of(ctx))
    evaluators = [(output_name(spec), spec, spec.build(ctx.plugins), f"eval.evaluators[{i}]")
                  for i, spec in enumerate(config.evaluators)]
    results = []
    for checkpoint, spec in resolved:
        backend_spec = ckpts.with_frames(spec, config.frames)
        backend = None
        out_dir = eval_dir / checkpoint.name
        out_dir.mkdir(parents=True, exist_ok=True)
        for label, espec, evaluator, where in evaluators:
            out = out_dir / f"{label}.json"
            done = read_result(out)
            if done is not None:
                log(f"[eval] {checkpoint.name}: {label} done earlier: {format_score(done['score'], done.get('interval'))}")
                results.append(_row(done))
                continue
            needs_backend = getattr(evaluator, "needs_backend", True)
            if needs_backend and backend is None:
                backend = backend_spec.build(ctx.plugins)
            store = ShardedJsonl(out_dir, label, key="item_id", rank=ctx.rank, world_size=ctx.world_size)
            request = EvalRequest(
                evaluator=label, where=where, checkpoint=checkpoint, backend=backend if needs_backend else None,
                frames=config.frames, items=ItemStore(store), out_dir=out_dir, data_dir=eval_dir / "_data" / label,
                run=run, plugins=ctx.plugins, seed=ctx.recipe.seed, batch_size=config.batch_size, python=config.python,
                rank=ctx.rank, world_size=ctx.world_size, progress=ctx.progress, log=log,
            )
            request.data_dir.mkdir(parents=True, exist_ok=True)
            log(f"[eval] {checkpoint.name}: {label} ({espec.name}) on {checkpoint.source}")
            started, began = time.strftime("%Y-%m-%d %H:%M:%S"), time.time()
            if getattr(evaluator, "shards_items", True) or ctx.is_main:
                evaluator.score(request)
            ctx.barrier()
            if ctx.is_main:
                store.merge()
                result = evaluator.result(request, store.records())
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
                log(f"[eval] {checkpoint.name}: {label} = {format_score(result.score, result.interval)} ({result.metric}; {result.n} items)")
            ctx.barrier()
            data = read_result(out)
            if data is not None:
                results.append(_row(data))
        del backend
        gc.collect()  # one checkpoint's model at a time
    return {"checkpoints": [c.name for c, _ in resolved], "results": results}


def _row(data: dict) -> dict:
    return {k: data.get(k) for k in ("checkpoint", "evaluator", "metric", "score", "interval", "n", "seconds")}


def write_index(path: Path, data: dict) -> None:
    import json

    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(path)
