"""A persistent decoder process, so that decoding overlaps with the work done on the frames.

A streaming pass (:meth:`temple_core.video.source.VideoSource.iter_frames`) is decoding, pixel
conversion and per-frame grayscale ranges on one side, and a shot detector on the other. Both
are CPU work that holds the GIL, so a thread does not overlap them; a second *process* does.
The worker is started once per process that needs it (``python -c``, a fresh interpreter: no
fork of a process that may hold torch/OpenMP state, no re-import of the caller's
``__main__``) and reused for every video, so its start-up (~0.3 s) is paid once.

Protocol. The parent sends small pickled messages over a socket pair; frames travel through a
ring of ``SLOTS`` slots in a shared memory file the parent creates (and unlinks as soon as
the worker has mapped it, so nothing is left behind whatever happens to either process). The
worker decodes and converts exactly as the in-process pass does (the same
:class:`temple_core.video.decoding.Converter` and :class:`temple_core.video.decoding.GrayRanges`, so the
frames and ranges are the same bytes), fills a free slot with up to ``MAX_CHUNK`` frames and
says so (``frames``); the parent copies the chunk out, hands the slot back (``free``) and
yields the frames. Memory is bounded by the ring (``SLOTS`` slots of ``max(SLOT_BYTES, one
frame)``) and one chunk in the parent, whatever the video's length.

Failures. An error the in-process pass would raise (cannot open, decoding failed) comes back
as the same :class:`~temple_core.errors.VideoError`; a worker that dies, stalls
(``STALL_SECONDS`` without a message) or fails in any other way is a ``VideoError`` for that
video, and the next pass starts a new worker. A pass abandoned early is cancelled. The worker
exits when told to (``atexit``), or when the parent's end of the socket closes.
"""

from __future__ import annotations

import atexit
import mmap
import os
import socket
import subprocess
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

from temple_core.errors import VideoError
from temple_core.video.decoding import Converter, GrayRanges, decode_frames

SLOTS = 4
SLOT_BYTES = 1 << 20  # a slot holds at least this much (or one frame, if larger)
MAX_CHUNK = 32  # frames per slot at most (latency of the first frame of a pass)
STALL_SECONDS = 120.0  # no message from a live worker for this long: it is stuck
START_SECONDS = 60.0  # the worker must answer its first job within this
PIPE_FORMATS = {"rgb24": 3, "bgr24": 3, "gray": 1, "gray8": 1}


class _Cancelled(Exception):
    pass


class _Stop(Exception):
    pass


def _close_ring(ring: mmap.mmap | None) -> None:
    """Close a ring mapping; one a numpy view still exports is left to the garbage collector."""
    if ring is not None:
        try:
            ring.close()
        except BufferError:
            pass


def _shm_dir() -> str:
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()


# -- the worker process ------------------------------------------------------------------


class _Job:
    def __init__(self, conn: Connection, ring: mmap.mmap, message: tuple):
        (_, self.id, self.path, self.width, self.height, self.format, self.gray, _, _, self.slot_bytes,
         self.nslots) = message
        self.conn, self.ring = conn, ring
        self.free = list(range(self.nslots))

    def _handle(self, message) -> None:
        kind = message[0]
        if kind == "stop":
            raise _Stop
        if len(message) > 1 and message[1] == self.id:
            if kind == "free":
                self.free.append(message[2])
            elif kind == "cancel":
                raise _Cancelled
        # Anything else is stale (a previous job's): ignore it.

    def poll(self) -> None:
        while self.conn.poll(0):
            self._handle(self.conn.recv())

    def slot(self) -> int:
        self.poll()
        while not self.free:
            self._handle(self.conn.recv())
        return self.free.pop(0)

    def run(self) -> None:

        convert = Converter(self.width, self.height, self.format)
        measure = GrayRanges(self.gray, self.width, self.height, self.format) if self.gray else None
        slot, n, shape, nbytes, ranges, view = -1, 0, None, 0, [], None
        count = 0

        def flush():
            nonlocal n, ranges, view
            if n:
                self.conn.send(("frames", self.id, slot, n, shape, ranges))
                n, ranges, view = 0, [], None
                self.poll()

        try:
            try:
                for frame in decode_frames(Path(self.path)):
                    array = convert(frame)
                    gray = measure(frame, array) if measure is not None else None
                    count += 1
                    if array.nbytes > self.slot_bytes:  # larger than planned (size change): inline
                        flush()
                        self.conn.send(("inline", self.id, np.ascontiguousarray(array), gray))
                        continue
                    if n and (array.shape != shape or n == MAX_CHUNK or (n + 1) * nbytes > self.slot_bytes):
                        flush()
                    if n == 0:
                        slot, shape, nbytes = self.slot(), array.shape, array.nbytes
                        view = np.frombuffer(self.ring, np.uint8, count=self.slot_bytes, offset=slot * self.slot_bytes)
                    np.copyto(view[n * nbytes : (n + 1) * nbytes].reshape(shape), array)
                    if gray is not None:
                        ranges.append(gray)
                    n += 1
            except VideoError as exc:  # cannot open, decoding failed: the in-process pass's own error
                flush()
                self.conn.send(("error", self.id, "video", str(exc)))
                return
            flush()
        except (_Cancelled, _Stop):
            raise
        except Exception as exc:  # conversion or anything else: this video fails, the worker goes on
            self.conn.send(("error", self.id, "internal", f"{type(exc).__name__}: {exc}"))
            return
        finally:
            view = None
        self.conn.send(("end", self.id, count))


