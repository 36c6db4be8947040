"""The README's main command, end to end: the quickstart recipe on the embedded CPU default.

Runs the real examples/recipes/quickstart.yaml (real footage and synthetic videos, shot
detection, grouping, heuristic captions, perturbations, pairs, four DPO stages and SFT on a
tiny random-weight Qwen2-VL, then the evaluation of base and final) from a working directory
outside the checkout (the recipe's paths are relative to the recipe file), then checks the
run directory against ARCHITECTURE.md's contract, that a second run does nothing, and that
deleting a stage's output re-runs that stage and what follows it only.
"""

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from temple_core.store import Ledger, read_jsonl

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "examples" / "recipes" / "quickstart.yaml"

VIDEO_FIELDS = {"video_id", "path", "status", "reason", "fps", "num_frames", "shots", "clips", "groups", "segments", "keyframes"}
PAIR_FIELDS = {"pair_id", "video_id", "video_path", "prompt", "chosen", "rejected", "perturbation", "difficulty", "kept_indices", "generator"}


def temple(*args, cwd):
    assert ROOT not in Path(cwd).resolve().parents and Path(cwd).resolve() != ROOT
    result = subprocess.run(
        [sys.executable, "-m", "temple_core", *args], capture_output=True, text=True, cwd=cwd, timeout=900
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr  # --no-progress: no bar on either


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("quickstart") / "run"
    out = temple("run", str(RECIPE), "--run-dir", str(run_dir), "--no-progress", cwd=run_dir.parent)
    return run_dir, out


def test_validate_from_elsewhere_resolves_paths_against_the_recipe(tmp_path):
    out = temple("validate", str(RECIPE), cwd=tmp_path)
    assert f"run_dir: {ROOT / 'runs' / 'quickstart'}" in out


def test_run_directory_contract(quickstart):
    run_dir, out = quickstart
    assert (run_dir / "recipe.yaml").is_file()
    videos = read_jsonl(run_dir / "select" / "videos.jsonl")
    assert len(videos) == 10  # 7 pieces of the TransNetV2 test video + 3 synthetic videos
    assert all(VIDEO_FIELDS <= set(v) for v in videos)
    kept = [v for v in videos if v["status"] == "kept"]
    assert kept and any(v["video_id"].startswith("transnetv2-test") for v in kept), "real footage passes selection"
    for video in kept:
        assert len(video["keyframes"]) == len(video["segments"]) >= 4
        assert all(len(k) == 2 for k in video["keyframes"])
    captions = read_jsonl(run_dir / "generate" / "captions.jsonl")
    assert [c["video_id"] for c in captions] == [v["video_id"] for v in kept]
    pairs = read_jsonl(run_dir / "generate" / "pairs.jsonl")
    assert pairs and all(PAIR_FIELDS <= set(p) for p in pairs)
    assert {p["difficulty"] for p in pairs} == {16, 8, 4, 2}
    assert {p["perturbation"] for p in pairs} == {"drop", "shuffle", "reverse"}
    assert all(Path(p["video_path"]).is_file() for p in pairs), "the whole video is the training input"
    for name in ("trl", "swift", "llamafactory"):
        assert (run_dir / "generate" / "export" / f"{name}.jsonl").is_file()
    stages = sorted(p.name for p in (run_dir / "train").iterdir() if p.is_dir())
    assert stages == ["0-dpo", "1-dpo", "2-dpo", "3-dpo", "4-sft"]
    for stage in stages:
        folder = run_dir / "train" / stage
        assert (folder / "merged" / "config.json").is_file()
        assert (folder / "curves.png").stat().st_size > 0
        metrics = read_jsonl(folder / "metrics.jsonl")
        losses = [m["loss"] for m in metrics if "loss" in m]
        assert losses and all(isinstance(x, float) and math.isfinite(x) for x in losses), stage
    assert (run_dir / "train" / "curves.png").is_file()
    assert "final model:" in out and "4-sft/merged" in out
    assert "Loading weights" not in out and "it/s]" not in out, "--no-progress draws no bar (transformers' neither)"
    for checkpoint in ("base", "final"):
        for evaluator in ("temporal_order", "multiple_choice"):
            result = json.loads((run_dir / "eval" / checkpoint / f"{evaluator}.json").read_text())
            assert 0.0 <= result["score"] <= 1.0 and result["interval"] and result["n"] > 0
            assert result["settings"]["frames"]["max_frames"] == 8
            assert (run_dir / "eval" / checkpoint / f"{evaluator}.jsonl").is_file()
    final = json.loads((run_dir / "eval" / "final" / "temporal_order.json").read_text())
    assert final["model"].endswith("4-sft/merged")
    held = {Path(r["video"]).resolve() for r in read_jsonl(run_dir / "eval" / "final" / "temporal_order.jsonl")}
    assert held.isdisjoint({Path(p["video_path"]).resolve() for p in pairs}), "held-out videos are not training videos"
    assert "  eval (" in out and "temporal_order" in out and "multiple_choice" in out
    temple("report", str(run_dir), cwd=run_dir.parent)
    page = (run_dir / "report.html").read_text()
    assert "Training" in page and "Preference pairs" in page and "Selection" in page and "Evaluation" in page


def test_second_run_does_no_work(quickstart):
    run_dir, _ = quickstart
    before = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*.jsonl")}
    out = temple("run", str(RECIPE), "--run-dir", str(run_dir), "--no-progress", cwd=run_dir.parent)
    assert "up to date: no work was done" in out
    assert {p: p.stat().st_mtime_ns for p in run_dir.rglob("*.jsonl")} == before
    # Every training stage is listed as up to date, not as the earlier run's "ran"; one step is "1 step".
    rows = [line.split() for line in out.splitlines() if line.strip().startswith(("0-dpo", "1-dpo", "2-dpo", "3-dpo", "4-sft"))]
    assert len(rows) == 5 and all(row[1:4] == ["up", "to", "date"] for row in rows), out
    assert "1 steps" not in out and "4-sft      up to date 4 samples, 1 step," in out, out


def test_deleting_a_stage_reruns_it_and_what_follows(quickstart):
    run_dir, _ = quickstart
    select_record = Ledger(run_dir).state("select")
    old_pairs = read_jsonl(run_dir / "generate" / "pairs.jsonl")
    shutil.rmtree(run_dir / "generate")
    out = temple("run", str(RECIPE), "--run-dir", str(run_dir), "--no-progress", cwd=run_dir.parent)
    assert "[select] up to date" in out
    assert "  generate (" in out and "  generate (up to date)" not in out
    assert "  train (" in out and "  train (up to date)" not in out
    assert "  eval (" in out and "  eval (up to date)" not in out
    assert Ledger(run_dir).state("select") == select_record, "select was not run again"
    assert read_jsonl(run_dir / "generate" / "pairs.jsonl") == old_pairs, "same seed, same pairs"
    stale = sorted(p.name.split(".stale-")[0] for p in run_dir.glob("train/*.stale-*"))
    assert stale == ["0-dpo", "1-dpo", "2-dpo", "3-dpo", "4-sft"], "the outdated training outputs are moved aside, not deleted"


def test_deleting_a_training_stage_or_a_checkpoints_scores_redoes_only_those(quickstart):
    """``train`` and ``eval`` are up to date only while what their records vouch for is there:
    a deleted training stage folder is trained again (the stages before it are kept) and the
    checkpoint it makes is scored again; a deleted ``eval/<checkpoint>/`` is scored again."""
    run_dir, _ = quickstart
    ledger = Ledger(run_dir)
    kept = {unit: ledger.state(unit) for unit in ("train/0-dpo", "train/3-dpo", "eval/base/temporal_order")}
    shutil.rmtree(run_dir / "train" / "4-sft")
    out = temple("run", str(RECIPE), "--run-dir", str(run_dir), "--no-progress", cwd=run_dir.parent)
    assert "[train] 3-dpo: done earlier" in out and "[train] 4-sft: sft on 4 sample(s)" in out, out
    assert (run_dir / "train" / "4-sft" / "merged" / "config.json").is_file()
    assert "[eval] base: temporal_order done earlier" in out and "[eval] final: temporal_order (temporal_order)" in out, out
    assert {unit: Ledger(run_dir).state(unit) for unit in kept} == kept, "only the deleted stage and its scores ran"

    shutil.rmtree(run_dir / "eval" / "final")
    out = temple("run", str(RECIPE), "--run-dir", str(run_dir), "--no-progress", cwd=run_dir.parent)
    assert "[train] up to date" in out and "[eval] final: multiple_choice (multiple_choice)" in out, out
    assert "[eval] base: multiple_choice done earlier" in out, out
    assert "Loading weights" not in out, "--no-progress: the model loaded for eval draws no bar"
    assert (run_dir / "eval" / "final" / "temporal_order.json").is_file()
    out = temple("run", str(RECIPE), "--run-dir", str(run_dir), "--no-progress", cwd=run_dir.parent)
    assert "up to date: no work was done" in out
