"""Nothing a recipe, a file name or a plugin says can write, move or delete outside the run.

* names that become paths (training stage names, video ids, component names, an exporter's
  file ending) are single safe path components, checked when they are read or registered;
* every path of a run comes from :class:`RunLayout`, which refuses one outside the run, and
  every delete or move of run outputs goes through it (a static check of the source);
* video ids are readable, safe and unique whatever the file names (hypothesis).
"""

from __future__ import annotations

import ast
import types
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from temple_core.contracts import Exporter
from temple_core.errors import PluginError, TempleError
from temple_core.hookspecs import hookimpl
from temple_core.plugins import PluginManager
from temple_core.recipe import video_ids
from temple_core.store import RunLayout, safe_component

ROOT = Path(__file__).resolve().parents[2]


def test_a_path_outside_the_run_is_refused(tmp_path):
    layout = RunLayout(tmp_path / "run")
    (tmp_path / "run" / "select").mkdir(parents=True)
    (tmp_path / "precious").mkdir()
    assert layout.within(tmp_path / "run" / "select" / "x") == tmp_path / "run" / "select" / "x"
    for outside in (tmp_path / "precious", tmp_path / "run" / ".." / "precious", tmp_path / "run", Path("/")):
        with pytest.raises(TempleError, match="not inside the run directory"):
            layout.remove(outside)
        with pytest.raises(TempleError):
            layout.move_aside(outside)
    assert (tmp_path / "precious").is_dir()
    with pytest.raises(TempleError, match="not inside the run directory"):
        layout.within(tmp_path / "run" / ".." / "precious" / "x")


def test_remove_deletes_inside_and_is_quiet_when_nothing_is_there(tmp_path):
    layout = RunLayout(tmp_path / "run")
    folder = tmp_path / "run" / "train" / "0-dpo" / "checkpoints"
    (folder / "checkpoint-2").mkdir(parents=True)
    (folder / "checkpoint-2" / "x.bin").write_bytes(b"1")
    layout.remove(folder)
    assert not folder.exists() and folder.parent.is_dir()
    layout.remove(folder)  # already gone: nothing to do
    file = tmp_path / "run" / "a.json"
    file.write_text("{}")
    layout.remove(file)
    assert not file.exists()


def test_a_link_inside_the_run_is_removed_not_followed(tmp_path):
    """A symlink the user made inside the run (say videos/ -> a big disk) is the user's:
    removing it removes the link, never what it points to."""
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "keep.mp4").write_bytes(b"x")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "videos").symlink_to(tmp_path / "elsewhere")
    RunLayout(tmp_path / "run").remove(tmp_path / "run" / "videos")
    assert (tmp_path / "elsewhere" / "keep.mp4").is_file()


def test_train_stage_cleanup_stays_in_its_folder(tmp_path):
    stage = RunLayout(tmp_path / "run").train_stage(0, "dpo")
    stage.checkpoints.mkdir(parents=True)
    stage.remove(stage.checkpoints)
    assert not stage.checkpoints.exists()
    with pytest.raises(TempleError):
        stage.remove(stage.folder.parent / "1-sft")


def test_names_that_are_not_one_file_name_are_refused():
    for bad in ("x/../../../escaped", "..", ".", "", " a", "a\\b", "a\x00b", "x.stale-1", "a" * 300):
        with pytest.raises(ValueError):
            safe_component(bad)
    layout = RunLayout("/tmp/run")
    with pytest.raises((ValueError, TempleError)):
        layout.train_stage(0, "x/../../../escaped")
    with pytest.raises((ValueError, TempleError)):
        layout.thumbnail("..", 3)
    with pytest.raises((ValueError, TempleError)):
        layout.export("trl", "../../x")


def _exporter_module(name: str, suffix: str = "jsonl"):
    class Custom(Exporter):
        """A custom exporter."""

        def export(self, pairs, out_path):
            return 0

    Custom.suffix = suffix
    module = types.ModuleType(f"plugin_{abs(hash((name, suffix)))}")

    def register_exporters(register):
        register(name, Custom)

    module.register_exporters = hookimpl(register_exporters)
    return module


