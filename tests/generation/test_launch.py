"""Two processes of one launch (torchrun) write the same pairs as one process."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import yaml
from testkit.generation import selected_run

from temple_core.store import read_jsonl

VIDEOS = {f"v{i}": ["red_still", "dark_blue", "green_busy", "yellow_some", "cyan_busy"][i % 2 :] for i in range(5)}


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
    run_dir, _ = selected_run(tmp_path, VIDEOS)
    shutil.copytree(run_dir / "select", tmp_path / "two" / "select")
    outputs = {}
    for name, launcher in (
        ("run", [sys.executable, "-m", "temple_core"]),
        # torchrun (accelerate's --cpu launch runs one process): RANK / WORLD_SIZE, gloo barrier.
        ("two", [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "temple_core"]),
    ):
        recipe = tmp_path / f"{name}.yaml"
        recipe.write_text(yaml.safe_dump({"run_dir": str(tmp_path / name), "seed": 2, "generate": {"captioner": {"name": "heuristic"}}}))
        done = subprocess.run([*launcher, "run", str(recipe), "--stages", "generate"], capture_output=True, timeout=180)
        assert done.returncode == 0, done.stderr.decode()[-2000:]
        outputs[name] = (read_jsonl(tmp_path / name / "generate" / "pairs.jsonl"), read_jsonl(tmp_path / name / "generate" / "captions.jsonl"))
        assert not list((tmp_path / name / "generate").glob("*.rank*.jsonl"))
    assert outputs["two"] == outputs["run"]
    assert len(outputs["run"][1]) == len(VIDEOS)
