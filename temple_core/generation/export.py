"""Shared writing of exported pair files (one JSON object per line, atomic, 0 pairs warned)."""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from temple_core.store import write_jsonl_atomic


def write_export(out_path: str | Path, rows: Iterable[dict[str, Any]], tool: str) -> int:
    """Write ``rows`` to ``out_path``; an empty export is an empty file and a warning, not an error."""
    count = write_jsonl_atomic(out_path, rows)
    if count == 0:
        warnings.warn(f"{tool} export {out_path}: no pairs to export; wrote an empty file", stacklevel=3)
    return count
