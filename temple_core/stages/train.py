"""The ``train`` stage: an ordered list of training stages (DPO curriculum, SFT, any order).

Each entry of ``train.stages`` names its trainer, its data and the trainer's options::

    - {trainer: dpo, difficulty: 16}                 # this run's pairs at r = 16
    - {trainer: dpo, data: ../other_run/generate/pairs.jsonl, lr: 1e-6}
    - {trainer: dpo, data: ../other_run/generate/pairs.jsonl, difficulty: 8}   # its r = 8 pairs
    - {trainer: sft, data: ../sft/sample.jsonl}        # paths: relative to the recipe file

After each stage the adapter is merged into the weights; the merged model is the next
stage's starting point (and DPO reference). SPEC §5.

Every training stage is a unit of the run's ledger (``train/<k>-<name>``), recorded exactly
like the top-level stages: a finished stage whose entry, backend, seed and predecessors are
unchanged is kept; an interrupted one resumes from its last checkpoint; an outdated one is
moved aside. The ``train/`` folder itself is never moved aside as a whole, so appending a
stage to the list trains only the new one.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import attrs

from temple_core.config import ComponentSpec, Section, component_field, path_field
from temple_core.errors import RecipeError, TempleError
from temple_core.store import RunLayout, fingerprint, read_jsonl, write_json_atomic, write_jsonl_atomic
from temple_core.store.files import storage_errors
from temple_core.store.layout import safe_component

#: Keys of a stage entry that are not the trainer's options.
STAGE_KEYS = ("trainer", "name", "difficulty", "data", "perturbations")

_KIND_WORDS = {"pairs": "preference pairs", "sft": "SFT samples (messages + videos)"}


@attrs.define(kw_only=True)
class Stage:
    """One validated entry of ``train.stages``."""

    trainer: ComponentSpec
    name: str
    difficulty: int | None = None
    data: str | None = None
    perturbations: list[str] | None = None
    #: Its position in ``train.stages`` (set by :class:`Config`).
    index: int = -1

    @classmethod
    def from_recipe(cls, structurer, entry, path: str) -> "Stage":
        """Validate one entry: the trainer by name, its data, then the trainer's own options."""
        if not isinstance(entry, dict):
            raise RecipeError(path, "expected a mapping like {trainer: dpo, difficulty: 16}")
        if "trainer" not in entry:
            raise RecipeError(f"{path}.trainer", "required key is missing (dpo or sft, or a plugin's trainer)")
        if not isinstance(entry["trainer"], str):
            raise RecipeError(f"{path}.trainer", "expected a trainer name")
        options = {k: v for k, v in entry.items() if k not in STAGE_KEYS}
        try:
            trainer = structurer.component("trainers", {"name": entry["trainer"], **options}, path)
        except RecipeError as exc:
            if exc.path == f"{path}.name":  # the trainer's name is the entry's `trainer` key
                raise RecipeError(f"{path}.trainer", exc.message) from None
            raise
        difficulty = structurer.value(int | None, entry.get("difficulty"), f"{path}.difficulty")
        if difficulty is not None and difficulty < 1:
            raise RecipeError(f"{path}.difficulty", f"must be >= 1, got {difficulty}")
        data = entry.get("data")
        if data is not None:
            data = structurer.path(data, f"{path}.data", kind="file")
        perturbations = structurer.value(list[str] | None, entry.get("perturbations"), f"{path}.perturbations")
        name = structurer.value(str, entry.get("name", trainer.name), f"{path}.name")
        try:
            safe_component(name, "a stage name")
        except ValueError as exc:
            raise RecipeError(f"{path}.name", str(exc)) from None
        wants = structurer.plugins.get("trainers", trainer.name).capability("data_kind") if structurer.plugins else None
        if data is not None:
            has = data_kind(Path(data)) if structurer.check_files else None
            if wants is not None and has is not None and has != wants:
                raise RecipeError(
                    f"{path}.data",
                    f"{entry['data']} holds {_KIND_WORDS[has]}, but a {trainer.name} stage trains on {_KIND_WORDS[wants]}",
                )
            for key, value in (("difficulty", difficulty), ("perturbations", perturbations)):
                if value is not None and "sft" in (wants, has):
                    raise RecipeError(f"{path}.{key}", f"picks preference pairs; {entry['data']} is an SFT file")
        elif wants == "sft" and difficulty is not None:
            raise RecipeError(f"{path}.difficulty", f"a {trainer.name} stage trains on an SFT file: give data, not difficulty")
        elif difficulty is None:
            raise RecipeError(path, "needs its data: difficulty (this run's pairs at that r) or data (a file)")
        return cls(trainer=trainer, name=name, difficulty=difficulty, data=data, perturbations=perturbations)

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

    @property
    def where(self) -> str:
        return f"train.stages[{self.index}]"


