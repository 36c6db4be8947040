"""Running temple where the disk says no: a read-only run directory, a size limit on files, a
tiny full file system. Real conditions, made with what the machine allows:

* read-only: ``chmod`` for an ordinary user; as root (whom permissions do not stop) a
  read-only bind mount in a private mount namespace (``unshare -rm``);
* a size limit: ``RLIMIT_FSIZE`` in the child process (``write`` fails with ``EFBIG``, the
  error a full quota or a file-size cap gives);
* a full disk: a small ``tmpfs`` mounted in a private mount namespace (``ENOSPC``).
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TEMPLE = [sys.executable, "-m", "temple_core"]


def _env(extra: dict | None = None) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", **(extra or {})}


def temple(*args: str, cwd: Path, env: dict | None = None, limit_bytes: int | None = None, prefix=(), timeout=600):
    """``python -m temple_core ARGS`` in a child process (optionally under a file-size limit)."""

    def limit():
        if limit_bytes is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run(
        [*prefix, *TEMPLE, *args], cwd=cwd, env=_env(env), capture_output=True, text=True,
        preexec_fn=limit, timeout=timeout,
    )


def namespaces_work() -> bool:
    if shutil.which("unshare") is None:
        return False
    try:
        return subprocess.run(["unshare", "-rm", "true"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


class ReadOnly:
    """``with ReadOnly(folder) as prefix: temple(..., prefix=prefix)``: the folder is read-only
    for the command (and, for an ordinary user, for this process too until the block ends)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self._modes: list[tuple[Path, int]] = []

    def __enter__(self) -> list[str]:
        if os.geteuid() != 0:
            for path in [self.folder, *self.folder.rglob("*")]:
                if not path.is_symlink():
                    self._modes.append((path, path.stat().st_mode))
                    path.chmod(path.stat().st_mode & ~0o222)
            return []
        if not namespaces_work():
            pytest.skip("running as root without user namespaces: no way to make a folder read-only here")
        script = 'd="$1"; shift; mount --bind "$d" "$d" && mount -o remount,bind,ro "$d" "$d" && exec "$@"'
        return ["unshare", "-rm", "sh", "-c", script, "sh", str(self.folder)]

    def __exit__(self, *exc) -> None:
        for path, mode in reversed(self._modes):
            path.chmod(mode)


def tree(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` with its size and modification time (to see that nothing changed)."""
    out = {}
    for path in sorted(Path(folder).rglob("*")):
        if path.is_file():
            stat = path.stat()
            out[str(path.relative_to(folder))] = (stat.st_size, stat.st_mtime_ns)
    return out


def one_line(result) -> str:
    """The error line of a failed run: exactly one line on stderr, no traceback."""
    err = result.stderr
    assert "Traceback" not in err, err[-3000:]
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err[-3000:]
    return lines[0]
