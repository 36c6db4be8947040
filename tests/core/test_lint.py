"""Every Python file of the checkout passes pyflakes: no name used before it exists, no
function defined twice in one module, no import left behind.

Added when a module was found defining the same helper twice (the second silently replaced
the first; nothing failed). pyflakes reads the source only, so this costs about a second. A
line marked ``# noqa`` is skipped (an import made only to see whether a package is there).
"""

from __future__ import annotations

from pathlib import Path

from pyflakes.api import checkPath
from pyflakes.reporter import Reporter

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("temple_core", "plugins", "benchmarks", "tests", "examples", "scripts")


class Collect(Reporter):
    def __init__(self):
        self.found: list[str] = []

    def unexpectedError(self, filename, msg):
        self.found.append(f"{filename}: {msg}")

    def syntaxError(self, filename, msg, lineno, offset, text):
        self.found.append(f"{filename}:{lineno}: {msg}")

    def flake(self, message):
        self.found.append(str(message))


def test_pyflakes_finds_nothing():
    report = Collect()
    files = sorted(p for folder in FOLDERS for p in (ROOT / folder).rglob("*.py")
                   if ".venv" not in p.parts and "build" not in p.parts)
    assert len(files) > 150
    for path in files:
        checkPath(str(path), report)
    assert report.found == [], "\n".join(report.found)
