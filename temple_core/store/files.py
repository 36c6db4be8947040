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
import errno
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

from temple_core.errors import StorageError

#: ``.<name>.tmp<pid>`` with an optional file ending kept for tools that go by it (``.mp4``).
TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.tmp(?P<pid>\d+)(?P<suffix>\.[A-Za-z0-9]+)?$")
#: Names of older temple versions, without the leading dot (e.g. the preset cache's
#: ``qwen2_vl-tiny-random.tmp<number>``): recognised where :func:`clean_stale_temps` is told to.
LEGACY_TEMP_NAME = re.compile(r"^(?P<name>.+)\.tmp(?P<pid>\d+)(?P<suffix>\.[A-Za-z0-9]+)?$")
#: A legacy name is removed only when it is this old (seconds): its number is no pid to check.
LEGACY_MIN_AGE = 3600


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
    except BaseException as exc:
        with contextlib.suppress(OSError):
            if tmp.is_dir() and not tmp.is_symlink():
                shutil.rmtree(tmp)
            else:
                tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno is not None and exc.filename in (None, str(tmp)):
            # Name the file being written (a write() names none; the temporary one means it).
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
    _fsync_dir(path.parent)


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    with atomic_file(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


# -- the file system saying no ---------------------------------------------------------

#: What a write can fail with that the user, not temple, has to fix.
STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM}
#: How libraries that do not raise ``OSError`` say so: torch's zip writer, safetensors (Rust
#: ``io::ErrorKind`` names), messages that only carry ``strerror``.
_STORAGE_WORDS = {
    "No space left on device": errno.ENOSPC, "StorageFull": errno.ENOSPC,
    "Disk quota exceeded": errno.EDQUOT, "QuotaExceeded": errno.EDQUOT,
    "File too large": errno.EFBIG, "FileTooLarge": errno.EFBIG,
    "Read-only file system": errno.EROFS, "ReadOnlyFilesystem": errno.EROFS,
    "Permission denied": errno.EACCES, "PermissionDenied": errno.EACCES,
    "file write failed": None,
}


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def storage_error(exc: BaseException, where: str | Path | None = None) -> StorageError | None:
    """The :class:`StorageError` that ``exc`` (or an error it came from) is, or ``None``.
    ``where``: what was being written, named when the error itself names no file."""
    if isinstance(exc, StorageError):
        return exc
    for link in _chain(exc):
        if isinstance(link, OSError) and link.errno in STORAGE_ERRNOS:
            verb = "access" if link.errno in (errno.EACCES, errno.EPERM) else "write"
            return StorageError(link.filename or where or "a file", os.strerror(link.errno), verb)
    for link in _chain(exc):
        text = str(link)
        for words, code in _STORAGE_WORDS.items():
            if words in text:
                reason = os.strerror(code) if code is not None else _disk_reason(where)
                return StorageError(where or "a file", reason)
    return None


def _disk_reason(where) -> str:
    """Why a write failed when the library does not say (torch: "file write failed")."""
    try:
        free = shutil.disk_usage(Path(where) if where else Path.cwd()).free
    except OSError:
        free = None
    if free is not None and free < 64 * 2**20:
        return f"{os.strerror(errno.ENOSPC)} ({free // 2**10} KiB free)"
    return "a write failed (a full disk, a quota or a file-size limit)"


@contextlib.contextmanager
def storage_errors(where: str | Path) -> Iterator[None]:
    """Turn a refused write inside the block into one :class:`StorageError` naming the file
    (or ``where``, the folder being written, when the error names none)."""
    try:
        yield
    except Exception as exc:
        error = storage_error(exc, where)
        if error is None or error is exc:
            raise
        raise error from exc


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
    found = []
    old = time.time() - LEGACY_MIN_AGE
    for current, dirs, files in os.walk(folder):
        for name in [*dirs, *files]:
            match = TEMP_NAME.match(name)
            cutoff = before
            if match is None and legacy:
                # Not a pid (older presets used an object id): only when clearly abandoned.
                match = LEGACY_TEMP_NAME.match(name)
                cutoff = old if before is None else min(before, old)
            if match is None or pid_alive(int(match["pid"])):
                continue
            path = Path(current) / name
            try:
                if cutoff is not None and path.lstat().st_mtime >= cutoff:
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
        except OSError:  # gone meanwhile, or a read-only run: left as it is
            continue
        removed.append(path)
    return removed

