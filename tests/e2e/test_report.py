"""report.html renders in headless Chromium with no console message, from a real select run."""


import pytest
import yaml

from chromium import chromium, render
from temple_core.cli import main

needs_chromium = pytest.mark.skipif(chromium() is None, reason="Debian's chromium package is not installed")


@pytest.fixture(scope="module")
def select_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    recipe = root / "recipe.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "run_dir": str(root / "run"),
                "videos": {"samples": ["synthetic"]},
                "select": {"shot_detector": {"name": "pyscenedetect"}, "thumbnails": True},
            }
        )
    )
    assert main(["run", str(recipe), "--no-progress"]) == 0
    return root / "run"


def test_report_lists_the_funnel_and_keyframes(select_run):
    assert main(["report", str(select_run)]) == 0
    page = (select_run / "report.html").read_text()
    assert "after shot filtering" in page and "after similarity grouping" in page
    assert page.count("data:image/jpeg;base64,") >= 8, "keyframe thumbnails are embedded"
    assert "synthetic-street" in page


def test_report_of_nothing_is_a_clear_error(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2  # bad input, like a bad recipe
    assert "nothing to report" in capsys.readouterr().err


@needs_chromium
def test_report_renders_without_console_messages(select_run, tmp_path):
    main(["report", str(select_run)])
    shot = tmp_path / "report.png"
    console = render(select_run / "report.html", shot, tmp_path / "profile")
    assert console == []
    assert shot.stat().st_size > 20_000, "a real screenshot, not a blank page"


@needs_chromium
def test_the_console_check_does_catch_errors(tmp_path):
    page = tmp_path / "bad.html"
    page.write_text("<html><body><script>undefinedFunction();</script></body></html>")
    console = render(page, tmp_path / "bad.png", tmp_path / "profile")
    assert any("undefinedFunction" in line for line in console)


@pytest.fixture(scope="module")
def eval_run(tmp_path_factory):
    """An eval-only run: base of the tiny Qwen2-VL on four held-out synthetic videos."""
    root = tmp_path_factory.mktemp("report-eval")
    recipe = root / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "run_dir": str(root / "run"),
        "eval": {"backend": {"name": "qwen2_vl", "preset": "tiny-random"}, "checkpoints": ["base"],
                 "frames": {"max_frames": 4, "max_pixels": 3136},
                 "evaluators": [{"name": "temporal_order", "videos": {"samples": ["heldout_events"]}, "max_videos": 4}]},
    }))
    assert main(["run", str(recipe), "--no-progress"]) == 0
    return root / "run"


@needs_chromium
def test_report_with_evaluation_renders_without_console_messages(eval_run, tmp_path):
    assert main(["report", str(eval_run)]) == 0
    page = (eval_run / "report.html").read_text()
    assert "<h2>Evaluation</h2>" in page and "r = 16" in page and "data:image/png;base64," in page
    shot = tmp_path / "report.png"
    assert render(eval_run / "report.html", shot, tmp_path / "profile") == []
    assert shot.stat().st_size > 20_000
