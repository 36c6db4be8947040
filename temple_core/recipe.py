"""Recipes: YAML files (read with :class:`RecipeLoader`, a ``yaml.SafeLoader`` that also
refuses duplicate keys, alias bombs and absurd nesting) validated into attrs objects.

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

import codecs
import glob
import hashlib
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any

import attrs
import yaml

from temple_core.config import Structurer, non_empty, path_field, raise_missing, unstructure
from temple_core.errors import RecipeError, TempleError
from temple_core.stages import STAGE_NAMES, STAGES, evaluate, generate, select, train
from temple_core.store.layout import STALE, RunLayout
from temple_core.store.ledger import fingerprint

SelectConfig = select.Config
GenerateConfig = generate.Config
TrainConfig = train.Config
EvalConfig = evaluate.Config

#: The largest seed: numpy's (``np.random.seed`` refuses 2**32; transformers' set_seed calls it).
SEED_MAX = 2**32 - 1

VIDEO_EXTENSIONS = [".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v", ".mpg", ".mpeg"]


@attrs.define(kw_only=True)
class VideosConfig:
    """Where the input videos are."""

    #: Files, folders (searched recursively for ``extensions``) and glob patterns, relative to the recipe file.
    paths: list[str] = path_field(attrs.Factory(list), kind=None)
    #: Built-in sample videos written into ``<run_dir>/videos/`` on first use (see docs).
    samples: list[str] = attrs.Factory(list)
    #: File name endings that count as videos when a folder is given.
    extensions: list[str] = attrs.field(factory=lambda: list(VIDEO_EXTENSIONS), validator=non_empty)


@attrs.define(kw_only=True)
class Recipe:
    #: Where every stage writes, relative to the recipe file (``--run-dir`` overrides it).
    run_dir: str = path_field(attrs.NOTHING, kind=None)
    #: Seeds every random choice (perturbations, prompts, sampling, training); numpy's range, 0 to 2**32 - 1.
    seed: int = attrs.field(default=0, validator=[attrs.validators.ge(0), attrs.validators.le(SEED_MAX)])
    #: The input videos (see the `videos` section).
    videos: VideosConfig = attrs.Factory(VideosConfig)
    select: SelectConfig | None = None
    generate: GenerateConfig | None = None
    train: TrainConfig | None = None
    eval: EvalConfig | None = None
    #: Where the recipe was read from (not a recipe key).
    source: str | None = attrs.field(default=None, eq=False, init=False)

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


#: Limits of what a recipe file may be: values after alias expansion, and nesting depth.
MAX_VALUES = 1_000_000
MAX_DEPTH = 100

_MERGE_TAG = "tag:yaml.org,2002:merge"


class RecipeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses what would silently go wrong later: a key given twice
    in one mapping (a duplicated section included: plain YAML keeps the last one), nesting
    deeper than :data:`MAX_DEPTH` (the composer recurses: 20,000 levels are a RecursionError),
    aliases that expand to more than :data:`MAX_VALUES` values (an alias bomb is small on disk
    and in memory, and explodes where something walks it, e.g. TRL serialising its config) or
    that contain themselves. YAML's merge key (``<<: *common``) still works: keys it brings in
    may be overridden, by design. Values a constructor cannot build (a 5,000-digit integer, a
    date like 2001-13-45) are errors at their line."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise yaml.composer.ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep", mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_document(self):
        node = super().compose_document()
        if node is not None:
            _check_expansion(node)
        return node

    def construct_object(self, node, deep=False):
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, OverflowError) as exc:  # int("9" * 5000), datetime(2001, 13, 45)...
            raise yaml.constructor.ConstructorError(None, None, f"cannot read this value ({exc})", node.start_mark) from None

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            first: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == _MERGE_TAG:
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    seen = first.get(key)
                except TypeError:  # unhashable: the base class says so, at its line
                    continue
                if seen is not None:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r} (first at line {seen.line + 1})", key_node.start_mark
                    )
                first[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def _children(node) -> list:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_expansion(root) -> None:
    """How many values and levels ``root`` has once every alias is expanded (iteratively:
    aliases can nest deeper than Python's recursion limit), refusing a cycle."""
    sizes: dict[int, tuple[int, int]] = {}
    on_path: set[int] = set()
    stack = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            children = _children(node)
            size = 1 + sum(sizes[id(c)][0] for c in children)
            depth = 1 + max((sizes[id(c)][1] for c in children), default=0)
            if size > MAX_VALUES:
                raise yaml.composer.ComposerError(
                    None, None, f"aliases expand this to more than {MAX_VALUES:,} values", node.start_mark
                )
            if depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(
                    None, None, f"aliases nest this more than {MAX_DEPTH} levels deep", node.start_mark
                )
            sizes[key] = (size, depth)
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise yaml.composer.ComposerError(None, None, "a recursive alias (it contains itself)", node.start_mark)
        on_path.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in sizes)


