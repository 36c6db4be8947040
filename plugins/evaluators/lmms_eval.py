"""``lmms_eval``: run lmms-eval's benchmarks on a checkpoint, in lmms-eval's own Python.

lmms-eval (``tasks: [videomme, mlvu_dev, vinoground, tempcompass_multi_choice]``, or local
tasks with ``include_path``) needs torchvision, which temple's environment must not have, so
it runs as a subprocess of ``eval.python`` -- an interpreter of an environment with lmms-eval,
torchvision and temple installed (``scripts/lmms_eval_bridge.sh`` builds one). By default it
scores through temple's own model class (``--model temple``, entry point ``lmms_eval.models``:
temple's backends, video path and frame settings, see ``temple_core.evaluation.lmms_model``);
``model: qwen2_vl`` (any lmms-eval model) runs lmms-eval's own implementation on the merged
folder instead, with ``model_args`` passed through.

The evaluation frame settings (``eval.frames``) go to the model: ``fps``, ``max_frames``,
``max_pixels``, ``min_pixels`` for ``temple``; for lmms-eval's own Qwen models
``max_pixels``, ``min_pixels`` and ``max_num_frames``. Outputs:
``eval/<checkpoint>/<label>.lmms/`` (lmms-eval's results and samples, its log; with
``response_cache`` its answer cache, lmms-eval's ``--use_cache``, so that a re-run after an
interruption reuses the answers it has), and as for every evaluator ``<label>.json`` (the headline: ``metric``, by default
the first task's first metric; every task's metrics in ``metrics``) with per-sample records in
``<label>.jsonl``. The interval is ``value +- 1.96 x stderr`` where lmms-eval reports a
standard error (a normal approximation), else none.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import attrs

from temple_core.config import path_field
from temple_core.contracts import Evaluator
from temple_core.errors import RecipeError, TempleError
from temple_core.evaluation import EvalResult, EvaluatorOptions
from temple_core.hookspecs import hookimpl
from temple_core.store.files import write_text_atomic

#: lmms-eval's own models that take Qwen-style frame arguments.
QWEN_NATIVE = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl")


def _tasks(instance, attribute, value):
    if not value:
        raise ValueError("needs at least one lmms-eval task (e.g. [vinoground])")


class LmmsEval(Evaluator):
    """lmms-eval benchmarks in lmms-eval's own environment (subprocess), scored through temple's backend."""

    needs_backend = False  # the subprocess loads the checkpoint itself
    shards_items = False  # one lmms-eval run (it launches its own processes if asked)
    needs_python = True  # eval.python: an interpreter with lmms-eval and torchvision

    @attrs.define(kw_only=True, frozen=True)
    class Options(EvaluatorOptions):
        #: lmms-eval task names (``videomme``, ``mlvu_dev``, ``vinoground``, ``tempcompass_multi_choice``...).
        tasks: list[str] = attrs.field(factory=list, validator=_tasks)
        #: A folder of extra task YAMLs (lmms-eval's ``--include_path``), e.g. local benchmarks.
        include_path: str | None = path_field(None, kind="dir")
        #: ``temple`` (temple's backends inside lmms-eval) or an lmms-eval model name (``qwen2_vl``...).
        model: str = "temple"
        #: Extra model arguments (``key: value``), after the ones temple sets.
        model_args: dict[str, str] = attrs.Factory(dict)
        #: lmms-eval's ``--batch_size``.
        batch_size: int = attrs.field(default=1, validator=attrs.validators.ge(1))
        #: Score at most this many documents per task (lmms-eval's ``--limit``); null: all.
        limit: int | None = None
        #: The headline ``task,metric`` (as in lmms-eval's results, e.g. ``vinoground,vinoground_score``); null: the first.
        metric: str | None = None
        #: More command-line arguments for lmms-eval.
        extra_args: list[str] = attrs.Factory(list)
        #: Extra environment variables for the subprocess (e.g. HF_HOME where the benchmark videos are).
        env: dict[str, str] = attrs.Factory(dict)
        #: Seconds before the run is stopped; null: no limit.
        timeout: int | None = None
        #: lmms-eval's response cache (``--use_cache``): a re-run after an interruption reuses the
        #: answers it has. Off by default: in lmms-eval 0.7.3 it breaks log-likelihood tasks.
        response_cache: bool = False

    def __init__(self, options: "LmmsEval.Options"):
        self.options = options

    # -- the command ------------------------------------------------------------------------
    def model_args(self, request) -> str:
        o, c, f = self.options, request.checkpoint, request.frames
        args: dict[str, Any] = {}
        if o.model == "temple":
            args["backend"] = c.backend
            if c.path:
                args["path"] = c.path
            elif c.preset:
                args["preset"] = c.preset
            args.update(fps=f.fps, max_frames=f.max_frames, max_pixels=f.max_pixels)
            if f.min_pixels:
                args["min_pixels"] = f.min_pixels
        else:
            if not c.path:
                raise RecipeError(f"{request.where}.model", f"lmms-eval's {o.model!r} loads a model directory; checkpoint {c.name!r} is a preset")
            args["pretrained"] = c.path
            if o.model in QWEN_NATIVE:
                args.update(max_pixels=f.max_pixels, max_num_frames=f.max_frames)
                if f.min_pixels:
                    args["min_pixels"] = f.min_pixels
        args.update(o.model_args)
        return ",".join(f"{k}={v}" for k, v in args.items())

    def command(self, request, out: Path) -> list[str]:
        o = self.options
        cmd = [request.python, "-m", "lmms_eval", "--model", o.model, "--model_args", self.model_args(request),
               "--tasks", ",".join(o.tasks), "--batch_size", str(o.batch_size), "--output_path", str(out / "output"),
               "--log_samples", "--seed", str(request.seed)]
        if o.response_cache:
            cmd += ["--use_cache", str(out / "cache")]
        if o.include_path:
            cmd += ["--include_path", str(Path(o.include_path).expanduser().resolve())]
        if o.limit is not None:
            cmd += ["--limit", str(o.limit)]
        return cmd + list(o.extra_args)

    def _folder(self, request) -> Path:
        return request.out_dir / f"{request.evaluator}.lmms"

    # -- running ----------------------------------------------------------------------------
    def score(self, request) -> None:
        out = self._folder(request)
        out.mkdir(parents=True, exist_ok=True)
        results = out / "results.json"
        if not results.is_file():
            cmd = self.command(request, out)
            log = out / "log.txt"
            env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", **self.options.env}
            request.log(f"[eval] {request.checkpoint.name}: lmms-eval {' '.join(self.options.tasks)} in {request.python} (log: {log})")
            started = time.time()
            with open(log, "w", encoding="utf-8") as handle:
                handle.write(" ".join(cmd) + "\n\n")
                handle.flush()
                try:
                    code = subprocess.run(cmd, stdout=handle, stderr=subprocess.STDOUT, env=env, timeout=self.options.timeout).returncode
                except subprocess.TimeoutExpired:
                    raise TempleError(f"{request.where}: lmms-eval ran past timeout {self.options.timeout} s (log: {log})") from None
            tail = log.read_text(encoding="utf-8", errors="replace")[-2500:]
            found = sorted((out / "output").rglob("*_results.json"), key=lambda p: p.stat().st_mtime)
            if code != 0 or not found:
                raise TempleError(f"{request.where}: lmms-eval exited with {code} after {time.time() - started:.0f} s "
                                  f"{'' if found else 'without results '}(log: {log}):\n{tail}")
            data = json.loads(found[-1].read_text())
            data["temple_samples"] = [str(p) for p in sorted(found[-1].parent.glob(f"{found[-1].name.split('_results')[0]}_samples_*.jsonl"))]
            write_text_atomic(results, json.dumps(data, indent=2, default=str))
        data = json.loads(results.read_text())
        done = request.items.done_keys()
        for path in data.get("temple_samples", []):
            task = Path(path).stem.split("_samples_", 1)[1]
            with open(path, encoding="utf-8") as handle:
                for line in handle:
                    if not line.strip():
                        continue
                    sample = json.loads(line)
                    key = f"{task}:{sample.get('doc_id')}"
                    if key in done:
                        continue
                    record = {"item_id": key, "task": task, "doc_id": sample.get("doc_id"), "target": sample.get("target"),
                              "response": sample.get("filtered_resps", sample.get("resps"))}
                    record.update({k: v for k, v in sample.items() if isinstance(v, (int, float)) and k != "doc_id"})
                    request.items.add(record)
                    done.add(key)

    def result(self, request, records: list[dict]) -> EvalResult:
        data = json.loads((self._folder(request) / "results.json").read_text())
        metrics: dict[str, dict[str, Any]] = {}
        for task, values in (data.get("results") or {}).items():
            for key, value in values.items():
                name, _, filt = key.partition(",")
                if isinstance(value, (int, float)) and not isinstance(value, bool) and "_stderr" not in name:
                    stderr = values.get(f"{name}_stderr,{filt}") if filt else values.get(f"{name}_stderr")
                    metrics.setdefault(task, {})[name] = {"value": value, "stderr": stderr if isinstance(stderr, (int, float)) else None}
        if not metrics:
            raise TempleError(f"{request.where}: lmms-eval's results hold no numeric metric ({self._folder(request) / 'results.json'})")
        if self.options.metric:
            task, _, name = self.options.metric.partition(",")
            if task not in metrics or name not in metrics[task]:
                known = ", ".join(f"{t},{m}" for t, ms in metrics.items() for m in ms)
                raise RecipeError(f"{request.where}.metric", f"{self.options.metric!r} is not in lmms-eval's results ({known})")
        else:
            task = next(t for t in self.options.tasks if t in metrics) if any(t in metrics for t in self.options.tasks) else next(iter(metrics))
            name = next(iter(metrics[task]))
        head = metrics[task][name]
        interval = [head["value"] - 1.96 * head["stderr"], head["value"] + 1.96 * head["stderr"]] if head["stderr"] else None
        samples = data.get("n-samples", {}).get(task, {})
        n = samples.get("effective") or samples.get("original") or sum(1 for r in records if r.get("task") == task)
        return EvalResult(score=float(head["value"]), interval=interval, n=int(n), metric=f"lmms-eval {task},{name}",
                          metrics={"tasks": metrics, "lmms_eval_version": (data.get("lmms_eval_version") or data.get("git_hash")),
                                   "command": " ".join(self.command(request, self._folder(request)))})


@hookimpl
def register_evaluators(register):
    register("lmms_eval", LmmsEval)
