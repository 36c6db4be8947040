"""Which weights ``eval.checkpoints`` names, and the backend that loads each.

* ``base`` -- the starting weights: ``train.backend``'s model, else ``generate.backend``'s,
  else ``eval.backend``'s;
* a train stage, by folder name (``0-dpo``, ``4-sft``) or by its ``name`` when that is unique:
  ``train/<k>-<name>/merged``;
* ``final`` -- the last train stage's merged weights;
* anything else is a model directory.

Every checkpoint is loaded with ``eval.backend`` when the recipe gives one (device, dtype,
batch size for evaluation), else with ``train.backend`` (``generate.backend`` for ``base`` of
a recipe that does not train), its ``path`` pointed at the weights, and the evaluation frame
settings (``eval.frames``) in place of its own.
"""

from __future__ import annotations

import re
from pathlib import Path

import attrs

from temple_core.config import ComponentSpec
from temple_core.errors import RecipeError, TempleError
from temple_core.evaluation.request import Checkpoint, FrameSettings
from temple_core.store.layout import RunLayout

RESERVED = ("base", "final")
#: Backend options that the evaluation frame settings replace (when the backend has them).
FRAME_KEYS = ("fps", "max_frames", "max_pixels", "min_pixels")


def _stages(recipe) -> list:
    return list(recipe.train.stages) if recipe.train is not None else []


def _stage_for(recipe, entry: str):
    stages = _stages(recipe)
    by_dir = [s for s in stages if s.dir_name == entry]
    if by_dir:
        return by_dir[0]
    by_name = [s for s in stages if s.name == entry]
    if len(by_name) > 1:
        raise RecipeError("", f"{len(by_name)} train stages are named {entry!r} ({', '.join(s.dir_name for s in by_name)}): "
                              "name one by its folder")
    return by_name[0] if by_name else None


def base_spec(recipe) -> ComponentSpec | None:
    for section in (recipe.train, recipe.generate, recipe.eval):
        if section is not None and getattr(section, "backend", None) is not None:
            return section.backend
    return None


def loading_spec(recipe) -> ComponentSpec | None:
    """The backend that loads trained and path checkpoints."""
    if recipe.eval.backend is not None:
        return recipe.eval.backend
    return base_spec(recipe)


def label_of(entry: str) -> str:
    """The folder name for a path checkpoint: its last parts, made file-name safe."""
    path = Path(entry.rstrip("/"))
    parts = [p for p in (path.parent.name, path.name) if p] if path.name in ("merged", "checkpoint", "model") else [path.name]
    return re.sub(r"[^A-Za-z0-9._-]+", "_", "-".join(parts)) or "checkpoint"


def model_dir(recipe, entry: str) -> Path:
    """A checkpoint given as a model directory: relative to the recipe file, like every path."""
    path = Path(entry).expanduser()
    if not path.is_absolute() and recipe.source:
        path = Path(recipe.source).resolve().parent / path
    return path


def check(recipe, check_files: bool = True) -> None:
    """Recipe-time validation of ``eval.checkpoints``: every entry resolvable, names unique."""
    config = recipe.eval
    if not config.checkpoints:
        raise RecipeError("eval.checkpoints", "needs at least one checkpoint (base, final, a train stage or a model directory)")
    names = []
    for i, entry in enumerate(config.checkpoints):
        where = f"eval.checkpoints[{i}]"
        if entry == "base":
            if base_spec(recipe) is None:
                raise RecipeError(where, "'base' needs a backend: the recipe has no train.backend, generate.backend or eval.backend")
            names.append(entry)
            continue
        if entry == "final":
            if recipe.train is None:
                raise RecipeError(where, "'final' is the last train stage's weights, and the recipe has no train section")
            names.append(entry)
            continue
        try:
            stage = _stage_for(recipe, entry)
        except RecipeError as exc:
            raise RecipeError(where, exc.message) from None
        if stage is not None:
            names.append(stage.dir_name)
            continue
        if loading_spec(recipe) is None:
            raise RecipeError(where, f"{entry!r} is a model directory, but no backend can load it: add eval.backend")
        if check_files and not (model_dir(recipe, entry) / "config.json").is_file():
            stages = ", ".join(s.dir_name for s in _stages(recipe))
            raise RecipeError(where, f"{entry!r} is not base, final, a train stage{f' ({stages})' if stages else ''} "
                                     "or a model directory (no config.json there)")
        names.append(label_of(entry))
    seen = set()
    for i, name in enumerate(names):
        if name in seen:
            raise RecipeError(f"eval.checkpoints[{i}]", f"checkpoint {name!r} is listed twice")
        seen.add(name)


def _describe(spec: ComponentSpec) -> str:
    for key in ("path", "preset"):
        value = getattr(spec.options, key, None)
        if value:
            return f"{spec.name} {key}={value}"
    return spec.name


def resolve(recipe, run_dir: Path) -> list[tuple[Checkpoint, ComponentSpec]]:
    """Every checkpoint of ``eval.checkpoints`` with the backend spec that loads it (run time:
    trained weights must exist by now)."""
    out = []
    layout = RunLayout(run_dir)
    for i, entry in enumerate(recipe.eval.checkpoints):
        where = f"eval.checkpoints[{i}]"
        if entry == "base":
            spec = base_spec(recipe)
            path = getattr(spec.options, "path", None)
            out.append((Checkpoint("base", path, _describe(spec), where, spec.name, getattr(spec.options, "preset", None)), spec))
            continue
        if entry == "final":
            stage = _stages(recipe)[-1]
            name, folder = "final", layout.train_stage(stage.index, stage.name).merged
        else:
            stage = _stage_for(recipe, entry)
            if stage is not None:
                name, folder = stage.dir_name, layout.train_stage(stage.index, stage.name).merged
            else:
                name, folder = label_of(entry), model_dir(recipe, entry)
        if not (folder / "config.json").is_file():
            hint = " (train.keep_merged: false deletes the merged weights of all but the last stage)" if stage is not None else ""
            raise TempleError(f"{where}: no model at {folder}: run the train stage first{hint}" if stage is not None
                              else f"{where}: no model directory at {folder}")
        spec = loading_spec(recipe)
        out.append((Checkpoint(name, str(folder.resolve()), str(folder.resolve()), where, spec.name), with_path(spec, str(folder.resolve()))))
    return out


def with_path(spec: ComponentSpec, path: str) -> ComponentSpec:
    names = {f.name for f in attrs.fields(type(spec.options))}
    if "path" not in names:
        raise TempleError(f"backend {spec.name}: its options have no 'path', so it cannot load {path}")
    overrides = {"path": path}
    if "preset" in names:
        overrides["preset"] = None
    return ComponentSpec(spec.kind, spec.name, attrs.evolve(spec.options, **overrides), spec.path)


def with_frames(spec: ComponentSpec, frames: FrameSettings) -> ComponentSpec:
    """The spec with the evaluation frame settings in place of its own (where it has the keys)."""
    names = {f.name for f in attrs.fields(type(spec.options))}
    overrides = {k: getattr(frames, k) for k in FRAME_KEYS if k in names and getattr(frames, k) is not None}
    return ComponentSpec(spec.kind, spec.name, attrs.evolve(spec.options, **overrides), spec.path)


def frame_settings_of(backend, frames: FrameSettings) -> dict:
    """The frame settings the backend really runs with (recorded next to every score)."""
    options = getattr(backend, "options", None)
    out = {}
    for key in FRAME_KEYS:
        value = getattr(options, key, None) if options is not None else None
        out[key] = value if value is not None else getattr(frames, key)
    return out
