"""The stages of a run and how ``temple run`` chains them.

Each stage is a module here (``select``, ``generate``, ``train``) with a ``Config`` attrs
class (its recipe section) and ``run(ctx) -> dict`` (a summary). A stage reads what the one
before it wrote to the run directory and writes its own folder there.

Up to date or not: when a stage finishes, it leaves ``<run_dir>/<stage>/_stage.json`` with a
fingerprint of its recipe section and the stamp of the stage before it. A stage whose marker
matches is skipped. A stage without a marker but with outputs was interrupted: it resumes
(each stage skips the items it already finished). A stage whose marker no longer matches
(its section changed, or the stage before it ran again) starts afresh; its old folder is
moved aside to ``<stage>.stale-<time>``, not deleted.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import attrs

from temple_core.distributed import barrier, rank_world
from temple_core.recipe import STAGES, Recipe, resolve_videos, stage_module, video_ids

MARKER = "_stage.json"


@attrs.define
class StageContext:
    """What a stage gets: the recipe, the run directory, plugins, and its place in a launch."""

    recipe: Recipe
    run_dir: Path
    plugins: Any
    rank: int = 0
    world_size: int = 1
    progress: bool = True
    _videos: list[Path] | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def stage_dir(self, name: str) -> Path:
        path = self.run_dir / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def videos(self) -> list[Path]:
        """The recipe's input videos (built-in samples written on first use)."""
        if self._videos is None:
            self._videos = resolve_videos(self.recipe.videos, self.run_dir, materialize=True)
        return self._videos

    @property
    def video_ids(self) -> list[str]:
        return video_ids(self.videos)

    def barrier(self) -> None:
        barrier(self.world_size)


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON marker file, or ``None`` when it is missing or unreadable (a cut-off write)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Replace a JSON marker file all at once (write a temporary file, then rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    tmp.replace(path)


def move_aside(folder: Path) -> Path:
    """Rename an outdated output folder to ``<name>.stale-<time>`` (kept, never deleted)."""
    aside = folder.with_name(f"{folder.name}.stale-{time.strftime('%Y%m%d-%H%M%S')}")
    folder.rename(aside)
    return aside


def read_marker(stage_dir: Path) -> dict[str, Any] | None:
    return read_json(stage_dir / MARKER)


def write_marker(stage_dir: Path, data: dict[str, Any]) -> None:
    write_json(stage_dir / MARKER, data)


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
) -> list[StageResult]:
    """Run the recipe's stages (or the ``stages`` subset), in order, skipping up-to-date ones."""
    rank, world = rank_world()
    run_dir = Path(recipe.run_dir)
    ctx = StageContext(recipe, run_dir, plugins, rank, world, progress=progress and rank == 0)
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        import yaml

        (run_dir / "recipe.yaml").write_text(yaml.safe_dump(recipe.to_data(), sort_keys=False))
    wanted = [s for s in STAGES if s in recipe.sections() and (stages is None or s in stages)]
    results = []
    upstream: str | None = None
    for name in STAGES:
        if name not in recipe.sections():
            continue
        stage_dir = run_dir / name
        marker = read_marker(stage_dir)
        fingerprint = recipe.fingerprint(name)
        up_to_date = marker is not None and marker.get("fingerprint") == fingerprint and marker.get("upstream") == upstream
        if name not in wanted:
            upstream = marker.get("stamp") if marker else upstream
            continue
        if up_to_date:
            log(f"[{name}] up to date (finished {marker.get('finished', '?')}); nothing to do")
            results.append(StageResult(name, "up to date", 0.0, marker.get("summary", {})))
            upstream = marker["stamp"]
            continue
        if marker is not None and rank == 0:
            aside = move_aside(stage_dir)
            log(f"[{name}] its recipe section or an earlier stage changed: old outputs moved to {aside}")
        ctx.barrier()
        started = time.time()
        summary = stage_module(name).run(ctx) or {}
        seconds = time.time() - started
        ctx.barrier()
        stamp = uuid.uuid4().hex
        if rank == 0:
            write_marker(
                ctx.stage_dir(name),
                {
                    "stage": name,
                    "fingerprint": fingerprint,
                    "upstream": upstream,
                    "stamp": stamp,
                    "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
                    "seconds": round(seconds, 2),
                    "summary": summary,
                },
            )
        ctx.barrier()
        marker = read_marker(run_dir / name)
        upstream = marker["stamp"] if marker else stamp
        results.append(StageResult(name, "ran", seconds, summary))
    return results
