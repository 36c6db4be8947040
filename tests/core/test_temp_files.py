"""Temporary files left by a killed process are removed by the next run -- only those.

A process killed while writing leaves ``.<name>.tmp<pid>`` files (a sample video, a merged
manifest, a JSON summary) or a preset folder being built. The next ``temple run`` removes
those whose process is gone and that are older than the run; a temporary file of a process
still alive, and anything not named like a temporary file, stay.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import yaml

from temple_core.cli import main
from temple_core.store.files import clean_stale_temps, pid_alive, temp_path


def dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    assert not pid_alive(child.pid)
    return child.pid


def test_a_run_removes_what_a_killed_run_left(tmp_path, capsys):
    run_dir = tmp_path / "run"
    dead, alive = dead_pid(), os.getppid()
    left = [
        run_dir / "videos" / f".synthetic-street.mp4.tmp{dead}.mp4",  # a sample video being written
        run_dir / "videos" / f".synthetic-park.tmp{dead}.mp4",  # the same, as older versions named it
        run_dir / "select" / f".videos.jsonl.tmp{dead}",  # write_jsonl_atomic
        run_dir / "train" / f".final.json.tmp{dead}",  # write_json_atomic
    ]
    kept = [
        run_dir / "generate" / f".pairs.jsonl.tmp{alive}",  # its writer is still running
        run_dir / "select" / "notes.tmp123",  # not temple's name for a temporary file
        run_dir / "select" / f"clip.tmp{dead}.mp4",  # not hidden: a user's file
    ]
    for path in left + kept:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"partial")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "run_dir": str(run_dir), "videos": {"samples": ["synthetic"]},
        "select": {"shot_detector": {"name": "pyscenedetect"}, "decode_worker": False},
    }))
    assert main(["run", str(recipe), "--no-progress"]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "temporary file(s) left by an interrupted run" in out
    # By name anywhere in the run: select/ itself is moved aside (it holds outputs the ledger
    # does not know), and what it held with it.
    remaining = {p.name for p in run_dir.rglob("*")}
    for path in left:
        assert path.name not in remaining, path
    for path in kept:
        assert path.name in remaining, path
    assert (run_dir / "videos" / "synthetic-street.mp4").is_file()


def test_a_new_temporary_file_is_never_taken_for_a_stale_one(tmp_path):
    """A temporary file changed after the run began is left alone even if its pid looks dead
    (a process on another machine sharing the folder)."""
    started = time.time() - 5
    path = tmp_path / f".x.json.tmp{dead_pid()}"
    path.write_text("{}")
    assert clean_stale_temps(tmp_path, before=started) == []
    assert clean_stale_temps(tmp_path, before=time.time() + 5) == [path]


def test_a_preset_folder_being_built_by_a_killed_process_is_removed(tmp_path, monkeypatch):
    monkeypatch.setenv("TEMPLE_CACHE", str(tmp_path / "cache"))
    presets = tmp_path / "cache" / "presets"
    stale = presets / f".qwen2_vl-tiny-random.tmp{dead_pid()}"
    legacy_old = presets / "qwen2_vl-tiny-random.tmp140213412341234"  # older versions: an object id
    legacy_new = presets / "qwen2_vl-tiny-random.tmp140213412349999"  # maybe another version building now
    for folder in (stale, legacy_old, legacy_new):
        (folder).mkdir(parents=True)
        (folder / "model.safetensors").write_bytes(b"partial")
    hours_ago = time.time() - 2 * 3600
    os.utime(legacy_old, (hours_ago, hours_ago))
    from testkit.training import build_backend

    folder = Path(build_backend(preset="tiny-random").model_dir())
    assert (folder / "config.json").is_file()
    assert not stale.exists() and not legacy_old.exists()
    assert legacy_new.exists(), "a legacy name is removed only when clearly abandoned"
    assert temp_path(folder).name == f".{folder.name}.tmp{os.getpid()}"