@pytest.mark.parametrize("name, suffix", [("../evil", "jsonl"), ("a/b", "jsonl"), ("ok", "../../x"), ("ok", "a/b")])
def test_a_plugin_whose_names_are_not_file_names_is_refused_at_registration(name, suffix):
    """Component names become paths (an exporter's file, a training stage's default folder)."""
    pm = PluginManager(load=False)
    failed = pm.add_module(_exporter_module(name, suffix), "x 1.0")
    assert failed is not None and "file name" in failed.error
    with pytest.raises(PluginError, match="file name"):
        pm.get("exporters", name)


def test_a_file_named_dots_does_not_become_the_id_dotdot(tmp_path):
    (tmp_path / "...mp4").write_bytes(b"")
    ids = video_ids([tmp_path / "...mp4", tmp_path / "a.mp4"])
    assert ids[0] not in (".", "..") and ids[1] == "a"
    safe_component(ids[0])


# Every character a POSIX file name can hold that matters here (a name cannot hold NUL or '/').
names = st.lists(st.sampled_from(list("ab. \\-_é") + [".stale-", ".."]), max_size=8).map("".join)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["d1", "d2", "d3/x"]), names), min_size=1, max_size=8, unique=True))
def test_video_ids_are_safe_unique_and_stable(files):
    paths = [Path("/videos") / folder / f"{name}.mp4" for folder, name in files]
    ids = video_ids(paths)
    assert len(set(ids)) == len(ids), (paths, ids)
    for video_id in ids:
        assert safe_component(video_id, "video id") == video_id
    assert video_ids(paths) == ids
    assert video_ids(list(reversed(paths))) == list(reversed(ids)), "an id depends on its file, not on the others' order"
    for path, video_id in zip(paths, ids):
        stem = path.stem
        try:
            safe_component(stem)
            clean = True
        except ValueError:
            clean = False
        if clean and sum(p.stem == stem for p in paths) == 1:
            assert video_id == stem, "a clean, unique stem is its own id"


# -- every delete and move of run outputs goes through RunLayout ------------------------

#: Modules that may delete or rename files themselves, and why.
ALLOWED = {
    "temple_core/store/layout.py": "RunLayout.remove / move_aside: the one guarded way",
    "temple_core/store/files.py": "temporary files published by rename; stale ones cleaned",
    "temple_core/store/jsonl.py": "manifest shards merged and removed (paths from RunLayout)",
    "temple_core/video/worker.py": "its shared-memory ring in /dev/shm, not a run path",
    "temple_core/models/hf.py": "the preset cache ($TEMPLE_CACHE), not a run directory",
    "temple_core/models/micro.py": "its pre-training videos in the preset cache ($TEMPLE_CACHE), not a run directory",
    "plugins/backends/internvl_original.py": "the conversion cache ($TEMPLE_CACHE), not a run directory",
}
DELETING = {"rmtree", "unlink", "rename", "rmdir", "removedirs"}
OS_DELETING = {"remove", "unlink", "rename", "replace", "rmdir", "removedirs"}


def _deletes(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        attr, owner = node.func.attr, node.func.value
        owner_name = owner.id if isinstance(owner, ast.Name) else None
        if owner_name == "os" and attr in OS_DELETING:
            found.append(f"os.{attr} (line {node.lineno})")
        elif owner_name == "shutil" and attr in {"rmtree", "move"}:
            found.append(f"shutil.{attr} (line {node.lineno})")
        elif attr in DELETING and owner_name not in ("os", "shutil"):
            found.append(f".{attr}() (line {node.lineno})")
        elif attr == "replace" and len(node.args) == 1 and not node.keywords:
            found.append(f".replace(path) (line {node.lineno})")  # Path.replace; str.replace takes 2
    return found


def test_deletes_and_moves_of_run_outputs_go_through_run_layout():
    offenders = []
    for folder in ("temple_core", "plugins"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel in ALLOWED:
                continue
            for hit in _deletes(ast.parse(path.read_text(encoding="utf-8"))):
                offenders.append(f"{rel}: {hit}")
    assert not offenders, "delete/move run outputs through RunLayout.remove / move_aside:\n" + "\n".join(offenders)
