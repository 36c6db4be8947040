"""The run ledger, the run-directory layout and the run lock, on their own.

The ledger is the one record of what is done: these tests drive it through the life of a
unit (start, interruption, resume, finish, a changed fingerprint, a changed upstream, a
deleted folder) and check the decisions against the rules of docs/run-directory.md, stated
here again: resume only an interrupted unit with the same fingerprint and upstream; move
anything else aside (never delete); up to date only when finished, unchanged and present.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from temple_core.store import Ledger, RunLayout, RunLock, RunLocked, read_jsonl
from temple_core.store.layout import ENTRIES, doc_tree, safe_component

ROOT = Path(__file__).resolve().parents[2]


def events(run_dir: Path, unit: str) -> list[str]:
    return [r["event"] for r in read_jsonl(RunLayout(run_dir).ledger) if r["unit"] == unit]


def test_a_unit_from_start_to_finish(tmp_path):
    ledger = Ledger(tmp_path, log=lambda *a: None)
    folder = tmp_path / "select"
    assert ledger.finished("select", "fp1", None, folder) is None
    assert ledger.begin("select", folder, "fp1", None) == "started"
    folder.mkdir()
    (folder / "videos.rank0.jsonl").write_text('{"video_id": "a"}\n')
    # Interrupted here; the next attempt with the same fingerprint resumes in place.
    assert ledger.begin("select", folder, "fp1", None) == "resumed"
    assert (folder / "videos.rank0.jsonl").is_file()
    entry = ledger.finish("select", "fp1", None, {"videos": 1}, 1.5)
    assert entry.stamp and ledger.finished("select", "fp1", None, folder) == ledger.state("select")
    assert ledger.state("select").summary == {"videos": 1}
    # Each condition of "up to date" on its own.
    assert ledger.finished("select", "fp2", None, folder) is None, "another fingerprint"
    assert ledger.finished("select", "fp1", "other-upstream", folder) is None, "another upstream"
    assert events(tmp_path, "select") == ["started", "started", "finished"]


def test_outdated_outputs_are_moved_aside_never_deleted(tmp_path):
    ledger = Ledger(tmp_path, log=lambda *a: None)
    folder = tmp_path / "generate"
    ledger.begin("generate", folder, "fp1", "up1")
    folder.mkdir()
    (folder / "pairs.jsonl").write_text("old\n")
    ledger.finish("generate", "fp1", "up1", {}, 0)
    # The recipe changed: a finished unit is not resumed but started afresh.
    assert ledger.begin("generate", folder, "fp2", "up1") == "started"
    [aside] = tmp_path.glob("generate.stale-*")
    assert (aside / "pairs.jsonl").read_text() == "old\n" and not folder.exists()
    # An interrupted unit whose upstream changed is not resumed either.
    folder.mkdir()
    (folder / "pairs.jsonl").write_text("half\n")
    assert ledger.begin("generate", folder, "fp2", "up2") == "started"
    assert len(list(tmp_path.glob("generate.stale-*"))) == 2
    assert events(tmp_path, "generate") == ["started", "finished", "moved_aside", "started", "moved_aside", "started"]


def test_a_deleted_folder_is_work_to_do_and_a_stage_with_sub_stages_keeps_its_folder(tmp_path):
    ledger = Ledger(tmp_path, log=lambda *a: None)
    folder = tmp_path / "train"
    ledger.begin("train", folder, "fp1", None, keep_folder=True)
    folder.mkdir()
    ledger.finish("train", "fp1", None, {}, 0)
    ledger.begin("train", folder, "fp2", None, keep_folder=True)
    assert folder.is_dir() and not list(tmp_path.glob("train.stale-*"))
    ledger.finish("train", "fp2", None, {}, 0)
    import shutil

    shutil.rmtree(folder)
    assert ledger.finished("train", "fp2", None, folder) is None


def test_outputs_named_by_a_finish_record_are_required_too(tmp_path):
    """A stage with sub-stages names their outputs when it finishes (relative to the run, so a
    moved run directory stays up to date); one of them gone, the stage has work to do."""
    ledger = Ledger(tmp_path, log=lambda *a: None)
    folder = tmp_path / "train"
    (folder / "0-dpo").mkdir(parents=True)
    (folder / "1-sft" / "merged").mkdir(parents=True)
    ledger.begin("train", folder, "fp", None, keep_folder=True)
    ledger.finish("train", "fp", None, {}, 0, outputs=[folder / "0-dpo", folder / "1-sft" / "merged"])
    import json

    record = json.loads((tmp_path / "ledger.jsonl").read_text().splitlines()[-1])
    assert record["outputs"] == ["train/0-dpo", "train/1-sft/merged"]
    assert ledger.finished("train", "fp", None, folder) is not None
    (folder / "1-sft" / "merged").rmdir()
    assert ledger.finished("train", "fp", None, folder) is None
    # A run directory moved elsewhere: the same relative outputs there.
    (folder / "1-sft" / "merged").mkdir()
    moved = tmp_path.parent / (tmp_path.name + "-moved")
    tmp_path.rename(moved)
    assert Ledger(moved, log=lambda *a: None).finished("train", "fp", None, moved / "train") is not None


def test_a_folder_without_a_record_is_moved_aside(tmp_path):
    """Outputs the ledger knows nothing of (an older temple, a copy) are never resumed into."""
    (tmp_path / "select").mkdir()
    ledger = Ledger(tmp_path, log=lambda *a: None)
    assert ledger.begin("select", tmp_path / "select", "fp", None) == "started"
    assert list(tmp_path.glob("select.stale-*"))


@pytest.mark.parametrize("bad", ["", " ", ".", "..", "a/b", "../x", "a\\b", "x/../../escaped", "a\x00b", " lead", "x.stale-1"])
def test_names_that_become_paths_are_single_components(bad):
    with pytest.raises(ValueError):
        safe_component(bad)


def test_move_aside_refuses_anything_outside_the_run(tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    layout = RunLayout(tmp_path / "run")
    layout.root.mkdir()
    with pytest.raises(ValueError, match="not inside"):
        layout.move_aside(outside)
    with pytest.raises(ValueError, match="not inside"):
        layout.move_aside(layout.root)
    assert outside.is_dir()


def test_the_run_directory_doc_shows_the_layout():
    text = (ROOT / "docs" / "run-directory.md").read_text()
    assert doc_tree() in text, "docs/run-directory.md's tree is not RunLayout's ENTRIES: regenerate it from doc_tree()"
    for path, _ in ENTRIES:
        assert path in text
    # The command the doc names prints that tree, without a warning.
    import subprocess
    import sys

    assert "`python -m temple_core.store` prints it" in text
    out = subprocess.run([sys.executable, "-W", "error", "-m", "temple_core.store"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stderr == "" and out.stdout.strip() == doc_tree().strip(), out.stderr


def test_a_second_lock_is_refused_naming_the_holder(tmp_path):
    first = RunLock(tmp_path, log=lambda *a: None).acquire()
    try:
        with pytest.raises(RunLocked) as info:
            RunLock(tmp_path, log=lambda *a: None).acquire()
        assert f"pid {os.getpid()}" in str(info.value) and "--wait" in str(info.value)
        assert info.value.exit_code == 2
    finally:
        first.release()
    assert RunLock(tmp_path).holder() is None, "a clean release leaves no holder behind"
    RunLock(tmp_path).acquire().release()


HOLD = """
import sys, time
from temple_core.store import RunLock
lock = RunLock(sys.argv[1]).acquire()
print("held", flush=True)
time.sleep(float(sys.argv[2]))
lock.release()
"""


def hold(run_dir: Path, seconds: float) -> subprocess.Popen:
    child = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "held"
    return child


def test_waiting_for_the_holder(tmp_path):
    child = hold(tmp_path, 2.0)
    said = []
    started = time.time()
    lock = RunLock(tmp_path, log=said.append).acquire(wait=True, poll=0.1)
    try:
        assert time.time() - started > 1.0, "it waited for the holder to finish"
        assert child.wait(timeout=10) == 0
        assert any("waiting for" in s and f"pid {child.pid}" in s for s in said)
        assert not any("took over" in s for s in said), "the holder released it cleanly"
    finally:
        lock.release()


def test_a_killed_holder_leaves_the_lock_to_the_next_run(tmp_path):
    child = hold(tmp_path, 600)
    with pytest.raises(RunLocked):
        RunLock(tmp_path, log=lambda *a: None).acquire()
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=10)
    said = []
    lock = RunLock(tmp_path, log=said.append).acquire()
    try:
        assert any("took over" in s and f"pid {child.pid}" in s for s in said)
        assert lock.holder()["pid"] == os.getpid()
    finally:
        lock.release()
