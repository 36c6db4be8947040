"""A real interruption: `temple run` killed mid-stage, then run again, gives the uninterrupted pairs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import yaml
from testkit.generation import SCENES, selected_record, write_scenes, write_selection

from temple_core.store import read_jsonl

COUNT = 24


def _recipe(path, run_dir):
    path.write_text(yaml.safe_dump({
        "run_dir": str(run_dir), "seed": 11,
        "generate": {"captioner": {"name": "heuristic"}, "videos_per_batch": 1},
    }))
    return path


def _run(recipe):
    return subprocess.Popen(
        [sys.executable, "-m", "temple_core", "run", str(recipe), "--stages", "generate"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )


def test_killed_run_resumes_to_the_same_pairs(tmp_path):
    names = list(SCENES)
    records = []
    for i in range(COUNT):
        scenes = [names[(i + k) % len(names)] for k in range(4)]
        records.append(selected_record(f"v{i:02d}", write_scenes(tmp_path / f"v{i:02d}.mp4", scenes, 12), scenes, 12))
    for name in ("full", "killed"):
        write_selection(tmp_path / name, records)

    full = _run(_recipe(tmp_path / "full.yaml", tmp_path / "full"))
    assert full.wait(timeout=120) == 0, full.stderr.read().decode()

    killed = _run(_recipe(tmp_path / "killed.yaml", tmp_path / "killed"))
    shard = tmp_path / "killed" / "generate" / "captions.rank0.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not shard.exists() or len(read_jsonl(shard)) < 3):
        time.sleep(0.005)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait()
    done = len(read_jsonl(shard))
    assert 0 < done < COUNT, f"the run was not interrupted mid-stage ({done} of {COUNT} videos done)"

    again = _run(_recipe(tmp_path / "killed.yaml", tmp_path / "killed"))
    assert again.wait(timeout=120) == 0, again.stderr.read().decode()
    expected = read_jsonl(tmp_path / "full" / "generate" / "pairs.jsonl")
    resumed = read_jsonl(tmp_path / "killed" / "generate" / "pairs.jsonl")
    assert resumed == expected
    assert len({p["pair_id"] for p in resumed}) == len(resumed)
    assert read_jsonl(tmp_path / "killed" / "generate" / "captions.jsonl") == read_jsonl(tmp_path / "full" / "generate" / "captions.jsonl")
