"""How ``temple run`` chains the stages: in order, each one a unit of the run's ledger.

A stage reads what the one before it wrote to the run directory and writes its own folder
there. Whether a stage has work to do is the ledger's one check
(:meth:`temple_core.store.ledger.Ledger.finished`): finished with the same fingerprint (a
hash of its recipe section and the seed) after the same upstream stage run. A stage that is
up to date is skipped; one that was interrupted resumes (each stage skips the items it
already finished); one whose section or upstream changed starts afresh, its old folder moved
aside to ``<stage>.stale-<time>`` (never deleted). A stage with sub-stages (``train``) keeps
its folder: its sub-stages are units of the same ledger.

The launching process holds the run-directory lock (:mod:`temple_core.store.lock`) from
before the recipe is written until the last stage is done, so a second ``temple run`` on the
same directory is refused (or waits, ``wait=True``) instead of doing the work twice.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import attrs
import yaml

from temple_core.distributed import barrier, rank_world
from temple_core.recipe import Recipe, resolve_videos, video_ids
from temple_core.stages import STAGES
from temple_core.store import Ledger, RunLayout, RunLock
from temple_core.store.files import clean_stale_temps, storage_errors, write_text_atomic


@attrs.define
class StageContext:
    """What a stage gets: the recipe, the run directory, plugins, and its place in a launch."""

    recipe: Recipe
    run_dir: Path
    plugins: Any
    rank: int = 0
    world_size: int = 1
    progress: bool = True
    #: The ledger stamp of the stage this one reads (``None`` for the first stage).
    upstream: str | None = None
    log: Any = print
    _videos: list[Path] | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def layout(self) -> RunLayout:
        return RunLayout(self.run_dir)

    @property
    def ledger(self) -> Ledger:
        return Ledger(self.layout, log=self.log if self.is_main else (lambda *a, **k: None))

    def stage_dir(self, name: str) -> Path:
        path = self.layout.stage_dir(name)
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def videos(self) -> list[Path]:
        """The recipe's input videos (built-in samples written on first use)."""
        if self._videos is None:
            self._videos = resolve_videos(self.recipe.videos, self.run_dir, materialize=True, log=self.log if self.is_main else None)
        return self._videos

    @property
    def video_ids(self) -> list[str]:
        return video_ids(self.videos)

    def barrier(self) -> None:
        barrier(self.world_size)


@attrs.define
class StageResult:
    name: str
    status: str  # "ran" | "up to date"
    seconds: float
    summary: dict[str, Any]


def run_stages(
    recipe: Recipe,
    plugins,
    stages: list[str] | None = None,
    progress: bool = True,
    log=print,
    wait: bool = False,
) -> list[StageResult]:
    """Run the recipe's stages (or the ``stages`` subset), in order, skipping up-to-date ones.

    The main process of the launch holds the run-directory lock throughout; ``wait`` waits
    for another run holding it instead of refusing at once."""
    rank, world = rank_world()
    layout = RunLayout(recipe.run_dir)
    lock = RunLock(layout, log=log) if rank == 0 else None
    started = time.time()
    with storage_errors(layout.root), (lock.acquire(wait=wait) if lock is not None else contextlib.nullcontext()):
        if rank == 0:
            _prepare(recipe, layout, started, log)
        return _run_locked(recipe, plugins, stages, progress, log, rank, world, layout)


def _prepare(recipe: Recipe, layout: RunLayout, started: float, log) -> None:
    """Before any stage: the run directory, its ``recipe.yaml`` (rewritten only when the
    recipe changed, so an up-to-date run writes nothing), and no temporary file left by a
    killed earlier run (only those whose process is gone and older than this run)."""
    layout.root.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(recipe.to_data(), sort_keys=False)
    if not (layout.recipe.is_file() and layout.recipe.read_text(encoding="utf-8", errors="replace") == text):
        write_text_atomic(layout.recipe, text)
    removed = clean_stale_temps(layout.root, before=started)
    if removed:
        log(f"removed {len(removed)} temporary file(s) left by an interrupted run (e.g. {removed[0]})")


def _run_locked(recipe, plugins, stages, progress, log, rank, world, layout) -> list[StageResult]:
    ctx = StageContext(recipe, layout.root, plugins, rank, world, progress=progress and rank == 0, log=log)
    ledger = ctx.ledger
    results = []
    upstream: str | None = None
    for spec in STAGES:
        name = spec.name
        if name not in recipe.sections():
            continue
        folder = layout.stage_dir(name)
        fp = recipe.fingerprint(name)
        if stages is not None and name not in stages:
            # Not asked for: what follows reads its last finished outputs, if any.
            upstream = ledger.stamp(name)
            continue
        done = ledger.finished(name, fp, upstream, folder)
        if done is not None:
            log(f"[{name}] up to date (finished {done.time}); nothing to do")
            results.append(StageResult(name, "up to date", 0.0, done.summary))
            upstream = done.stamp
            continue
        ctx.barrier()  # every process has read the ledger before the main one changes it
        if rank == 0:
            ledger.begin(name, folder, fp, upstream, keep_folder=spec.substages)
        ctx.barrier()
        ctx.upstream = upstream
        started = time.time()
        with storage_errors(folder):
            summary = spec.run(ctx) or {}
        seconds = time.time() - started
        ctx.barrier()
        if rank == 0:
            outputs = spec.outputs(layout, summary) if spec.outputs is not None else ()
            ledger.finish(name, fp, upstream, summary, seconds, outputs=outputs)
        ctx.barrier()
        upstream = ledger.state(name).stamp
        results.append(StageResult(name, "ran", seconds, summary))
    return results
