"""The run's ledger: one record of every stage and sub-stage, one way to tell what is done.

Every unit of work that can be finished, outdated or interrupted -- a stage (``select``,
``generate``, ``train``) or a sub-stage (``train/0-dpo``) -- is recorded the same way in
``<run_dir>/ledger.jsonl`` (durable appends, see :mod:`temple_core.store.jsonl`):

* ``started``: the unit's *fingerprint* (a hash of what it was asked to do) and its
  *upstream* (the stamp of the unit whose outputs it reads);
* ``finished``: the same, plus a fresh *stamp* and the unit's summary;
* ``moved_aside``: its folder was outdated and renamed to ``<folder>.stale-<time>``.

The last record of a unit is its state. :meth:`Ledger.finished` is the one up-to-date
check (finished, same fingerprint, same upstream, folder present, and the outputs its finish
record names -- a stage's sub-stage outputs); :meth:`Ledger.begin` is
the one way to start or resume work (an interrupted unit with the same fingerprint and
upstream resumes in place; anything else in its folder is moved aside first, never
deleted); :meth:`Ledger.finish` records completion. Only the main process of a launch
writes the ledger; the others wait at the stage's barriers.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import yaml

from temple_core.store.jsonl import append_jsonl, iter_jsonl
from temple_core.store.layout import RunLayout

STARTED, FINISHED, MOVED = "started", "finished", "moved_aside"


def fingerprint(payload: Any) -> str:
    """A short hash of plain data (sorted keys), to tell whether a unit's work is stale."""
    text = yaml.safe_dump(payload, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@attrs.frozen
class Entry:
    """One record of the ledger."""

    unit: str
    event: str
    fingerprint: str | None = None
    upstream: str | None = None
    stamp: str | None = None
    time: str = ""
    seconds: float | None = None
    summary: dict[str, Any] = attrs.Factory(dict)
    moved_to: str | None = None
    pid: int | None = None
    #: What a ``finished`` record vouches for beyond the unit's folder (paths relative to the
    #: run directory): a stage with sub-stages names their outputs, so that deleting one of
    #: them makes the stage run again (it then redoes only what is missing).
    outputs: list[str] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in attrs.asdict(self).items() if v is not None and v != {}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Entry":
        names = {f.name for f in attrs.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


class Ledger:
    """The ledger of one run directory."""

    def __init__(self, layout: RunLayout | str | Path, log=print):
        self.layout = layout if isinstance(layout, RunLayout) else RunLayout(layout)
        self.path = self.layout.ledger
        self.log = log

    # -- reading -------------------------------------------------------------------------
    def states(self) -> dict[str, Entry]:
        """The last record of every unit."""
        last: dict[str, Entry] = {}
        for record in iter_jsonl(self.path):
            entry = Entry.from_dict(record)
            last[entry.unit] = entry
        return last

    def state(self, unit: str) -> Entry | None:
        return self.states().get(unit)

    def finished(self, unit: str, fingerprint: str, upstream: str | None, outputs: Path | Sequence[Path]) -> Entry | None:
        """The unit's ``finished`` record when it is up to date: same fingerprint, same
        upstream stamp, and its outputs (its folder, or its files, and whatever its finish
        record names) still there. ``None`` means it has work to do."""
        entry = self.state(unit)
        if (
            entry is not None
            and entry.event == FINISHED
            and entry.fingerprint == fingerprint
            and entry.upstream == upstream
            and all(p.exists() for p in _paths(outputs))
            and all((self.layout.root / p).exists() for p in entry.outputs or ())
        ):
            return entry
        return None

    # -- writing (main process only) -----------------------------------------------------
    def begin(
        self, unit: str, outputs: Path | Sequence[Path], fingerprint: str, upstream: str | None, *, keep_folder: bool = False
    ) -> str:
        """Start or resume ``unit``; returns ``"resumed"`` or ``"started"``.

        ``outputs`` is the unit's folder, or the files it writes (a unit that shares a folder
        with others, e.g. one evaluator on one checkpoint). It resumes when its last record is
        ``started`` with this fingerprint and upstream and an output exists (an interrupted
        run: the unit skips the items it finished). Otherwise existing outputs are outdated (or
        unknown) and are moved aside, unless ``keep_folder`` (a stage whose sub-stages keep
        their own records)."""
        paths = _paths(outputs)
        entry = self.state(unit)
        resumable = (
            entry is not None
            and entry.event == STARTED
            and entry.fingerprint == fingerprint
            and entry.upstream == upstream
        )
        present = [p for p in paths if p.exists()]
        if present and not resumable and not keep_folder:
            for path in present:
                aside = self.layout.move_aside(path)
                self._append(Entry(unit, MOVED, fingerprint=entry.fingerprint if entry else None, moved_to=str(aside)))
                self.log(f"[{unit}] outdated by a change to the recipe or an earlier stage: old outputs moved to {aside}")
        outcome = "resumed" if resumable and present else "started"
        self._append(Entry(unit, STARTED, fingerprint=fingerprint, upstream=upstream))
        return outcome

    def finish(
        self, unit: str, fingerprint: str, upstream: str | None, summary: dict[str, Any], seconds: float,
        outputs: Sequence[Path] = (),
    ) -> Entry:
        """Record ``unit`` as finished; its new stamp is the upstream of what reads it.
        ``outputs``: files or folders the record vouches for besides the unit's own folder
        (:meth:`finished` requires them too)."""
        root = self.layout.root.resolve()
        named = []
        for path in outputs:
            path = Path(path).resolve()
            named.append(str(path.relative_to(root)) if path.is_relative_to(root) else str(path))
        entry = Entry(
            unit, FINISHED, fingerprint=fingerprint, upstream=upstream, stamp=uuid.uuid4().hex,
            seconds=round(float(seconds), 2), summary=json.loads(json.dumps(summary, default=str)),
            outputs=named or None,
        )
        self._append(entry)
        return entry

    def stamp(self, unit: str) -> str | None:
        """The stamp of the unit's last finish, when that is its state (else ``None``)."""
        entry = self.state(unit)
        return entry.stamp if entry is not None and entry.event == FINISHED else None

    def _append(self, entry: Entry) -> None:
        entry = attrs.evolve(entry, time=time.strftime("%Y-%m-%d %H:%M:%S"), pid=os.getpid())
        append_jsonl(self.path, entry.to_dict())


def _paths(outputs: Path | Sequence[Path]) -> list[Path]:
    return [Path(outputs)] if isinstance(outputs, (str, Path)) else [Path(p) for p in outputs]
