"""Every path of a run directory, spelled once.

Stages, the ledger, the lock, the report and the summary ask :class:`RunLayout` where
things are instead of joining names themselves, so the run directory's contract
(ARCHITECTURE.md, docs/run-directory.md) lives in one place. :data:`ENTRIES` is that
contract as a table; docs/run-directory.md shows it and a test checks that the two agree.

Names that become paths (a training stage's name, a video id, a component's name) are
single path components, checked by :func:`safe_component` when they are read, so nothing a
recipe says can point outside the run. As a second line, every path a :class:`RunLayout`
hands out is checked to lie inside the run (:meth:`RunLayout.within`), and outputs are
deleted or moved aside only through it (:meth:`RunLayout.remove`, :meth:`RunLayout.move_aside`,
:meth:`TrainStageLayout.remove`), which refuse anything outside. The check is on the path as
written (``..`` resolved, links not followed): a symlink the user made inside the run, e.g.
``videos -> /big/disk``, is theirs, and removing it removes the link, not its target.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import attrs

from temple_core.errors import TempleError

#: ``(path under the run directory, what it holds)``, in the order a run writes them.
ENTRIES: tuple[tuple[str, str], ...] = (
    ("recipe.yaml", "the resolved recipe, as run (defaults filled in, paths absolute)"),
    ("ledger.jsonl", "the run's ledger: when each stage and sub-stage started and finished, with its fingerprint"),
    (".lock", "held by the `temple run` using the directory (host, pid, start time)"),
    ("videos/", "built-in sample videos, when the recipe asks for them"),
    ("select/videos.jsonl", "one line per input video"),
    ("select/thumbs/<video>/", "keyframe thumbnails (select.thumbnails: true)"),
    ("generate/captions.jsonl", "one line per selected video: clip captions, chosen, rejected responses"),
    ("generate/pairs.jsonl", "one line per kept preference pair"),
    ("generate/export/", "the pairs in other tools' formats (generate.exporters)"),
    ("train/<k>-<name>/", "one training stage: adapter, merged weights, metrics.jsonl, curves.png"),
    ("train/curves.png", "all training stages on one time axis"),
    ("train/final.json", "the stages' summaries and the final model's folder"),
    ("eval/<checkpoint>/<evaluator>.json", "score, 95% interval, settings (+ <evaluator>.jsonl: per-item records)"),
    ("eval/index.json", "the evaluated checkpoints and evaluators, in recipe order"),
    ("eval/_data/<evaluator>/", "held-out videos and clip captions shared by every checkpoint"),
    ("report.html", "what a person looks at (temple report RUN_DIR)"),
    ("<folder>.stale-<time>/", "outputs made outdated by a change to the recipe, moved aside, never deleted"),
)

STALE = ".stale-"
_UNSAFE = re.compile(r"[/\\\x00]")


class OutsideRun(TempleError, ValueError):
    """A path that would take a write, a move or a delete outside the run directory (a
    ``ValueError`` too, like :func:`safe_component`'s refusals)."""

    exit_code = 2


def _normal(path) -> str:
    return os.path.normpath(os.path.abspath(os.fspath(path)))


def _inside(base, path, strict: bool) -> bool:
    """Whether ``path`` is ``base`` or below it (``strict``: below it), lexically."""
    base, path = _normal(base), _normal(path)
    if path == base:
        return not strict
    return path.startswith(base.rstrip(os.sep) + os.sep)


def _remove(path: Path) -> None:
    """Delete a file, a link (not its target) or a folder tree; nothing there is fine."""
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.is_dir():
        shutil.rmtree(path)


def safe_component(name: str, what: str = "name") -> str:
    """``name`` if it is one usable path component; ``ValueError`` saying why otherwise."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{what} must be a non-empty string")
    if name in (".", "..") or _UNSAFE.search(name) or name != name.strip():
        raise ValueError(f"{what} {name!r} must be a single file name (no '/', '\\', '..' or surrounding spaces)")
    if STALE in name:
        raise ValueError(f"{what} {name!r} must not contain {STALE!r} (temple's name for outdated outputs)")
    if len(name.encode()) > 200:
        raise ValueError(f"{what} is longer than 200 bytes")
    return name


@attrs.frozen
class RunLayout:
    """The paths of one run directory (``root``)."""

    root: Path = attrs.field(converter=Path)

    # -- the run -----------------------------------------------------------------------
    @property
    def recipe(self) -> Path:
        return self.root / "recipe.yaml"

    @property
    def ledger(self) -> Path:
        return self.root / "ledger.jsonl"

    @property
    def lock(self) -> Path:
        return self.root / ".lock"

    @property
    def report(self) -> Path:
        return self.root / "report.html"

    @property
    def samples_dir(self) -> Path:
        return self.root / "videos"

    def stage_dir(self, stage: str) -> Path:
        return self.within(self.root / safe_component(stage, "stage"))

    # -- select --------------------------------------------------------------------------
    @property
    def select_dir(self) -> Path:
        return self.stage_dir("select")

    @property
    def videos(self) -> Path:
        return self.select_dir / "videos.jsonl"

    @property
    def thumbs_dir(self) -> Path:
        return self.select_dir / "thumbs"

    def thumbnail(self, video_id: str, frame: int) -> Path:
        """A keyframe's JPEG thumbnail (``select.thumbnails: true``)."""
        return self.within(self.thumbs_dir / safe_component(video_id, "video id") / f"{int(frame)}.jpg")

    # -- generate ------------------------------------------------------------------------
    @property
    def generate_dir(self) -> Path:
        return self.stage_dir("generate")

    @property
    def captions(self) -> Path:
        return self.generate_dir / "captions.jsonl"

    @property
    def pairs(self) -> Path:
        return self.generate_dir / "pairs.jsonl"

    def export(self, exporter: str, suffix: str = "jsonl") -> Path:
        name = safe_component(f"{safe_component(exporter, 'exporter')}.{suffix}", "export file")
        return self.within(self.generate_dir / "export" / name)

    # -- train ---------------------------------------------------------------------------
    @property
    def train_dir(self) -> Path:
        return self.stage_dir("train")

    def train_stage(self, index: int, name: str) -> "TrainStageLayout":
        folder = self.within(self.train_dir / f"{int(index)}-{safe_component(name, 'train stage name')}")
        return TrainStageLayout(folder)

    def train_stages(self) -> list[Path]:
        """The current (not moved-aside) ``<k>-<name>`` folders of ``train/``, in stage order."""
        found = []
        if self.train_dir.is_dir():
            for folder in self.train_dir.iterdir():
                head, _, rest = folder.name.partition("-")
                if folder.is_dir() and head.isdigit() and rest and STALE not in folder.name:
                    found.append((int(head), folder.name, folder))
        return [folder for _, _, folder in sorted(found)]

    @property
    def train_curves(self) -> Path:
        return self.train_dir / "curves.png"

    @property
    def train_final(self) -> Path:
        return self.train_dir / "final.json"

    @property
    def sft_compare(self) -> Path:
        return self.train_dir / "sft_compare.png"

    # -- eval ----------------------------------------------------------------------------
    @property
    def eval_dir(self) -> Path:
        return self.stage_dir("eval")

    @property
    def eval_index(self) -> Path:
        return self.eval_dir / "index.json"

    def eval_checkpoint(self, checkpoint: str) -> Path:
        """``eval/<checkpoint>/``: every evaluator's results on one checkpoint."""
        name = safe_component(checkpoint, "checkpoint name")
        if name.startswith("_"):
            raise ValueError(f"checkpoint name {name!r} must not start with '_' (eval/_data/ is temple's)")
        return self.within(self.eval_dir / name)

    def eval_result(self, checkpoint: str, evaluator: str) -> Path:
        return self.eval_checkpoint(checkpoint) / f"{safe_component(evaluator, 'evaluator label')}.json"

    def eval_data(self, evaluator: str) -> Path:
        """``eval/_data/<evaluator>/``: what an evaluator prepares once for every checkpoint."""
        return self.within(self.eval_dir / "_data" / safe_component(evaluator, "evaluator label"))

    # -- the guard: nothing outside the run ---------------------------------------------
    def inside(self, path) -> bool:
        """Whether ``path`` is the run directory or lies inside it (``..`` resolved, links
        not followed: see the module doc)."""
        return _inside(self.root, path, strict=False)

    def within(self, path) -> Path:
        """``path``, if it lies inside the run directory; :class:`OutsideRun` otherwise."""
        if not self.inside(path):
            raise OutsideRun(f"refusing {path}: not inside the run directory {self.root}")
        return Path(path)

    def _below(self, path, what: str) -> Path:
        path = self.within(path)
        if _normal(path) == _normal(self.root):
            raise OutsideRun(f"refusing to {what} {path}: not inside the run directory {self.root} (it is the run directory itself)")
        return path

    def remove(self, path) -> None:
        """Delete ``path`` (a file, a link or a folder) inside the run; nothing there is fine."""
        _remove(self._below(path, "delete"))

    def move_aside(self, folder: Path) -> Path:
        """Rename an outdated ``folder`` to ``<name>.stale-<time>`` beside it (kept, never deleted)."""
        folder = self._below(folder, "move")
        stamp = time.strftime("%Y%m%d-%H%M%S")
        aside = folder.with_name(f"{folder.name}{STALE}{stamp}")
        n = 1
        while aside.exists():
            n += 1
            aside = folder.with_name(f"{folder.name}{STALE}{stamp}-{n}")
        folder.rename(aside)
        return aside


@attrs.frozen
class TrainStageLayout:
    """The paths inside one training stage's folder (``train/<k>-<name>/``)."""

    folder: Path = attrs.field(converter=Path)

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def merged(self) -> Path:
        return self.folder / "merged"

    @property
    def merged_tmp(self) -> Path:
        """Where ``merged/`` is written before it is renamed into place (always complete)."""
        return self.folder / "merged.tmp"

    @property
    def adapter(self) -> Path:
        return self.folder / "adapter"

    @property
    def checkpoints(self) -> Path:
        return self.folder / "checkpoints"

    @property
    def metrics(self) -> Path:
        return self.folder / "metrics.jsonl"

    @property
    def curves(self) -> Path:
        return self.folder / "curves.png"

    @property
    def skipped(self) -> Path:
        return self.folder / "skipped.jsonl"

    @property
    def skipped_in_batches(self) -> Path:
        """Samples that failed in their batch while training (and what replaced them): one
        shard per process while the stage trains (its DataLoader workers append to it too),
        merged into this file by the main process when the stage has trained."""
        return self.folder / "skipped_in_batches.jsonl"

    def remove(self, path) -> None:
        """Delete ``path`` inside this stage's folder (checkpoints, a stale ``merged.tmp``);
        anything else is refused (:class:`OutsideRun`)."""
        if not _inside(self.folder, path, strict=True):
            raise OutsideRun(f"refusing to delete {path}: not inside the training stage's folder {self.folder}")
        _remove(Path(path))

    def publish_merged(self, tmp: Path) -> Path:
        """Put a completely written ``merged.tmp`` in place of ``merged/``."""
        self.remove(self.merged)
        Path(tmp).rename(self.merged)
        return self.merged


#: What a training stage's folder holds (docs/training.md shows it).
TRAIN_STAGE_ENTRIES: tuple[tuple[str, str], ...] = (
    ("checkpoints/", "the Trainer's checkpoints while it runs (deleted once the ledger records the stage finished)"),
    ("adapter/", "the LoRA adapter"),
    ("merged/", "the adapter merged into the weights: the next stage's start and DPO reference"),
    ("metrics.jsonl", "one line per logged step (loss, rewards, grad norm, lr, ...)"),
    ("curves.png", "the stage's training curves"),
    ("skipped.jsonl", "samples left out because their video cannot be read"),
    ("skipped_in_batches.jsonl", "samples that failed in their batch while training (too long, undecodable) and what replaced them"),
)


def doc_tree() -> str:
    """The run directory's contract as the fenced block of docs/run-directory.md shows it."""
    width = max(len(path) for path, _ in ENTRIES) + len("<run_dir>/") + 2
    return "\n".join(f"{'<run_dir>/' + path:<{width}}{meaning}" for path, meaning in ENTRIES)
