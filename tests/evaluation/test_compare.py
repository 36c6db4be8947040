"""`temple compare` on two real eval runs: one table (run x checkpoint by evaluator, with
intervals) and a chart; the report's evaluation section is in report.html (the page as a browser shows
it is checked in tests/e2e/test_report.py, in headless Chromium)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from temple_core.cli import main
from temple_core.evaluation.results import run_results

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    runs = []
    for name, family in (("qwen2", "qwen2_vl"), ("qwen25", "qwen2_5_vl")):
        recipe = root / f"{name}.yaml"
        recipe.write_text(yaml.safe_dump({
            "run_dir": str(root / name),
            "eval": {"backend": {"name": family, "preset": "tiny-random"}, "checkpoints": ["base"],
                     "frames": {"max_frames": 4, "max_pixels": 3136},
                     "evaluators": [{"name": "temporal_order", "videos": {"samples": ["heldout_events"]}, "max_videos": 4},
                                    {"name": "multiple_choice", "file": str(ROOT / "examples" / "eval" / "sample_mc.jsonl")}]},
        }))
        result = subprocess.run([sys.executable, "-m", "temple_core", "run", str(recipe), "--no-progress"], capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        runs.append(root / name)
    return runs


def test_compare_prints_the_table_and_writes_the_chart(two_runs, tmp_path, capsys):
    chart, page = tmp_path / "chart.png", tmp_path / "compare.html"
    assert main(["compare", *map(str, two_runs), "--chart", str(chart), "--html", str(page)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["run", "checkpoint", "temporal_order", "multiple_choice"]
    for run in two_runs:
        scores = {r["evaluator"]: r for r in run_results(run)}
        row = next(line for line in lines if line.startswith(run.name + " "))
        for name in ("temporal_order", "multiple_choice"):
            low, high = scores[name]["interval"]
            assert f"{scores[name]['score']:.3f} [{low:.3f}, {high:.3f}]" in row
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and chart.stat().st_size > 10_000
    assert "data:image/png;base64," in page.read_text()
    assert main(["compare", *map(str, two_runs), "--chart", str(tmp_path / "delta.png"), "--baseline", f"{two_runs[0]}:base"]) == 0
    assert (tmp_path / "delta.png").stat().st_size > 10_000


def test_compare_of_a_run_without_scores_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["compare", str(tmp_path / "empty")]) == 1
    assert "no evaluation results" in capsys.readouterr().err


def test_a_run_without_scores_beside_others_is_named_not_dropped(two_runs, tmp_path, capsys):
    (tmp_path / "unevaluated").mkdir()
    assert main(["compare", str(two_runs[0]), str(tmp_path / "unevaluated"), "--chart", str(tmp_path / "c.png")]) == 0
    out = capsys.readouterr().out
    assert any(line.startswith(two_runs[0].name + " ") for line in out.splitlines())
    assert f"not shown: {tmp_path / 'unevaluated'} (no evaluation results" in out


def test_report_shows_the_evaluation(two_runs):
    assert main(["report", str(two_runs[0])]) == 0
    page = (two_runs[0] / "report.html").read_text()
    assert "<h2>Evaluation</h2>" in page and "r = 16" in page and "max_frames 4" in page


def test_run_labels_are_short_distinct_and_never_empty(tmp_path, monkeypatch):
    from temple_core.evaluation.compare import run_labels

    (tmp_path / "a" / "seed0").mkdir(parents=True)
    (tmp_path / "b" / "seed0").mkdir(parents=True)
    assert run_labels([tmp_path / "a", tmp_path / "b"]) == ["a", "b"]
    assert run_labels([tmp_path / "a" / "seed0", tmp_path / "b" / "seed0"]) == ["a/seed0", "b/seed0"]
    monkeypatch.chdir(tmp_path / "a" / "seed0")  # `temple compare .` names the folder it is
    assert run_labels([Path("."), Path("..")]) == ["seed0", "a"]
