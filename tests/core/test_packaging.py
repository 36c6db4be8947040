"""The distribution ships every package of the source tree (a forgotten one breaks non-editable installs)."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_package_folder_is_listed_in_pyproject():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    mapping = config["package-dir"]
    found = set()
    for top, folder in mapping.items():
        base = ROOT / folder
        for init in base.rglob("__init__.py"):
            if "__pycache__" in init.parts:
                continue
            relative = init.parent.relative_to(base).parts
            found.add(".".join((top, *relative)))
    assert found == listed, f"missing from pyproject: {sorted(found - listed)}; listed but absent: {sorted(listed - found)}"


def test_registry_ships_inside_the_plugins_package():
    link = ROOT / "plugins" / "registry.yaml"
    assert link.resolve() == (ROOT / "registry.yaml").resolve()


def test_test_files_have_unique_names():
    # pytest's default import mode imports test modules by basename: two test_stage.py in
    # different folders stop the whole run at collection.
    names = [p.name for p in (ROOT / "tests").rglob("test_*.py")]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    assert not duplicates, f"rename these test files, their names repeat: {duplicates}"
