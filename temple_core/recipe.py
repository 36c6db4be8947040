"""Recipes: YAML files (read with ``yaml.safe_load``) validated into attrs objects.

The top level names the run directory, the seed, the input videos, and one section per
stage (``select``, ``generate``, ``train``, ``eval``), each typed by its stage's ``Config`` class
(:data:`temple_core.stages.STAGES`). A section left out means the stage is not run. Every
error names the recipe path at fault (see :mod:`temple_core.config`).

Paths in a recipe -- videos, data files, checkpoints, prompt files, and ``run_dir`` -- are
relative to the recipe file, so a recipe runs the same from any working directory;
``--run-dir`` (relative to the working directory, like any command-line path) overrides
``run_dir``.
"""

from __future__ import annotations

import glob
import hashlib
from collections import Counter
from pathlib import Path
from typing import Any

import attrs
import yaml

from temple_core.config import Structurer, path_field, unstructure
from temple_core.errors import RecipeError
from temple_core.stages import STAGE_NAMES, STAGES, evaluate, generate, select, train
from temple_core.store.ledger import fingerprint

SelectConfig = select.Config
GenerateConfig = generate.Config
TrainConfig = train.Config
EvalConfig = evaluate.Config

VIDEO_EXTENSIONS = [".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v", ".mpg", ".mpeg"]


@attrs.define(kw_only=True)
class VideosConfig:
    """Where the input videos are."""

    #: Files, folders (searched recursively for ``extensions``) and glob patterns, relative to the recipe file.
    paths: list[str] = path_field(attrs.Factory(list), kind=None)
    #: Built-in sample videos written into ``<run_dir>/videos/`` on first use (see docs).
    samples: list[str] = attrs.Factory(list)
    #: File name endings that count as videos when a folder is given.
    extensions: list[str] = attrs.Factory(lambda: list(VIDEO_EXTENSIONS))


@attrs.define(kw_only=True)
class Recipe:
    #: Where every stage writes, relative to the recipe file (``--run-dir`` overrides it).
    run_dir: str = path_field(attrs.NOTHING, kind=None)
    #: Seeds every random choice (perturbations, prompts, sampling, training).
    seed: int = 0
    #: The input videos (see the `videos` section).
    videos: VideosConfig = attrs.Factory(VideosConfig)
    select: SelectConfig | None = None
    generate: GenerateConfig | None = None
    train: TrainConfig | None = None
    eval: EvalConfig | None = None
    #: Where the recipe was read from (not a recipe key).
    source: str | None = attrs.field(default=None, eq=False)

    def sections(self) -> list[str]:
        """The stages this recipe runs, in order."""
        return [name for name in STAGE_NAMES if getattr(self, name) is not None]

    def to_data(self) -> dict[str, Any]:
        data = {
            "run_dir": self.run_dir,
            "seed": self.seed,
            "videos": unstructure(self.videos),
        }
        for name in self.sections():
            data[name] = unstructure(getattr(self, name))
        return data

    def fingerprint(self, section: str) -> str:
        """A hash of one section as resolved (and of the seed), to tell if a stage's work is stale."""
        return fingerprint({"seed": self.seed, section: unstructure(getattr(self, section))})


def parse_yaml(text: str, source: str = "<recipe>") -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        problem = exc.problem or exc.context or "invalid YAML"
        raise RecipeError("", f"{source}: not valid YAML at {where}: {problem}") from None
    except yaml.YAMLError as exc:
        raise RecipeError("", f"{source}: not valid YAML: {exc}") from None