def worker_main(fd: int) -> None:
    """The worker's loop: one job at a time until ``stop`` or the parent goes away."""
    conn = Connection(fd)
    ring, ring_path = None, None
    try:
        while True:
            message = conn.recv()
            if message[0] == "stop":
                return
            if message[0] != "job":
                continue  # stale free/cancel of a finished job
            path, size = message[7], message[8]
            if path is not None and path != ring_path:
                _close_ring(ring)
                with open(path, "r+b") as handle:
                    ring = mmap.mmap(handle.fileno(), size)
                ring_path = path
            job = _Job(conn, ring, message)
            try:
                job.run()
            except _Cancelled:
                conn.send(("cancelled", job.id))
            except _Stop:
                return
    except (EOFError, OSError, KeyboardInterrupt):
        return  # the parent is gone (or interrupted): nothing to report to


# -- the parent's side -------------------------------------------------------------------


class DecodeWorker:
    """The parent's handle on one worker process (started on first use, restarted after a
    failure). One pass at a time: :meth:`try_pass` returns ``None`` while another is running."""

    def __init__(self):
        self.process: subprocess.Popen | None = None
        self.conn: Connection | None = None
        self.ring: mmap.mmap | None = None
        self.ring_path: str | None = None
        self.ring_size = 0
        self.jobs = 0
        self.owner = os.getpid()
        self._lock = threading.Lock()

    # lifecycle
    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None and self.process.poll() is None else None

    def start(self) -> None:
        if self.process is not None and self.process.poll() is None:
            return
        self._reset()
        parent, child = socket.socketpair()
        root = str(Path(__file__).resolve().parents[2])
        code = (
            f"import sys; sys.path.insert(0, {root!r}); "
            f"from temple_core.video.worker import worker_main; worker_main({child.fileno()})"
        )
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-c", code], pass_fds=(child.fileno(),), stdin=subprocess.DEVNULL, close_fds=True
            )
        finally:
            child.close()
        self.conn = Connection(parent.detach())

    def _reset(self, kill: bool = False) -> None:
        """Forget the worker (killing it when asked) and the ring."""
        if self.conn is not None:
            try:
                if not kill:
                    self.conn.send(("stop",))
            except OSError:
                pass
            self.conn.close()
            self.conn = None
        if self.process is not None:
            if kill:
                self.process.kill()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None
        _close_ring(self.ring)
        self.ring = None
        self._unlink_ring()
        self.ring_size = 0

    def _unlink_ring(self) -> None:
        if self.ring_path is not None:
            try:
                os.unlink(self.ring_path)
            except FileNotFoundError:
                pass
            self.ring_path = None

    def close(self) -> None:
        """Stop the worker (it finishes nothing: a pass in flight is abandoned)."""
        if os.getpid() != self.owner:
            return  # a forked copy: the worker belongs to the parent
        self._reset()

    def _new_ring(self, size: int) -> str:
        _close_ring(self.ring)
        self._unlink_ring()
        fd, path = tempfile.mkstemp(prefix="temple-decode-", dir=_shm_dir())
        try:
            os.ftruncate(fd, size)
            self.ring = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self.ring_path, self.ring_size = path, size
        return path

    # passes
    def try_pass(self, path, width, height, format, frame_shape, gray: str | None) -> Iterator[tuple] | None:
        """An iterator of ``(frames, gray_ranges)`` chunks for one pass, or ``None`` when the
        worker is busy with another pass (the caller decodes in-process then). ``gray``: the
        rule of the ranges (``rgb`` / ``luma``), ``None`` for none."""
        if not self._lock.acquire(blocking=False):
            return None
        try:
            self.start()
        except OSError as exc:
            self._lock.release()
            warnings.warn(f"decode worker could not start ({exc}); decoding in-process", stacklevel=3)
            return None
        return self._pass(str(path), width, height, format, frame_shape, gray)

    def _pass(self, path, width, height, format, frame_shape, gray) -> Iterator[tuple]:
        try:
            slot_bytes = max(SLOT_BYTES, int(np.prod(frame_shape)))
            for attempt in range(2):
                try:
                    self.start()  # a new worker if the last one died while idle
                    ring_path = None
                    if self.ring is None or self.ring_size < SLOTS * slot_bytes:
                        ring_path = self._new_ring(SLOTS * slot_bytes)
                    self.jobs += 1
                    job = self.jobs
                    message = ("job", job, path, width, height, format, gray, ring_path, self.ring_size, slot_bytes, SLOTS)
                    self.conn.send(message)
                    break
                except OSError as exc:
                    self._reset(kill=True)
                    if attempt:
                        raise VideoError(f"{path}: decode worker unavailable ({exc})") from exc
        except BaseException:
            self._lock.release()
            raise
        finished = False
        first = True
        try:
            while True:
                message = self._recv(path, START_SECONDS if first else STALL_SECONDS)
                if first:
                    first = False
                    self._unlink_ring()  # mapped by the worker now: no name left behind
                kind = message[0]
                if len(message) < 2 or message[1] != job:
                    continue
                if kind == "frames":
                    _, _, slot, n, shape, ranges = message
                    count = n * int(np.prod(shape))
                    view = np.frombuffer(self.ring, np.uint8, count=count, offset=slot * slot_bytes)
                    chunk = view.reshape((n, *shape)).copy()
                    del view
                    self.conn.send(("free", job, slot))
                    yield chunk, ranges
                elif kind == "inline":
                    yield [message[2]], [message[3]] if message[3] is not None else []
                elif kind == "end":
                    finished = True
                    return
                elif kind == "error":
                    finished = True
                    _, _, what, text = message
                    if what == "video":  # the message decode_frames raised, naming the file
                        raise VideoError(text)
                    raise VideoError(f"{path}: decode worker failed ({text})")
        except VideoError as exc:
            if not finished:  # the worker died or stalled: it is gone, the next pass restarts one
                finished = True
                self._reset(kill=True)
            raise exc
        finally:
            try:
                if not finished:
                    self._cancel(job)
            finally:
                self._lock.release()

    def _recv(self, path, timeout: float):
        conn, process = self.conn, self.process
        if conn is None or process is None:  # closed (shutdown) while this pass was suspended
            raise VideoError(f"{path}: decode worker was stopped during the pass")
        waited = 0.0
        try:
            while not conn.poll(1.0 if timeout >= 1.0 else timeout):
                waited += 1.0
                if process.poll() is not None:
                    break
                if waited >= timeout:
                    raise VideoError(f"{path}: decode worker stalled (no frame for {timeout:g} s)")
            return conn.recv()
        except (EOFError, OSError):
            pass
        try:
            code = process.wait(timeout=5)
        except subprocess.TimeoutExpired:  # closed its end but did not exit
            code = "none: it closed its end without exiting"
        raise VideoError(f"{path}: decode worker died (exit code {code})")

    def _cancel(self, job: int) -> None:
        """Stop an abandoned pass and wait for the worker to say so (kill it if it does not)."""
        if self.conn is None:
            return
        try:
            self.conn.send(("cancel", job))
            while True:
                if not self.conn.poll(10.0):
                    raise TimeoutError
                message = self.conn.recv()
                if len(message) > 1 and message[1] == job and message[0] in ("cancelled", "end", "error"):
                    return
        except (EOFError, OSError, TimeoutError):
            self._reset(kill=True)


_worker: DecodeWorker | None = None
_worker_lock = threading.Lock()


def get_worker() -> DecodeWorker:
    """This process's worker handle (a forked child gets its own, never the parent's)."""
    global _worker
    with _worker_lock:
        if _worker is None or _worker.owner != os.getpid():
            _worker = DecodeWorker()
        return _worker


def shutdown() -> None:
    """Stop this process's worker, if any (registered with ``atexit``)."""
    worker = _worker
    if worker is not None and worker.owner == os.getpid():
        worker.close()


def usable() -> bool:
    """Whether a worker can help here: POSIX (socket pair, fd passing) and 2+ CPUs."""
    if os.name != "posix":
        return False
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    return cpus >= 2


atexit.register(shutdown)
