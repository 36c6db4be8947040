"""Two `temple run` on one run directory: the second is refused (or waits), nothing is done twice.

Real runs through the CLI, on a small training recipe (one DPO stage of the tiny random
Qwen2-VL on pairs of four synthetic videos): run A holds the lock; run B is refused at once
with A named; run C waits for A with --wait and then finds everything done. Then a run
killed with SIGKILL mid-training leaves the lock to the next run, which resumes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from temple_core.store import RunLayout, RunLock, read_jsonl
from testkit.training import easy_pairs, write_jsonl, write_videos

pytestmark = pytest.mark.slow


def recipe(tmp_path: Path) -> Path:
    videos = write_videos(tmp_path / "videos", 4)
    pairs = write_jsonl(tmp_path / "pairs.jsonl", easy_pairs(videos, per_video=2))
    data = {
        "run_dir": "run",  # relative to the recipe file
        "seed": 0,
        "train": {
            "backend": {"name": "qwen2_vl", "preset": "tiny-random", "fps": 1.0, "max_frames": 4, "max_pixels": 12544},
            "stages": [{"trainer": "dpo", "data": str(pairs), "batch_size": 2, "epochs": 3, "max_length": 1024,
                        "fps": 1.0, "max_frames": 4, "max_pixels": 12544, "gradient_checkpointing": False}],
        },
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def start(path: Path, *extra: str, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "temple_core", "run", str(path), "--no-progress", *extra],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def wait_for(predicate, what: str, timeout: float = 120.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def ledger_events(run_dir: Path, unit: str) -> list[str]:
    return [r["event"] for r in read_jsonl(RunLayout(run_dir).ledger) if r["unit"] == unit]


def test_a_second_run_is_refused_and_a_waiting_one_finds_the_work_done(tmp_path):
    path = recipe(tmp_path)
    run_dir = tmp_path / "run"
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    first = start(path, cwd=elsewhere)  # the recipe's run_dir is relative to the recipe, not to cwd
    lock = RunLock(run_dir)
    wait_for(lambda: (lock.holder() or {}).get("pid") == first.pid, "run A to hold the lock")

    refused = subprocess.run(
        [sys.executable, "-m", "temple_core", "run", str(path), "--no-progress"],
        cwd=elsewhere, capture_output=True, text=True, timeout=120,
    )
    assert refused.returncode == 2, refused.stderr
    assert f"pid {first.pid}" in refused.stderr and "in use by" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, "one line, no traceback"

    waiting = start(path, "--wait", cwd=elsewhere)
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err[-3000:]
    out, err = waiting.communicate(timeout=600)
    assert waiting.returncode == 0, err[-3000:]
    assert "waiting for" in out + err
    assert "up to date: no work was done" in out

    assert not list(tmp_path.rglob("*.stale-*")), "nothing was moved aside"
    assert ledger_events(run_dir, "train/0-dpo") == ["started", "finished"], "trained once"
    steps = [m["step"] for m in read_jsonl(run_dir / "train" / "0-dpo" / "metrics.jsonl") if "loss" in m]
    assert steps and len(steps) == len(set(steps)), "no metrics step written twice"
    assert lock.holder() is None, "released on exit"


def test_a_killed_run_leaves_the_lock_to_the_next_one_which_resumes(tmp_path):
    path = recipe(tmp_path)
    run_dir = tmp_path / "run"
    victim = start(path, cwd=tmp_path)
    wait_for(lambda: "started" in ledger_events(run_dir, "train/0-dpo"), "run A to start training")
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    assert RunLock(run_dir).holder()["pid"] == victim.pid, "the dead run's name is still in the lock file"

    result = subprocess.run(
        [sys.executable, "-m", "temple_core", "run", str(path), "--no-progress"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"took over the lock of {run_dir} from `temple run` on host" in result.stdout
    assert f"pid {victim.pid}" in result.stdout
    assert ledger_events(run_dir, "train/0-dpo")[-1] == "finished"
    assert (run_dir / "train" / "0-dpo" / "merged" / "config.json").is_file()