def load_recipe(path: str | Path, plugins=None, run_dir: str | None = None, check_files: bool = True) -> Recipe:
    """Read and validate a recipe file. Its paths are relative to its folder; ``run_dir``
    (the command line's ``--run-dir``) overrides the recipe's and is relative to the
    working directory."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError("", f"recipe file not found: {path}")
    data = parse_yaml(path.read_text(encoding="utf-8"), str(path))
    return recipe_from_data(
        data, plugins=plugins, run_dir=run_dir, source=str(path), check_files=check_files,
        base_dir=path.resolve().parent,
    )


def recipe_from_data(data, plugins=None, run_dir=None, source=None, check_files: bool = True, base_dir=None) -> Recipe:
    """Validate recipe data. ``base_dir``: the folder relative paths are relative to (the
    recipe file's); without one they stay relative to the working directory."""
    if plugins is None:
        from temple_core.plugins import get_plugin_manager

        plugins = get_plugin_manager()
    if not isinstance(data, dict):
        raise RecipeError("", f"{source or 'recipe'}: the recipe must be a mapping of sections, got {type(data).__name__}")
    for name in STAGE_NAMES:
        if name in data and data[name] is None:
            raise RecipeError(name, "empty section; remove it to skip this stage")
    if run_dir is not None:  # --run-dir: relative to the working directory
        data = {**data, "run_dir": str(Path(run_dir).expanduser().resolve())}
    elif isinstance(data.get("run_dir"), str) and not data["run_dir"].strip():
        raise RecipeError("run_dir", "must name a folder (it is empty)")
    structurer = Structurer(plugins, check_files=check_files, base_dir=base_dir)
    recipe = structurer.structure(Recipe, data)
    if not recipe.sections():
        raise RecipeError("", f"the recipe has no stage section ({', '.join(STAGE_NAMES)})")
    recipe.source = source
    for spec in STAGES:
        section = getattr(recipe, spec.name)
        if section is not None:
            section.check(recipe, plugins)
    if check_files and (recipe.videos.paths or recipe.videos.samples):
        resolve_videos(recipe.videos, recipe.run_dir, materialize=False)
    return recipe


def resolve_videos(videos: VideosConfig, run_dir: str | Path, materialize: bool = True) -> list[Path]:
    """Every input video of the recipe (absolute paths, in the order given, without repeats).

    ``materialize`` writes the built-in samples first; without it they are only named.
    """
    found: list[Path] = []
    extensions = {e.lower() for e in videos.extensions}
    for i, entry in enumerate(videos.paths):  # resolved against the recipe's folder when read
        path = Path(entry).expanduser()
        if any(ch in entry for ch in "*?["):
            matches = [Path(m) for m in sorted(glob.glob(str(path), recursive=True)) if Path(m).is_file()]
            if not matches:
                raise RecipeError(f"videos.paths[{i}]", f"no file matches {entry!r}")
            found.extend(matches)
        elif path.is_dir():
            matches = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in extensions)
            if not matches:
                raise RecipeError(f"videos.paths[{i}]", f"no video ({', '.join(sorted(extensions))}) in folder {entry}")
            found.extend(matches)
        elif path.is_file():
            found.append(path)
        else:
            raise RecipeError(f"videos.paths[{i}]", f"no such file or folder: {entry}")
    if videos.samples:
        from temple_core import samples

        for i, name in enumerate(videos.samples):
            if name not in samples.SAMPLES:
                raise RecipeError(f"videos.samples[{i}]", f"unknown sample set {name!r}; available: {', '.join(samples.SAMPLES)}")
            if materialize:
                found.extend(samples.materialize(name, Path(run_dir) / "videos"))
    # Absolute paths: every record downstream (videos.jsonl, pairs.jsonl, exports) must name
    # the same file whatever directory a later stage or another tool runs from.
    unique: dict[str, Path] = {}
    for path in found:
        resolved = path.resolve()
        unique.setdefault(str(resolved), resolved)
    return list(unique.values())


def video_ids(paths: list[Path]) -> list[str]:
    """A readable, stable id per video: the file stem, plus a short hash of the path when stems clash."""
    counts = Counter(p.stem for p in paths)
    ids = []
    for path in paths:
        if counts[path.stem] == 1:
            ids.append(path.stem)
        else:
            ids.append(f"{path.stem}-{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]}")
    return ids
