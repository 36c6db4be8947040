"""The ``train`` stage: an ordered list of training stages (DPO curriculum, SFT, any order).

Each entry of ``train.stages`` names its trainer, its data and the trainer's options::

    - {trainer: dpo, difficulty: 16}                 # this run's pairs at r = 16
    - {trainer: dpo, data: other_run/generate/pairs.jsonl, lr: 1e-6}
    - {trainer: dpo, data: other_run/generate/pairs.jsonl, difficulty: 8}   # its r = 8 pairs
    - {trainer: sft, data: examples/sft/sample.jsonl}

After each stage the adapter is merged into the weights; the merged model is the next
stage's starting point (and DPO reference). SPEC §5.
"""

from __future__ import annotations

from typing import Any

import attrs

from temple_core.config import ComponentSpec, Structurer, component_field
from temple_core.errors import RecipeError
from temple_core.stages.runner import move_aside, read_json, write_json

#: Keys of a stage entry that are not the trainer's options.
STAGE_KEYS = ("trainer", "name", "difficulty", "data", "perturbations")


@attrs.define(kw_only=True)
class Stage:
    """One validated entry of ``train.stages``."""

    index: int
    trainer: ComponentSpec
    name: str
    difficulty: int | None = None
    data: str | None = None
    perturbations: list[str] | None = None

    def to_data(self) -> dict[str, Any]:
        """The entry as a recipe would write it."""
        data = {"trainer": self.trainer.name, "name": self.name}
        for key in ("difficulty", "data", "perturbations"):
            if getattr(self, key) is not None:
                data[key] = getattr(self, key)
        options = self.trainer.to_data()
        options.pop("name")
        data.update(options)
        return data

    @property
    def dir_name(self) -> str:
        return f"{self.index}-{self.name}"


@attrs.define(kw_only=True)
class Config:
    """The recipe's ``train:`` section."""

    #: The model trained (may differ from generate.backend: cross-architecture transfer).
    backend: ComponentSpec = component_field("backends")
    #: The training stages, in order: {trainer, difficulty | data, perturbations, name, ...trainer options}.
    stages: list[Any] = attrs.field(factory=list)
    #: Keep each stage's merged weights on disk (the last stage's are always kept).
    keep_merged: bool = True
    #: Another run directory whose SFT stage's loss and grad norm are overlaid on this run's
    #: (``train/sft_compare.png``; the paper's Figure 4: SFT with vs without DPO first).
    compare_with: str | None = None


_KIND_WORDS = {"pairs": "preference pairs", "sft": "SFT samples (messages + videos)"}


def data_kind(path) -> str | None:
    """``pairs`` or ``sft`` from a data file's first line (``None``: empty or neither)."""
    import json

    try:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    record = json.loads(line)
                    break
            else:
                return None
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict):
        return None
    if "chosen" in record and "rejected" in record:
        return "pairs"
    if "messages" in record or "conversations" in record:
        return "sft"
    return None


def check_recipe(recipe, plugins) -> None:
    """Validate each stage entry: the trainer by name, its data, then its own options."""
    config = recipe.train
    if not config.stages:
        raise RecipeError("train.stages", "needs at least one stage")
    structurer = Structurer(plugins)
    stages = []
    for index, entry in enumerate(config.stages):
        path = f"train.stages[{index}]"
        if isinstance(entry, Stage):
            stages.append(entry)
            continue
        if not isinstance(entry, dict):
            raise RecipeError(path, "expected a mapping like {trainer: dpo, difficulty: 16}")
        if "trainer" not in entry:
            raise RecipeError(f"{path}.trainer", "required key is missing (dpo or sft, or a plugin's trainer)")
        options = {k: v for k, v in entry.items() if k not in STAGE_KEYS}
        trainer = structurer.component("trainers", {"name": entry["trainer"], **options}, path)
        if trainer.name != entry["trainer"]:
            raise RecipeError(f"{path}.trainer", "expected a trainer name")
        difficulty = structurer.value(int | None, entry.get("difficulty"), f"{path}.difficulty")
        data = structurer.value(str | None, entry.get("data"), f"{path}.data")
        perturbations = structurer.value(list[str] | None, entry.get("perturbations"), f"{path}.perturbations")
        name = structurer.value(str, entry.get("name", trainer.name), f"{path}.name")
        # With data, difficulty picks that file's pairs at r (another run's pairs: transfer).
        wants = getattr(plugins.get("trainers", trainer.name).factory, "data_kind", None)
        if data is not None:
            from pathlib import Path

            if not Path(data).expanduser().is_file():
                raise RecipeError(f"{path}.data", f"no such file: {data}")
            has = data_kind(Path(data).expanduser())
            if wants is not None and has is not None and has != wants:
                raise RecipeError(
                    f"{path}.data",
                    f"{data} holds {_KIND_WORDS[has]}, but a {trainer.name} stage trains on {_KIND_WORDS[wants]}",
                )
            for key, value in (("difficulty", difficulty), ("perturbations", perturbations)):
                if value is not None and "sft" in (wants, has):
                    raise RecipeError(f"{path}.{key}", f"picks preference pairs; {data} is an SFT file")
        elif wants == "sft" and difficulty is not None:
            raise RecipeError(f"{path}.difficulty", f"a {trainer.name} stage trains on an SFT file: give data, not difficulty")
        elif difficulty is None:
            raise RecipeError(path, "needs its data: difficulty (this run's pairs at that r) or data (a file)")
        elif recipe.generate is not None and difficulty not in recipe.generate.difficulties:
            raise RecipeError(
                f"{path}.difficulty",
                f"this run generates no pairs at r = {difficulty} (generate.difficulties: {recipe.generate.difficulties})",
            )
        stages.append(
            Stage(index=index, trainer=trainer, name=name, difficulty=difficulty, data=data, perturbations=perturbations)
        )
    config.stages = stages


