"""What the documentation tells a new user exists, exists: every YAML file named in the README,
docs/, the examples (their comments included) and the code's docstrings is in the
repository, and the README describes the quickstart recipe as it is."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

import yaml

from temple_core.samples import PIECE_SECONDS

ROOT = Path(__file__).resolve().parents[2]
NAME = re.compile(r"[A-Za-z0-9_./*-]+\.ya?ml")
#: YAML names that are not files of the repository, and what they are.
NOT_REPOSITORY_FILES = {
    "recipe.yaml": "the resolved recipe temple writes into a run directory",
}


def _texts():
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        yield path, path.read_text(encoding="utf-8")
    for path in sorted((ROOT / "examples").rglob("*")):
        if path.suffix in (".yaml", ".yml", ".md", ".py", ".toml") and path.is_file():
            yield path, path.read_text(encoding="utf-8")
    for folder in ("temple_core", "plugins", "benchmarks"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            yield path, path.read_text(encoding="utf-8")


def _repository_files() -> list[str]:
    return [p.relative_to(ROOT).as_posix() for p in ROOT.rglob("*.y*ml") if ".venv" not in p.parts and ".git" not in p.parts]


def test_every_yaml_file_the_docs_name_exists():
    files = _repository_files()
    missing = []
    for path, text in _texts():
        for number, line in enumerate(text.splitlines(), 1):
            for name in NAME.findall(line):
                name = name.strip("./") if name.startswith("./") else name.lstrip("/")
                base = name.rsplit("/", 1)[-1]
                if base in NOT_REPOSITORY_FILES:
                    continue
                if "/" in name:  # a path from the checkout's root (or a glob of one)
                    found = any(fnmatch.fnmatch(f, name) for f in files)
                else:  # a file name: anywhere in the repository
                    found = any(fnmatch.fnmatch(f.rsplit("/", 1)[-1], name) for f in files)
                if not found:
                    missing.append(f"{path.relative_to(ROOT)}:{number}: {name}")
    assert not missing, "named but not in the repository:\n" + "\n".join(missing)


def _readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start:end]


DETECTORS = {"pyscenedetect": "PySceneDetect", "transnetv2": "TransNetV2"}


def test_the_readme_describes_the_quickstart_recipe():
    recipe = yaml.safe_load((ROOT / "examples" / "recipes" / "quickstart.yaml").read_text())
    run = _readme_section("Run")
    detector = recipe["select"]["shot_detector"]["name"]
    assert f"{DETECTORS[detector]} shots" in run, f"the quickstart uses {detector}"
    for other, shown in DETECTORS.items():
        if other != detector:
            assert f"{shown} shots" not in run, f"the README says {shown}; quickstart.yaml uses {detector}"
    assert f"{int(PIECE_SECONDS)} s pieces" in run, f"the sample's pieces are {PIECE_SECONDS:g} s long"
    stages = recipe["train"]["stages"]
    dpo = sum(s["trainer"] == "dpo" for s in stages)
    words = {4: "four"}
    assert f"{words.get(dpo, dpo)} DPO stages" in run
