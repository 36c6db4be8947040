"""The micro-TEMPLE study's plumbing, end to end (benchmarks/micro_temple.py --quick): a reduced
micro build, one seed, a few videos, one step per training stage -- through `temple run` on the
shipped recipes. It checks that every stage ran and every score was read back; never the
effect (docs/science.md holds that, from the full command)."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quick_study_runs_every_stage_and_reads_every_score(tmp_path):
    env = {**os.environ, "TEMPLE_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    out = tmp_path / "study"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "micro_temple.py"), "--quick", "--seeds", "1",
                           "--conditions", "temple", "--out", str(out)], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    seed = out / "seed0"
    # The recipes ran as shipped, their paths moved to this seed's folder.
    recipe = (seed / "recipes" / "temple.yaml").read_text()
    assert "runs/micro" not in recipe and str(seed / "generate" / "generate" / "pairs.jsonl") in recipe
    # Self-generated pairs from the micro model's own captions, every perturbation x r planned.
    captions = [json.loads(line) for line in (seed / "generate" / "generate" / "captions.jsonl").read_text().splitlines()]
    assert len(captions) == 3 and all(len(c["clip_captions"]) >= 4 for c in captions)
    # Each of the curriculum's stages and the SFT stage produced merged weights.
    stages = sorted(p.name for p in (seed / "temple" / "train").iterdir() if p.is_dir())
    assert stages == ["0-dpo", "1-dpo", "2-dpo", "3-dpo", "4-sft"]
    results = json.loads((out / "results.json").read_text())
    which_first = ("first", "first_blind", "first_text", "first_text_blind")
    for condition, metrics in (("base", ("order", "order_blind", *which_first, "recall", "clip_captions")),
                               ("temple", ("order", "order_blind", *which_first, "recall"))):
        for m in metrics:
            value = results["summary"][condition][m]["mean"]
            assert 0.0 <= value <= 1.0, (condition, m, value)
        # Per seed, how many questions were answered with the second option, of all of them.
        for key in ("first_second", "first_text_second"):
            (entry,) = results["summary"][condition][key]
            assert 0 <= entry["second"] <= entry["questions"] and entry["questions"] > 0, (condition, key, entry)
    assert set(results["temple_vs"]) == {"base"}
    assert (out / "fig5.svg").read_text().startswith("<svg") and "## Results" in (out / "science.md").read_text()
