"""Two processes under `accelerate launch` write the same pairs as one process."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import yaml
from genhelpers import selected_run

from temple_core.store import read_jsonl

VIDEOS = {f"v{i}": ["red_still", "dark_blue", "green_busy", "yellow_some", "cyan_busy"][i % 2 :] for i in range(5)}


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
    run_dir, _ = selected_run(tmp_path, VIDEOS)
    shutil.copytree(run_dir / "select", tmp_path / "two" / "select")
    outputs = {}
    for name, launcher in (
        ("run", [sys.executable, "-m", "temple_core"]),
        ("two", [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2", "--num_machines", "1",
                 "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "temple_core"]),
    ):
        recipe = tmp_path / f"{name}.yaml"
        recipe.write_text(yaml.safe_dump({"run_dir": str(tmp_path / name), "seed": 2, "generate": {"captioner": {"name": "heuristic"}}}))
        done = subprocess.run([*launcher, "run", str(recipe), "--stages", "generate"], capture_output=True, timeout=180)
        assert done.returncode == 0, done.stderr.decode()[-2000:]
        outputs[name] = (read_jsonl(tmp_path / name / "generate" / "pairs.jsonl"), read_jsonl(tmp_path / name / "generate" / "captions.jsonl"))
        assert not list((tmp_path / name / "generate").glob("*.rank*.jsonl"))
    assert outputs["two"] == outputs["run"]
    assert len(outputs["run"][1]) == len(VIDEOS)