def decode_recipe(raw: bytes, source: str = "<recipe>") -> str:
    """The recipe file's text: UTF-8 (a UTF-8 byte-order mark is fine); anything else is one
    clear error naming the encoding or the first bad byte's line."""
    for bom, name in ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"),
                      (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16")):
        if raw.startswith(bom):
            raise RecipeError("", f"{source}: the file is {name} text; save it as UTF-8")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise RecipeError(
            "", f"{source}: not UTF-8 text: byte 0x{raw[exc.start]:02x} at line {line}, column {column}; save it as UTF-8"
        ) from None


def parse_yaml(text: str, source: str = "<recipe>") -> Any:
    """Recipe text -> plain data (:class:`RecipeLoader`); every problem is one line naming
    where it is."""
    try:
        return yaml.load(text, Loader=RecipeLoader)  # noqa: S506 -- a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        problem = " ".join(str(exc.problem or exc.context or "invalid YAML").split())
        raise RecipeError("", f"{source}: not valid YAML at {where}: {problem}") from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        raise RecipeError(
            "", f"{source}: not valid YAML at line {line}, column {column}: character #x{exc.character:04x} is not allowed"
        ) from None
    except yaml.YAMLError as exc:
        raise RecipeError("", f"{source}: not valid YAML: {' '.join(str(exc).split())}") from None
    except RecursionError:
        raise RecipeError("", f"{source}: nested too deeply to read") from None


def load_recipe(path: str | Path, plugins=None, run_dir: str | None = None, check_files: bool = True) -> Recipe:
    """Read and validate a recipe file. Its paths are relative to its folder; ``run_dir``
    (the command line's ``--run-dir``) overrides the recipe's and is relative to the
    working directory."""
    path = Path(path)
    if path.is_dir():
        raise RecipeError("", f"{path} is a folder; give the recipe's YAML file")
    if not path.is_file():
        raise RecipeError("", f"recipe file not found: {path}")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise RecipeError("", f"cannot read the recipe {path}: {exc.strerror or exc}") from None
    data = parse_yaml(decode_recipe(raw, str(path)), str(path))
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
        if not str(run_dir).strip():
            raise RecipeError("--run-dir", "must name a folder (it is empty)")
        data = {**data, "run_dir": str(Path(run_dir).expanduser().resolve())}
    elif isinstance(data.get("run_dir"), str) and not data["run_dir"].strip():
        raise RecipeError("run_dir", "must name a folder (it is empty)")
    structurer = Structurer(plugins, check_files=check_files, base_dir=base_dir, collect_missing=True)
    recipe = structurer.structure(Recipe, data)
    missing = list(structurer.missing)
    if check_files:  # every missing path at once: the recipe's own, input and held-out videos
        if recipe.videos.paths or recipe.videos.samples:
            try:
                resolve_videos(recipe.videos, recipe.run_dir, materialize=False)
            except RecipeError as exc:
                missing.append(exc)
        try:
            _check_eval_videos(recipe)
        except RecipeError as exc:
            missing.append(exc)
    raise_missing(missing)
    where = "--run-dir" if run_dir is not None else "run_dir"
    if Path(recipe.run_dir).resolve() in (Path("/"), Path.home().resolve()):
        # Every stage writes select/, generate/, train/ there and moves outdated folders aside.
        raise RecipeError(where, f"must be a folder of its own, not {recipe.run_dir}")
    folder = Path(recipe.run_dir)
    for above in (folder, *folder.parents):
        if above.exists():
            if not above.is_dir():
                what = "is a file" if above == folder else f"is inside {above}, which is a file"
                raise RecipeError(where, f"{recipe.run_dir} {what}; the run directory must be a folder")
            break
    if not recipe.sections():
        raise RecipeError("", f"the recipe has no stage section ({', '.join(STAGE_NAMES)})")
    recipe.source = source
    for spec in STAGES:
        section = getattr(recipe, spec.name)
        if section is not None:
            section.check(recipe, plugins)
    if check_files:
        _check_upstream(recipe)
    return recipe


def _check_eval_videos(recipe: Recipe) -> None:
    """Held-out video paths of the evaluators exist now, not only when eval runs (after training)."""
    if recipe.eval is None:
        return
    for i, spec in enumerate(recipe.eval.evaluators):
        videos = getattr(spec.options, "videos", None)
        if isinstance(videos, VideosConfig) and videos.paths:
            try:
                resolve_videos(videos, recipe.run_dir, materialize=False)
            except RecipeError as exc:
                raise RecipeError(f"eval.evaluators[{i}].{exc.path}", exc.message) from None


def _check_upstream(recipe: Recipe) -> None:
    """A stage whose upstream section is left out reads that stage's outputs from an earlier
    run in the same run directory: they must be there."""
    layout = RunLayout(recipe.run_dir)
    if recipe.generate is not None and recipe.select is None and not layout.videos.is_file():
        raise RecipeError("generate", f"reads {layout.videos}, which does not exist: add a select section (or run one first)")
    if recipe.train is not None and recipe.generate is None and not layout.pairs.is_file():
        for stage in recipe.train.stages:
            if stage.data is None:
                raise RecipeError(
                    f"{stage.where}.difficulty",
                    f"trains on this run's pairs, but {layout.pairs} does not exist: add a generate section or give data",
                )


def _video_entries(folder: Path, extensions: set[str]) -> list[Path]:
    """Every entry under ``folder`` whose name ends like a video, whatever it is: a file, a
    link (working, dangling or a loop), a directory named ``x.mp4``. What cannot be read gets
    an error record in ``select`` instead of vanishing. Links to folders are not followed
    (a link loop cannot make the search endless), as ``Path.rglob`` does not follow them."""
    found = []
    for current, dirs, files in os.walk(folder, followlinks=False):
        dirs.sort()
        for name in sorted([*files, *dirs]):
            if Path(name).suffix.lower() in extensions:
                found.append(Path(current) / name)
    return sorted(found)


def resolve_videos(videos: VideosConfig, run_dir: str | Path, materialize: bool = True, log=None) -> list[Path]:
    """Every input video of the recipe (absolute paths, in the order given, without repeats).

    ``materialize`` writes the built-in samples first (``log`` is told when it writes some);
    without it they are only named. An
    entry that exists but cannot be read (a directory named like a video, a dangling link, a
    link loop) is kept: selection gives it an error record. A path that does not exist at all
    is a :class:`RecipeError` (a typo in the recipe).
    """
    found: list[Path] = []
    extensions = {e.lower() for e in videos.extensions}
    for i, entry in enumerate(videos.paths):  # resolved against the recipe's folder when read
        path = Path(entry).expanduser()
        if any(ch in entry for ch in "*?["):
            matches = [
                Path(m) for m in sorted(glob.glob(str(path), recursive=True))
                if not Path(m).is_dir() or Path(m).suffix.lower() in extensions
            ]
            if not matches:
                raise RecipeError(f"videos.paths[{i}]", f"no file matches {entry!r}")
            found.extend(matches)
        elif path.is_dir():
            matches = _video_entries(path, extensions)
            if not matches:
                if path.suffix.lower() in extensions:  # a directory named like a video
                    found.append(path)
                    continue
                raise RecipeError(f"videos.paths[{i}]", f"no video ({', '.join(sorted(extensions))}) in folder {entry}")
            found.extend(matches)
        elif os.path.lexists(path):  # a file, or a link that leads nowhere: selection says which
            found.append(path)
        else:
            raise RecipeError(f"videos.paths[{i}]", f"no such file or folder: {entry}")
    if videos.samples:
        from temple_core import samples

        for i, name in enumerate(videos.samples):
            if name not in samples.SAMPLES:
                raise RecipeError(f"videos.samples[{i}]", f"unknown sample set {name!r}; available: {', '.join(samples.SAMPLES)}")
            if materialize:
                found.extend(samples.materialize(name, RunLayout(run_dir).samples_dir, log=log))
    # Absolute paths: every record downstream (videos.jsonl, pairs.jsonl, exports) must name
    # the same file whatever directory a later stage or another tool runs from.
    unique: dict[str, Path] = {}
    for path in found:
        resolved = _absolute(path)
        unique.setdefault(str(resolved), resolved)
    return list(unique.values())


def _absolute(path: Path) -> Path:
    """``path`` resolved; a dangling link or a link loop as written (made absolute)."""
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop (Python < 3.13)
        return Path(os.path.abspath(path))
    # A dangling link resolves to where it points: keep the link's own name for its record.
    return resolved if resolved.exists() else Path(os.path.abspath(path))


def _id_of(stem: str) -> str:
    """A readable form of a file stem that is one safe file name (see ``safe_component``)."""
    text = re.sub(r"[/\\\x00]", "_", stem).replace(STALE, "_stale-").strip()
    if text in ("", ".", ".."):
        text = "video"  # '...mp4' has the stem '..': nothing readable to keep
    while len(text.encode()) > 150:
        text = text[:-1]
    return text


def video_ids(paths: list[Path]) -> list[str]:
    """A readable, stable, unique id per video, usable as a file name: the file stem; plus a
    short hash of the path when stems clash or the stem had to be cleaned (``...mp4`` is not
    the id ``..``). An id depends on its own file and the set of inputs, not their order."""
    digests = [hashlib.sha1(str(_absolute(Path(p))).encode()).hexdigest() for p in paths]
    stems = [Path(p).stem for p in paths]
    bases = [_id_of(stem) for stem in stems]
    counts = Counter(stems)  # a clean stem no other input shares keeps its own id
    for width in (8, 16, 40):
        ids = [
            base if base == stem and counts[stem] == 1 else f"{base}-{digest[:width]}"
            for base, stem, digest in zip(bases, stems, digests)
        ]
        if len(set(ids)) == len(ids):
            return ids
    raise TempleError(f"two inputs are the same file: {', '.join(str(p) for p in paths)}")