@attrs.define(kw_only=True)
class Config(Section):
    """The recipe's ``train:`` section."""

    #: The model trained (may differ from generate.backend: cross-architecture transfer).
    backend: ComponentSpec = component_field("backends")
    #: The training stages, in order: {trainer, difficulty | data, perturbations, name, ...trainer options}.
    stages: list[Stage] = attrs.field(factory=list)
    #: Keep each stage's merged weights on disk (the last stage's are always kept).
    keep_merged: bool = True
    #: Another run directory whose SFT stage's loss and grad norm are overlaid on this run's
    #: (``train/sft_compare.png``; the paper's Figure 4: SFT with vs without DPO first).
    compare_with: str | None = path_field(None, kind=None)

    def __attrs_post_init__(self):
        self.stages = [attrs.evolve(stage, index=i) for i, stage in enumerate(self.stages)]

    def check(self, recipe, plugins) -> None:
        if not self.stages:
            raise RecipeError("train.stages", "needs at least one stage")
        for stage in self.stages:
            if stage.data is None and recipe.generate is not None and stage.difficulty not in recipe.generate.difficulties:
                raise RecipeError(
                    f"{stage.where}.difficulty",
                    f"this run generates no pairs at r = {stage.difficulty} (generate.difficulties: {recipe.generate.difficulties})",
                )


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


def stage_fingerprint(recipe, stage: Stage) -> str:
    """What a training stage was asked to do: its entry, the backend and the seed."""
    return fingerprint({"seed": recipe.seed, "backend": recipe.train.backend.to_data(), "stage": stage.to_data()})


def unit(stage: Stage) -> str:
    """The stage's name in the run's ledger."""
    return f"train/{stage.dir_name}"


def stage_data(ctx, stage: Stage):
    """``(kind, items)`` for a stage: this run's pairs at its difficulty, a pairs file, or an SFT file."""
    from temple_core.training import data as training_data

    if stage.data is None:
        return "pairs", training_data.load_pairs(ctx.layout.pairs, stage.difficulty, stage.perturbations)
    path = Path(stage.data)
    first = next(iter(read_jsonl(path)), None)
    if first is not None and "chosen" in first and "rejected" in first:
        return "pairs", training_data.load_pairs(path, stage.difficulty, stage.perturbations)
    for key in ("perturbations", "difficulty"):
        if getattr(stage, key) is not None:
            raise RecipeError(f"{stage.where}.{key}", f"{path} is an SFT file, not pairs")
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


def _launch_warnings(log) -> None:
    from temple_core.training.options import cuda_available

    if single_process_cpu_launch(os.environ):
        log(
            "[train] warning: `accelerate launch --cpu --num_processes N` started one process (accelerate needs "
            "mpirun for several CPU processes); training on 1 process. For N CPU processes (gloo): "
            "torchrun --nproc_per_node N -m temple_core run RECIPE, or on a machine without GPUs "
            "accelerate launch --multi_gpu --num_processes N -m temple_core run RECIPE"
        )
    if fsdp_without_gpu(os.environ, cuda_available()):
        log(
            "[train] warning: the launch asks for FSDP, which needs GPUs here; with none visible the "
            "processes train as plain data parallel over gloo (same results, nothing sharded)"
        )


def outputs(layout, summary: dict) -> list[Path]:
    """What a finished ``train`` vouches for: every training stage's folder and the final
    model (a deleted stage folder makes ``train`` run again; it retrains from that stage)."""
    found = [layout.train_dir / s["stage"] for s in summary.get("stages", []) if s.get("stage")]
    if summary.get("final_model") and summary["final_model"] != "None":
        found.append(Path(summary["final_model"]))
    return found


