"""JSONL manifests in the run directory: atomic line appends, resumable, sharded by rank.

A line is written with one ``write`` of the whole line and made durable (``fsync``) before
``append`` returns, so that what was reported done survives a crash. A process killed in
the middle of a write can at worst leave a torn last line without its newline; readers
ignore it and the next writer cuts it off before appending. Nothing else is ever lost.

Each process of a launch appends to its own shard file (``<name>.rank<r>.jsonl``); the
stage's last step merges every shard (and an earlier merged file) into ``<name>.jsonl``,
deduplicated by key and in a deterministic order.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from temple_core.errors import CorruptRecord
from temple_core.store.files import atomic_file, write_text_atomic


def _repair(path: Path) -> None:
    """Cut a torn last line (one without its newline) off ``path``."""
    if not path.exists():
        return
    with open(path, "rb+") as handle:
        size = handle.seek(0, os.SEEK_END)
        if size == 0:
            return
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            return
        # Walk back to the previous newline; everything after it is the torn line.
        position = size - 1
        chunk = 4096
        while position > 0:
            start = max(0, position - chunk)
            handle.seek(start)
            data = handle.read(position - start)
            cut = data.rfind(b"\n")
            if cut >= 0:
                handle.truncate(start + cut + 1)
                return
            position = start
        handle.truncate(0)


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Every complete line of a JSONL file (a torn last line is ignored)."""
    return list(iter_jsonl(path))


def iter_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    for _, record in iter_numbered(path):
        yield record


def iter_numbered(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, record)`` for every complete line; a line that is not a JSON object
    is a :class:`CorruptRecord` naming ``file:line`` (the file is left as it is, to fix)."""
    path = Path(path)
    if not path.exists():
        return
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, 1):
            if not raw.endswith(b"\n"):
                return  # torn by a crash mid-write: not a record
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                raise CorruptRecord(f"{path}:{number}: not a JSON line (not UTF-8 text); fix or remove that line") from None
            except json.JSONDecodeError as exc:
                raise CorruptRecord(f"{path}:{number}: not a JSON line ({exc.msg}); fix or remove that line") from None
            if not isinstance(record, dict):
                raise CorruptRecord(f"{path}:{number}: not a JSON object ({type(record).__name__}); fix or remove that line")
            yield number, record


def read_records(path: str | Path, factory=None, required: tuple[str, ...] = ()) -> list:
    """Every record of a run's JSONL file, checked: each has the ``required`` keys and
    ``factory(record)`` (e.g. ``VideoRecord.from_dict``) accepts it; anything else is a
    :class:`CorruptRecord` naming ``file:line``."""
    out = []
    for number, record in iter_numbered(path):
        missing = [key for key in required if key not in record]
        if missing:
            raise CorruptRecord(f"{path}:{number}: a record without {', '.join(map(repr, missing))}; fix or remove that line")
        if factory is not None:
            try:
                record = factory(record)
            except (TypeError, ValueError, KeyError, AttributeError) as exc:
                raise CorruptRecord(f"{path}:{number}: not a valid record ({exc}); fix or remove that line") from None
        out.append(record)
    return out


def append_jsonl(path: str | Path, record: dict[str, Any]) -> None:
    """Append one record as one line, durably."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, ensure_ascii=False, sort_keys=False) + "\n").encode("utf-8")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            view = memoryview(line)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        if exc.filename is None:  # os.write does not say which file: this one
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise


def write_jsonl_atomic(path: str | Path, records: Iterable[dict[str, Any]]) -> int:
    """Replace ``path`` with ``records`` all at once (write a temporary file, then rename)."""
    count = 0
    with atomic_file(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    return count


class ShardedJsonl:
    """One manifest of a stage (``<stage_dir>/<name>.jsonl``), written shard by shard."""

    def __init__(self, stage_dir: str | Path, name: str, key: str, rank: int = 0, world_size: int = 1):
        self.stage_dir = Path(stage_dir)
        self.name = name
        self.key = key
        self.rank = rank
        self.world_size = world_size
        self.stage_dir.mkdir(parents=True, exist_ok=True)
        self.shard_path = self.stage_dir / f"{name}.rank{rank}.jsonl"
        self.merged_path = self.stage_dir / f"{name}.jsonl"
        _repair(self.shard_path)

    @classmethod
    def at(cls, manifest: str | Path, key: str, rank: int = 0, world_size: int = 1) -> "ShardedJsonl":
        """The store whose merged manifest is ``manifest`` (``<stage_dir>/<name>.jsonl``)."""
        manifest = Path(manifest)
        return cls(manifest.parent, manifest.stem, key=key, rank=rank, world_size=world_size)

    def _sources(self) -> list[Path]:
        shards = sorted(self.stage_dir.glob(f"{self.name}.rank*.jsonl"))
        return [self.merged_path, *shards]

    def records(self) -> list[dict[str, Any]]:
        """Every record written so far by any rank, once per key (the first one written wins)."""
        seen: dict[Any, dict[str, Any]] = {}
        for source in self._sources():
            for number, record in iter_numbered(source):
                if self.key not in record:
                    raise CorruptRecord(f"{source}:{number}: a record without its key {self.key!r}; fix or remove that line")
                seen.setdefault(record[self.key], record)
        return list(seen.values())

    def done_keys(self) -> set:
        return {record[self.key] for record in self.records()}

    def append(self, record: dict[str, Any]) -> None:
        if self.key not in record:
            raise KeyError(f"record for {self.merged_path.name} lacks its key {self.key!r}")
        append_jsonl(self.shard_path, record)

    def merge(self, order: list | None = None) -> Path:
        """Write the merged manifest (ordered by ``order`` of keys, then by key) and drop the shards.

        Call it on one process after every rank has finished (see ``distributed.barrier``).
        """
        records = self.records()
        if order is not None:
            position = {key: i for i, key in enumerate(order)}
            records.sort(key=lambda r: (position.get(r[self.key], len(position)), str(r[self.key])))
        else:
            records.sort(key=lambda r: str(r[self.key]))
        write_jsonl_atomic(self.merged_path, records)
        for shard in self.stage_dir.glob(f"{self.name}.rank*.jsonl"):
            shard.unlink()
        return self.merged_path


def read_json(path: str | Path) -> Any:
    """A JSON file's content, or ``None`` when it is missing or cut off by a crash mid-write."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_json_atomic(path: str | Path, data: Any) -> None:
    """Replace a JSON file all at once (a temporary file, made durable, then renamed)."""
    write_text_atomic(path, json.dumps(data, indent=2, default=str) + "\n")
