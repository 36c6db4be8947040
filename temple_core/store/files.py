"""Whole files written all at once, and what a killed writer leaves behind.

A file that must never be seen half-written (a merged manifest, a sample video, the report,
a JSON summary) is written under a temporary name beside it, made durable, and renamed over
the real name (:func:`atomic_file`). The temporary name is always
``.<name>.tmp<pid>[<suffix>]`` (:func:`temp_path`): hidden, next to its file, and naming the
process that writes it. A writer that fails removes its temporary file; one that is killed
cannot, so the next run removes every temporary file whose process is gone
(:func:`clean_stale_temps`) -- never one of a process still alive.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

#: ``.<name>.tmp<pid>`` with an optional file ending kept for tools that go by it (``.mp4``).
TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.tmp(?P<pid>\d+)(?P<suffix>\.[A-Za-z0-9]+)?$")
#: Names of older temple versions, without the leading dot (e.g. the preset cache's
#: ``qwen2_vl-tiny-random.tmp<number>``): recognised where :func:`clean_stale_temps` is told to.
LEGACY_TEMP_NAME = re.compile(r"^(?P<name>.+)\.tmp(?P<pid>\d+)(?P<suffix>\.[A-Za-z0-9]+)?$")


def temp_path(path: str | Path, keep_suffix: bool = False) -> Path:
    """The temporary name of ``path`` for this process (``keep_suffix``: the same file ending,
    for writers that choose a format by it)."""
    path = Path(path)
    suffix = path.suffix if keep_suffix else ""
    return path.with_name(f".{path.name}.tmp{os.getpid()}{suffix}")


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_file(path: str | Path, keep_suffix: bool = False) -> Iterator[Path]:
    """``with atomic_file(out) as tmp: write tmp`` -- then ``tmp`` replaces ``out``. If the
    block fails, ``tmp`` is removed and ``out`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path, keep_suffix)
    try:
        yield tmp
        if tmp.is_file():
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            if tmp.is_dir() and not tmp.is_symlink():
                shutil.rmtree(tmp)
            else:
                tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    with atomic_file(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this machine (a reused pid counts as alive: its
    file is then kept, which is the safe mistake)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, ValueError):
        return False
    return True


def stale_temps(folder: str | Path, before: float | None = None, legacy: bool = False, recursive: bool = True) -> list[Path]:
    """Temporary files and folders under ``folder`` whose writing process is gone (and, with
    ``before``, last changed before that time)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    patterns = (TEMP_NAME, LEGACY_TEMP_NAME) if legacy else (TEMP_NAME,)
    found = []
    for current, dirs, files in os.walk(folder):
        for name in [*dirs, *files]:
            match = next((m for m in (p.match(name) for p in patterns) if m), None)
            if match is None or pid_alive(int(match["pid"])):
                continue
            path = Path(current) / name
            try:
                if before is not None and path.lstat().st_mtime >= before:
                    continue
            except OSError:
                continue
            found.append(path)
        dirs[:] = [d for d in dirs if Path(current, d) not in found] if recursive else []
    return found


def clean_stale_temps(folder: str | Path, before: float | None = None, legacy: bool = False) -> list[Path]:
    """Remove what :func:`stale_temps` finds; returns what was removed."""
    removed = []
    for path in stale_temps(folder, before, legacy):
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        except FileNotFoundError:
            continue
        removed.append(path)
    return removed

