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


class VideoError(TempleError):
    """A video that cannot be read (missing, empty, truncated, no video stream)."""


class ModelError(TempleError):
    """A model directory that cannot be loaded (missing, incomplete, another family)."""


class SkipSample(Exception):
    """Raised by a backend for one training sample that cannot be used; ``reason`` says why."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)