DONE = "_done.json"
STARTED = "_started.json"


def _stage_fingerprint(recipe, stage: Stage, upstream: str | None) -> str:
    import hashlib

    import yaml

    from temple_core.config import unstructure

    payload = yaml.safe_dump(
        {"seed": recipe.seed, "backend": unstructure(recipe.train.backend), "stage": stage.to_data(), "upstream": upstream},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _move_aside(stage_dir, log) -> None:
    aside = move_aside(stage_dir)
    log(f"[train] {stage_dir.name}: its entry or an earlier stage changed; old outputs moved to {aside.name}")


def stage_data(ctx, stage: Stage):
    """``(kind, items)`` for a stage: this run's pairs at its difficulty, a pairs file, or an SFT file."""
    from pathlib import Path

    from temple_core.store import read_jsonl
    from temple_core.training import data as training_data

    if stage.data is None:
        return "pairs", training_data.load_pairs(
            training_data.run_pairs_path(ctx.run_dir), stage.difficulty, stage.perturbations
        )
    path = Path(stage.data).expanduser()
    first = next(iter(read_jsonl(path)), None)
    if first is not None and "chosen" in first and "rejected" in first:
        return "pairs", training_data.load_pairs(path, stage.difficulty, stage.perturbations)
    for key in ("perturbations", "difficulty"):
        if getattr(stage, key) is not None:
            raise RecipeError(f"train.stages[{stage.index}].{key}", f"{path} is an SFT file, not pairs")
    return "sft", training_data.load_sft(path)


def backend_from(spec: ComponentSpec, plugins, start_dir):
    """The stage's backend: the recipe's model for the first stage, else the previous stage's
    merged weights (the backend's ``path`` pointed at ``merged/``)."""
    if start_dir is None:
        return spec.build(plugins), _describe_start(spec)
    options = attrs.evolve(spec.options, **_path_overrides(spec.options, str(start_dir)))
    return ComponentSpec(spec.kind, spec.name, options, spec.path).build(plugins), str(start_dir)


def _path_overrides(options, path: str) -> dict[str, Any]:
    names = {f.name for f in attrs.fields(type(options))}
    if "path" not in names:
        from temple_core.errors import TempleError

        raise TempleError(f"backend options {type(options).__name__} have no 'path': cannot load a merged stage")
    overrides: dict[str, Any] = {"path": path}
    if "preset" in names:
        overrides["preset"] = None
    return overrides


def _describe_start(spec: ComponentSpec) -> str:
    options = spec.options
    for key in ("path", "preset"):
        value = getattr(options, key, None)
        if value:
            return f"{spec.name} {key}={value}"
    return spec.name


def _adopt_finished_stages(ctx, config, train_dir, stage_dirs, log) -> None:
    """Take back the finished stages of a ``train`` folder the run moved aside.

    When the recipe's ``train:`` section changes (a stage appended, ``compare_with`` set...),
    the run moves the whole ``train/`` folder aside to ``train.stale-<time>``. Stages whose
    entry, backend, seed and every stage before them are unchanged are done work: their
    folders are moved back instead of training them again (hours each on real models)."""
    if not ctx.is_main or any(d.exists() for d in stage_dirs):
        return
    stale = sorted(train_dir.parent.glob(f"{train_dir.name}.stale-*"))
    if not stale:
        return
    source = stale[-1]
    upstream: str | None = None
    for stage, out_dir in zip(config.stages, stage_dirs):
        old = source / stage.dir_name
        done = read_json(old / DONE)
        if done is None or done.get("fingerprint") != _stage_fingerprint(ctx.recipe, stage, upstream):
            break
        old.rename(out_dir)
        log(f"[train] {stage.dir_name}: unchanged and finished in {source.name}; taken back, not trained again")
        upstream = done["stamp"]


def single_process_cpu_launch(env) -> bool:
    """``accelerate launch --cpu --num_processes N`` (N > 1) without mpirun starts ONE process:
    accelerate's simple launcher sets ``MASTER_ADDR`` for N processes but spawns one, with no
    ``WORLD_SIZE``. Training still works (same global batch), on one process."""
    return _env_flag(env, "ACCELERATE_USE_CPU") and "MASTER_ADDR" in env and "WORLD_SIZE" not in env


def fsdp_without_gpu(env, cuda_available: bool) -> bool:
    """True when an ``accelerate launch`` config asks for FSDP and no GPU is visible.
    transformers then sets the Trainer up for the CPU (``use_cpu``), where accelerate keeps the
    processes in plain data parallel over gloo: the run trains, but nothing is sharded (checked
    with examples/accelerate/fsdp.yaml on 2 CPU processes). DeepSpeed is different: its CPU
    accelerator really runs ZeRO on CPU processes (the stage summary's ``zero_stage`` says so)."""
    return not cuda_available and _env_flag(env, "ACCELERATE_USE_FSDP")


def _env_flag(env, name: str) -> bool:
    """An accelerate launcher's boolean environment variable (it writes ``true``/``True``)."""
    return str(env.get(name, "")).lower() in ("1", "true", "yes")


def run(ctx, callbacks: list | None = None) -> dict:
    """Run ``train.stages`` in order; a finished stage (merged weights + done marker) is kept.

    ``callbacks``: extra ``transformers.TrainerCallback`` objects given to every stage.
    """
    import shutil
    import time
    import uuid

    from temple_core.training.context import TrainStageContext
    from temple_core.training.curves import last_stage_of, plot_comparison, plot_run, plot_stage
    from temple_core.training.data import drop_unreadable
    from temple_core.store import write_jsonl_atomic

    import os

    log = print if ctx.is_main else (lambda *a, **k: None)
    if single_process_cpu_launch(os.environ):
        log(
            "[train] warning: `accelerate launch --cpu --num_processes N` started one process (accelerate needs "
            "mpirun for several CPU processes); training on 1 process. For N CPU processes (gloo): "
            "torchrun --nproc_per_node N -m temple_core run RECIPE, or on a machine without GPUs "
            "accelerate launch --multi_gpu --num_processes N -m temple_core run RECIPE"
        )
    from temple_core.training.options import _cuda

    if fsdp_without_gpu(os.environ, _cuda()):
        log(
            "[train] warning: the launch asks for FSDP, which needs GPUs here; with none visible the "
            "processes train as plain data parallel over gloo (same results, nothing sharded)"
        )
    if not ctx.progress:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # "Loading weights" / "Writing model shards" bars too
    config = ctx.recipe.train
    train_dir = ctx.stage_dir("train")
    stage_dirs = [train_dir / stage.dir_name for stage in config.stages]
    _adopt_finished_stages(ctx, config, train_dir, stage_dirs, log)
    ctx.barrier()

    # Which stages are finished: a chain of done markers, each naming the one before it.
    # Resume after the last finished stage whose merged weights are still on disk (with
    # keep_merged: false, earlier stages' merged folders are deleted once the next is done).
    chain: list[dict] = []
    upstream: str | None = None
    for stage, out_dir in zip(config.stages, stage_dirs):
        done = read_json(out_dir / DONE)
        if done is None or done.get("fingerprint") != _stage_fingerprint(ctx.recipe, stage, upstream):
            break
        chain.append(done)
        upstream = done["stamp"]
    while chain and not (stage_dirs[len(chain) - 1] / "merged").is_dir():
        chain.pop()
    results = [{**done.get("summary", {}), "status": "up to date"} for done in chain]
    for out_dir in stage_dirs[: len(chain)]:
        log(f"[train] {out_dir.name}: done earlier; nothing to do")
    start_dir = stage_dirs[len(chain) - 1] / "merged" if chain else None
    upstream = chain[-1]["stamp"] if chain else None

    for stage, out_dir in list(zip(config.stages, stage_dirs))[len(chain):]:
        fingerprint = _stage_fingerprint(ctx.recipe, stage, upstream)
        done = read_json(out_dir / DONE)
        if ctx.is_main and out_dir.exists():
            started = read_json(out_dir / STARTED)
            if done is not None or (started is not None and started.get("fingerprint") != fingerprint):
                _move_aside(out_dir, log)
        ctx.barrier()
        out_dir.mkdir(parents=True, exist_ok=True)
        if ctx.is_main:
            write_json(out_dir / STARTED, {"fingerprint": fingerprint, "entry": stage.to_data()})

        kind, items = stage_data(ctx, stage)
        if kind == "pairs":
            items, skipped = drop_unreadable(items, lambda p: [p.video_path], lambda p: p.pair_id, ctx.progress)
        else:
            items, skipped = drop_unreadable(items, lambda s: s["videos"], lambda s: s["id"], ctx.progress)
        if ctx.is_main:
            write_jsonl_atomic(out_dir / "skipped.jsonl", skipped)
        if skipped:
            log(f"[train] {stage.dir_name}: skipped {len(skipped)} sample(s) whose video cannot be read (see skipped.jsonl)")
        if not items:
            from temple_core.errors import TempleError

            raise TempleError(f"train.stages[{stage.index}]: no usable samples ({len(skipped)} skipped: unreadable videos)")
        backend, start = backend_from(config.backend, ctx.plugins, start_dir)
        tctx = TrainStageContext(
            index=stage.index,
            name=stage.dir_name,
            trainer=stage.trainer.name,
            where=f"train.stages[{stage.index}]",
            backend=backend,
            start=start,
            kind=kind,
            data=items,
            skipped=skipped,
            out_dir=out_dir,
            seed=ctx.recipe.seed,
            rank=ctx.rank,
            world_size=ctx.world_size,
            progress=ctx.progress,
            callbacks=list(callbacks or []),
        )
        trainer = stage.trainer.build(ctx.plugins)
        log(f"[train] {stage.dir_name}: {stage.trainer.name} on {len(items)} sample(s) from {start}")
        began = time.time()
        summary = dict(trainer.train(tctx) or {})
        summary.update(
            stage=stage.dir_name, trainer=stage.trainer.name, samples=len(items), skipped=len(skipped),
            processes=ctx.world_size,
            start=start, merged=str(tctx.merged_dir), seconds=round(time.time() - began, 2),
        )
        del backend, trainer, tctx  # free the model before the next stage loads its own
        ctx.barrier()
        stamp = uuid.uuid4().hex
        if ctx.is_main:
            if not (out_dir / "merged").is_dir():
                from temple_core.errors import TempleError

                raise TempleError(f"trainer {stage.trainer.name!r} wrote no merged model to {out_dir / 'merged'}")
            plot_stage(out_dir, f"{stage.dir_name} ({stage.trainer.name})")
            write_json(out_dir / DONE, {"fingerprint": fingerprint, "stamp": stamp, "summary": summary})
            # The previous stage's merged weights were only needed as this stage's start/reference.
            if not config.keep_merged and start_dir is not None:
                shutil.rmtree(start_dir, ignore_errors=True)
        ctx.barrier()
        results.append({**summary, "status": "ran"})
        done = read_json(out_dir / DONE)
        start_dir, upstream = out_dir / "merged", (done or {}).get("stamp", stamp)

    summary = {"stages": results, "final_model": str(start_dir)}
    if ctx.is_main:
        plot_run(train_dir, stage_dirs)
        if config.compare_with:
            from pathlib import Path

            other = last_stage_of(Path(config.compare_with).expanduser() / "train")
            ours = last_stage_of(train_dir)
            if other is None or ours is None:
                log(f"[train] compare_with: no SFT stage with metrics in {'this run' if ours is None else config.compare_with}; no comparison plot")
            else:
                out = plot_comparison(
                    train_dir / "sft_compare.png",
                    [(f"this run ({ctx.recipe.run_dir})", ours), (f"{config.compare_with}", other)],
                )
                summary["comparison"] = str(out)
        write_json(train_dir / "final.json", summary)
    return summary