def run(ctx, callbacks: list | None = None) -> dict:
    """Run ``train.stages`` in order, each a unit of the run's ledger (see the module doc).

    ``callbacks``: extra ``transformers.TrainerCallback`` objects given to every stage.
    """
    from temple_core.training.context import TrainStageContext
    from temple_core.training.curves import last_stage_of, plot_comparison, plot_run, plot_stage
    from temple_core.training.data import drop_unreadable

    log = print if ctx.is_main else (lambda *a, **k: None)
    _launch_warnings(log)
    if not ctx.progress:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # "Loading weights" / "Writing model shards" bars too
    config = ctx.recipe.train
    layout, ledger = ctx.layout, ctx.ledger
    folders = [layout.train_stage(stage.index, stage.name) for stage in config.stages]
    fingerprints = [stage_fingerprint(ctx.recipe, stage) for stage in config.stages]

    # The finished stages: a chain in the ledger, each one's upstream the stamp of the one
    # before it. Resume after the last finished stage whose merged weights are still on disk
    # (with keep_merged: false, earlier stages' merged folders are deleted once the next is done).
    chain = []
    upstream = ctx.upstream
    for stage, folder, fp in zip(config.stages, folders, fingerprints):
        entry = ledger.finished(unit(stage), fp, upstream, folder.folder)
        if entry is None:
            break
        chain.append(entry)
        upstream = entry.stamp
    while chain and not folders[len(chain) - 1].merged.is_dir():
        chain.pop()
    ctx.barrier()  # every process has read the ledger before the main one writes to it
    results = [{**entry.summary, "status": "up to date"} for entry in chain]
    for folder in folders[: len(chain)]:
        log(f"[train] {folder.name}: done earlier; nothing to do")
    start_dir = folders[len(chain) - 1].merged if chain else None
    upstream = chain[-1].stamp if chain else ctx.upstream

    for stage, folder, fp in list(zip(config.stages, folders, fingerprints))[len(chain):]:
        if ctx.is_main:
            ledger.begin(unit(stage), folder.folder, fp, upstream)
        ctx.barrier()
        folder.folder.mkdir(parents=True, exist_ok=True)
        kind, items = stage_data(ctx, stage)
        if kind == "pairs":
            items, skipped = drop_unreadable(items, lambda p: [p.video_path], lambda p: p.pair_id, ctx.progress)
        else:
            items, skipped = drop_unreadable(items, lambda s: s["videos"], lambda s: s["id"], ctx.progress)
        if ctx.is_main:
            write_jsonl_atomic(folder.skipped, skipped)
        if skipped:
            log(f"[train] {folder.name}: skipped {len(skipped)} sample(s) whose video cannot be read (see skipped.jsonl)")
        if not items:
            raise TempleError(f"{stage.where}: no usable samples ({len(skipped)} skipped: unreadable videos)")
        backend, start = backend_from(config.backend, ctx.plugins, start_dir)
        tctx = TrainStageContext(
            index=stage.index,
            name=stage.dir_name,
            trainer=stage.trainer.name,
            where=stage.where,
            backend=backend,
            start=start,
            kind=kind,
            data=items,
            skipped=skipped,
            layout=folder,
            seed=ctx.recipe.seed,
            rank=ctx.rank,
            world_size=ctx.world_size,
            progress=ctx.progress,
            callbacks=list(callbacks or []),
        )
        trainer = stage.trainer.build(ctx.plugins)
        log(f"[train] {folder.name}: {stage.trainer.name} on {len(items)} sample(s) from {start}")
        began = time.time()
        with storage_errors(folder.folder):  # a refused write names this stage's folder at least
            summary = dict(trainer.train(tctx) or {})
        seconds = time.time() - began
        summary.update(
            stage=stage.dir_name, trainer=stage.trainer.name, samples=len(items), skipped=len(skipped),
            processes=ctx.world_size, start=start, merged=str(folder.merged), seconds=round(seconds, 2),
        )
        del backend, trainer, tctx  # free the model before the next stage loads its own
        ctx.barrier()
        if ctx.is_main:
            if not folder.merged.is_dir():
                raise TempleError(f"trainer {stage.trainer.name!r} wrote no merged model to {folder.merged}")
            plot_stage(folder.folder, f"{stage.dir_name} ({stage.trainer.name})")
            ledger.finish(unit(stage), fp, upstream, summary, seconds)
            # Only now: an interrupt before the finish record resumes from the last checkpoint.
            if summary.get("checkpoints_kept") is False:
                folder.remove(folder.checkpoints)
            # The previous stage's merged weights were only needed as this stage's start/reference.
            if not config.keep_merged and start_dir is not None:
                layout.remove(start_dir)
        ctx.barrier()
        results.append({**summary, "status": "ran"})
        entry = ledger.state(unit(stage))
        start_dir, upstream = folder.merged, entry.stamp

    summary = {"stages": results, "final_model": str(start_dir)}
    if ctx.is_main:
        plot_run(layout.train_dir, [f.folder for f in folders])
        if config.compare_with:
            other = last_stage_of(RunLayout(config.compare_with).train_dir)
            ours = last_stage_of(layout.train_dir)
            if other is None or ours is None:
                log(f"[train] compare_with: no SFT stage with metrics in {'this run' if ours is None else config.compare_with}; no comparison plot")
            else:
                out = plot_comparison(
                    layout.sft_compare,
                    [(f"this run ({ctx.recipe.run_dir})", ours), (f"{config.compare_with}", other)],
                )
                summary["comparison"] = str(out)
        write_json_atomic(layout.train_final, summary)
    return summary
