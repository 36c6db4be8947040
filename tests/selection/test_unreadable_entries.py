"""Entries of a video folder that look like videos but cannot be read each get an error record.

A directory named ``x.mp4``, a dangling symlink, a symlink loop (and a folder link loop that
must not make the search run forever), inside a folder given in ``videos.paths`` or listed
there one by one: every one is a line of ``select/videos.jsonl`` with status ``error`` and a
reason naming it, and the readable video next to them is selected as usual. Ids are safe
file names and unique (``...mp4`` is not the id ``..``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from temple_core.recipe import recipe_from_data, resolve_videos
from temple_core.samples.synthetic import write_video
from temple_core.stages import select as select_stage
from temple_core.stages.runner import StageContext
from temple_core.store import read_jsonl, safe_component
from testkit.selection import FPS, VIDEOS, selection_plugins


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("inputs") / "clips"
    root.mkdir()
    write_video(root / "good.mp4", VIDEOS["cuts"], fps=FPS, gop=10)
    (root / "x.mp4").mkdir()  # a directory with a video's name
    (root / "dangling.mp4").symlink_to(root / "gone.mp4")
    (root / "loop.mp4").symlink_to(root / "loop.mp4")
    (root / "sub").mkdir()
    (root / "sub" / "back").symlink_to(root, target_is_directory=True)  # a folder link loop
    (root / "...mp4").write_bytes((root / "good.mp4").read_bytes())
    return root


EXPECTED = {"x.mp4": "directory", "dangling.mp4": "missing", "loop.mp4": "loop"}


def run_select(run_dir: Path, paths: list[str]):
    plugins = selection_plugins()
    data = {
        "run_dir": str(run_dir),
        "videos": {"paths": paths},
        "select": {"shot_detector": {"name": "pyscenedetect"}, "decode_worker": False},
    }
    recipe = recipe_from_data(data, plugins=plugins)
    ctx = StageContext(recipe, run_dir, plugins, progress=False)
    select_stage.run(ctx)
    return read_jsonl(run_dir / "select" / "videos.jsonl")


def check(records, folder: Path, hidden: bool = True):
    by_path = {Path(r["path"]).name: r for r in records}
    for name, word in EXPECTED.items():
        assert name in by_path, f"{name} left no record: {sorted(by_path)}"
        record = by_path[name]
        assert record["status"] == "error", record
        assert name in record["reason"] and word in record["reason"], record["reason"]
    assert by_path["good.mp4"]["status"] in ("kept", "rejected"), by_path["good.mp4"]
    ids = [r["video_id"] for r in records]
    assert len(set(ids)) == len(ids)
    for video_id in ids:
        assert safe_component(video_id) == video_id
    if hidden:  # a glob's * does not match names starting with a dot, as in a shell
        assert by_path["...mp4"]["video_id"] not in (".", "..")
        assert by_path["...mp4"]["status"] == by_path["good.mp4"]["status"], "a strange name is still a video"


def test_a_folder_search_records_every_entry_that_looks_like_a_video(folder, tmp_path):
    found = {p.name for p in resolve_videos(recipe_from_data(
        {"run_dir": str(tmp_path), "videos": {"paths": [str(folder)]}, "select": {}}).videos, tmp_path)}
    assert {"good.mp4", "...mp4", *EXPECTED} <= found
    assert not any("back" in Path(p).parts for p in found), "the folder link loop is not followed"
    check(run_select(tmp_path / "run", [str(folder)]), folder)


def test_listed_one_by_one_they_do_not_stop_the_run(folder, tmp_path):
    paths = [str(folder / name) for name in ("good.mp4", "...mp4", *EXPECTED)]
    check(run_select(tmp_path / "run", paths), folder)


def test_a_glob_records_them_too(folder, tmp_path):
    check(run_select(tmp_path / "run", [str(folder / "*.mp4")]), folder, hidden=False)


def test_a_missing_path_is_still_a_recipe_error(folder, tmp_path):
    """A typo is not an unreadable video: it is refused before anything runs."""
    from temple_core.errors import RecipeError

    with pytest.raises(RecipeError, match=r"videos.paths\[0\]: no such file"):
        recipe_from_data({"run_dir": str(tmp_path), "videos": {"paths": [str(folder / "nope.mp4")]}, "select": {}})
    assert os.path.lexists(folder / "dangling.mp4")
