"""Reuse freed memory during one allocation-heavy pass on the CPU (glibc's malloc only).

Why: PyTorch's CPU tensors come from ``malloc``, and glibc serves every block above its mmap
threshold (at most 32 MB) with a fresh ``mmap`` and returns it on ``free``. A network whose
activations are hundreds of MB each -- TransNetV2 on one of the release's 2,000-frame
segments holds ~3 GB -- therefore faults every page of every activation in again on every
forward: on test.mp4, 23 million page faults and 41 s of system time beside 48 s of user
time (docs/benchmarks.md). With ``mmap`` off and trimming deferred for the pass, freed blocks
stay in the heap and the next forward reuses them: 2.3 million faults, 7 s of system time,
the same probabilities bit for bit; the price is a higher peak (freed blocks are kept
rather than given back: 4.9 instead of 3.2 GB there).

Scope: the settings are process-wide (``mallopt``), so they are set for the pass and put back
after it, and ``malloc_trim(0)`` then hands the kept memory back to the system. glibc has no
way to restore its *dynamic* mmap threshold once ``mallopt`` has been called; it is put at
32 MB (trim at 64 MB), the values the dynamic rule reaches in a process that frees large
tensors. On other C libraries (musl, macOS) this does nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import sys
from collections.abc import Iterator

# <malloc.h>
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_MMAP_MAX = -1, -3, -4
_MMAP_MAX_DEFAULT = 65536
#: glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit, where its dynamic threshold ends up.
_MMAP_THRESHOLD_AFTER = 32 * 1024 * 1024
_INT_MAX = 2**31 - 1


def _glibc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.gnu_get_libc_version  # glibc, not musl
        return libc
    except (OSError, AttributeError):
        return None


@contextlib.contextmanager
def reuse_freed_memory(enabled: bool = True) -> Iterator[bool]:
    """Within the block, freed memory is kept for reuse instead of being unmapped; yields
    whether that is in effect (``False``: disabled, or not glibc)."""
    libc = _glibc() if enabled else None
    if libc is None or not libc.mallopt(M_MMAP_MAX, 0):
        yield False
        return
    libc.mallopt(M_TRIM_THRESHOLD, _INT_MAX)
    try:
        yield True
    finally:
        libc.mallopt(M_MMAP_MAX, _MMAP_MAX_DEFAULT)
        libc.mallopt(M_MMAP_THRESHOLD, _MMAP_THRESHOLD_AFTER)
        libc.mallopt(M_TRIM_THRESHOLD, 2 * _MMAP_THRESHOLD_AFTER)
        libc.malloc_trim(0)
