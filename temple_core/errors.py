"""Errors a user can cause. The CLI prints their message (no traceback) and exits non-zero."""

from __future__ import annotations


class TempleError(Exception):
    """Base of every error the user can fix; its message names the thing at fault."""

    exit_code = 1


class RecipeError(TempleError):
    """A recipe that cannot be run: ``path`` is where in the recipe (``select.encoder.name``)."""

    exit_code = 2

    def __init__(self, path: str, message: str):
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}" if path else message)


class PluginError(TempleError):
    """A plugin that cannot be loaded or used (duplicate name, failed import, unknown name)."""

    exit_code = 2


class StorageError(TempleError):
    """The file system refused a write (full, read-only, a size limit, no permission):
    ``path`` is what could not be written. What was finished before is kept; fix the cause
    and run the same command again."""

    exit_code = 2

    def __init__(self, path, reason: str, verb: str = "write"):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot {verb} {path}: {reason}; nothing finished is lost: make room (or make it writable) and run again")


class CorruptRecord(TempleError, ValueError):
    """A line of a run's JSONL file that is not the record it must be (``file:line`` named)."""

    exit_code = 2


class RunError(TempleError):
    """A run directory that is missing, or that holds nothing a command can read."""

    exit_code = 2


class VideoError(TempleError):
    """A video that cannot be read (missing, empty, truncated, no video stream)."""


class ModelError(TempleError):
    """A model directory that cannot be loaded (missing, incomplete, another family)."""


class SkipSample(Exception):
    """Raised by a backend for one training sample that cannot be used; ``reason`` says why."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)
