"""The run-directory lock: one ``temple run`` at a time on a run directory.

Two runs on one directory would append every manifest line twice, train finished stages
again and move each other's outputs aside. The launching process of a run (rank 0 of a
launch; the other ranks follow it through the stage barriers) holds an exclusive
``flock`` on ``<run_dir>/.lock`` for as long as it runs, and writes who it is into the
file: host, pid, start time. A second run is refused at once with that holder named
(:class:`RunLocked`, exit code 2), or waits for it (``temple run --wait``).

The operating system releases a ``flock`` when its holder dies, however it dies, so a
killed run never leaves the directory locked: the next run takes the lock over and says
whose it was. (``flock`` is per machine: on a network file system shared by several hosts,
run one launch per directory.)

A read-only run directory is locked too (``flock`` needs no write access; the holder is not
written), so that a run with nothing to do there succeeds; one with work to do fails at its
first write, with one line (:class:`temple_core.errors.StorageError`).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from pathlib import Path

from temple_core.errors import TempleError
from temple_core.store.layout import RunLayout


class RunLocked(TempleError):
    """The run directory is in use by another ``temple run``."""

    exit_code = 2


def _describe(holder: dict | None) -> str:
    if not holder:
        return "another process (it has not said who it is yet)"
    return f"`temple run` on host {holder.get('host', '?')}, pid {holder.get('pid', '?')}, since {holder.get('started', '?')}"


class RunLock:
    """``with RunLock(layout).acquire(wait=False):`` -- held until the block ends or the process dies."""

    def __init__(self, layout: RunLayout | str | Path, log=print):
        self.layout = layout if isinstance(layout, RunLayout) else RunLayout(layout)
        self.path = self.layout.lock
        self.log = log
        self._fd: int | None = None
        self._writable = True

    def holder(self) -> dict | None:
        """Who holds (or last held) the lock, as it wrote itself into the file."""
        try:
            text = self.path.read_text()
        except OSError:
            return None
        try:
            data = json.loads(text) if text.strip() else None
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    def acquire(self, wait: bool = False, poll: float = 1.0) -> "RunLock":
        if self._fd is not None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writable = True
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            if exc.errno not in (errno.EROFS, errno.EACCES, errno.EPERM) or not self.path.is_file():
                raise
            fd = os.open(self.path, os.O_RDONLY)  # a read-only run directory: lock, write nothing
            self._writable = False
        try:
            announced = False
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    holder = self.holder()
                    if not wait:
                        raise RunLocked(
                            f"{self.layout.root} is in use by {_describe(holder)}; "
                            "wait for it with `temple run --wait`, or stop that run"
                        ) from None
                    if not announced:
                        self.log(f"waiting for {self.layout.root}: in use by {_describe(holder)}")
                        announced = True
                    time.sleep(poll)
            previous = self.holder()
            if not self._writable:
                self._fd = fd
                return self
            if previous and previous.get("pid") != os.getpid():
                # A clean release empties the file: a holder still named there died holding it.
                self.log(f"took over the lock of {self.layout.root} from {_describe(previous)}, which ended without releasing it")
            me = {
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            }
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            if self._writable:
                os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
