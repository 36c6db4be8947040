"""The file system says no: one line naming the path, exit code 2, nothing already done lost.

Real runs of the command line on a small recipe (the synthetic samples, PySceneDetect,
heuristic captions): a read-only run directory (up to date: the run succeeds and writes
nothing; with work to do: one line), files capped in size (``RLIMIT_FSIZE``) while sample
videos are written and while a training stage saves, a full ``tmpfs``, a corrupt line in a
manifest or in the ledger, and ``temple report`` on what is not a (readable) run. After the
cause is gone, the same command finishes the run without redoing finished work.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from temple_core.store import read_jsonl
from testkit.storage import ReadOnly, namespaces_work, one_line, temple, tree
from testkit.training import easy_pairs, write_jsonl, write_videos

pytestmark = pytest.mark.slow

RECIPE = {
    "run_dir": "run",
    "seed": 0,
    "videos": {"samples": ["synthetic"]},
    "select": {"shot_detector": {"name": "pyscenedetect"}, "encoder": {"name": "colorhist"}},
    "generate": {"captioner": {"name": "heuristic"}, "difficulties": [16, 8]},
}


def write_recipe(folder: Path, data=RECIPE) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def finished(run_dir: Path, unit: str) -> int:
    return sum(1 for r in read_jsonl(run_dir / "ledger.jsonl") if r["unit"] == unit and r["event"] == "finished")


@pytest.fixture(scope="module")
def done_run(tmp_path_factory) -> Path:
    """A finished select + generate run; each test works on its own copy."""
    folder = tmp_path_factory.mktemp("done")
    recipe = write_recipe(folder)
    result = temple("run", str(recipe), "--no-progress", cwd=folder)
    assert result.returncode == 0, result.stderr[-3000:]
    return folder


def copy_of(done_run: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the finished run, as if it had been run where it now is."""
    folder = tmp_path / "copy"
    shutil.copytree(done_run, folder, symlinks=True)
    as_run = folder / "run" / "recipe.yaml"
    as_run.write_text(as_run.read_text().replace(str(done_run), str(folder)))
    return folder / "recipe.yaml", folder / "run"


# -- read-only --------------------------------------------------------------------------

def test_read_only_run_directory(done_run, tmp_path):
    recipe, run_dir = copy_of(done_run, tmp_path)
    before = tree(run_dir)
    with ReadOnly(run_dir) as prefix:
        same = temple("run", str(recipe), "--no-progress", cwd=tmp_path, prefix=prefix)
        assert same.returncode == 0, same.stderr[-3000:]
        assert "up to date" in same.stdout
        assert tree(run_dir) == before, "an up-to-date run writes nothing"

        changed = write_recipe(tmp_path / "changed", {**RECIPE, "run_dir": str(run_dir),
                                                       "generate": {**RECIPE["generate"], "difficulties": [16]}})
        refused = temple("run", str(changed), "--no-progress", cwd=tmp_path, prefix=prefix)
        assert refused.returncode == 2, refused.stderr[-3000:]
        line = one_line(refused)
        assert str(run_dir) in line and ("Read-only file system" in line or "Permission denied" in line), line

        report = temple("report", str(run_dir), cwd=tmp_path, prefix=prefix)
        assert report.returncode == 2
        assert "report.html" in one_line(report)
    assert tree(run_dir) == before, "nothing lost"


# -- files capped in size ---------------------------------------------------------------

def test_a_file_size_limit_while_writing_sample_videos(tmp_path):
    recipe = write_recipe(tmp_path)
    capped = temple("run", str(recipe), "--no-progress", cwd=tmp_path, limit_bytes=8_000)
    assert capped.returncode == 2, capped.stderr[-3000:]
    line = one_line(capped)
    assert "File too large" in line and str(tmp_path / "run") in line, line
    assert not list((tmp_path / "run").rglob(".*.tmp*")), "no temporary file left behind"
    again = temple("run", str(recipe), "--no-progress", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert finished(tmp_path / "run", "generate") == 1


def test_a_file_size_limit_while_a_training_stage_saves(tmp_path):
    videos = write_videos(tmp_path / "videos", 2)
    pairs = write_jsonl(tmp_path / "pairs.jsonl", easy_pairs(videos, per_video=2))
    data = {
        "run_dir": "run",
        "seed": 0,
        "train": {
            "backend": {"name": "qwen2_vl", "preset": "tiny-random", "fps": 1.0, "max_frames": 4, "max_pixels": 12544},
            "stages": [{"trainer": "dpo", "data": str(pairs), "batch_size": 2, "max_steps": 2, "save_steps": 1,
                        "max_length": 1024, "gradient_checkpointing": False}],
        },
    }
    recipe = write_recipe(tmp_path / "r", data)
    # The preset exists before the limit: the cap is on what the run writes.
    assert temple("validate", str(recipe), cwd=tmp_path).returncode == 0
    from testkit.training import build_backend

    build_backend(preset="tiny-random").model_dir()
    capped = temple("run", str(recipe), "--no-progress", cwd=tmp_path, limit_bytes=150_000)
    assert capped.returncode == 2, capped.stderr[-3000:]
    line = one_line(capped)
    run_dir = tmp_path / "r" / "run"
    assert str(run_dir / "train" / "0-dpo") in line and "too large" in line.lower(), line
    again = temple("run", str(recipe), "--no-progress", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (run_dir / "train" / "0-dpo" / "merged" / "config.json").is_file()
    assert finished(run_dir, "train/0-dpo") == 1


@pytest.mark.skipif(not namespaces_work(), reason="needs `unshare -rm` to mount a private tmpfs")
def test_a_full_disk(tmp_path):
    """A 100 KB tmpfs: the samples fit, the manifests do not all fit. ENOSPC is one line; after
    the disk grows, the same command finishes without redoing the finished stage."""
    recipe = write_recipe(tmp_path)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    driver = tmp_path / "driver.py"
    driver.write_text(f"""
import json, subprocess, sys
run = {str(run_dir)!r}
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=100k", "tmpfs", run], check=True)
cmd = [sys.executable, "-m", "temple_core", "run", {str(recipe)!r}, "--no-progress"]
first = subprocess.run(cmd, capture_output=True, text=True)
left = sorted(p for p in __import__("os").listdir(run))
subprocess.run(["mount", "-o", "remount,size=64m", "tmpfs", run], check=True)
second = subprocess.run(cmd, capture_output=True, text=True)
ledger = open(run + "/ledger.jsonl").read()
json.dump({{"first": [first.returncode, first.stderr], "second": [second.returncode, second.stderr],
           "ledger": ledger, "left": left}}, open({str(out / "result.json")!r}, "w"))
""")
    subprocess.run(["unshare", "-rm", sys.executable, str(driver)], check=True, timeout=600, cwd=tmp_path,
                   env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    result = json.loads((out / "result.json").read_text())
    code, err = result["first"]
    assert code == 2, err[-3000:]
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err[-3000:]
    assert "No space left on device" in lines[0] and str(run_dir) in lines[0], lines[0]
    code, err = result["second"]
    assert code == 0, err[-3000:]
    events = [json.loads(line) for line in result["ledger"].splitlines()]
    for unit in ("select", "generate"):
        assert sum(e["unit"] == unit and e["event"] == "finished" for e in events) == 1


# -- a corrupt record -------------------------------------------------------------------

@pytest.mark.parametrize(
    "line, words",
    [
        ("{not json\n", ["not a JSON line"]),
        ("[1, 2]\n", ["not a JSON object"]),
        ('{"status": "kept"}\n', ["video_id"]),
        (b"\xff\xfe garbage\n", ["not a JSON line"]),
    ],
)
def test_a_corrupt_manifest_line_is_named_with_its_line_number(done_run, tmp_path, line, words):
    recipe, run_dir = copy_of(done_run, tmp_path)
    manifest = run_dir / "select" / "videos.jsonl"
    lines = manifest.read_bytes().splitlines(keepends=True)
    lines[1] = line if isinstance(line, bytes) else line.encode()
    manifest.write_bytes(b"".join(lines))
    corrupt = manifest.read_bytes()
    changed = write_recipe(tmp_path / "changed", {**RECIPE, "run_dir": str(run_dir),
                                                   "generate": {**RECIPE["generate"], "difficulties": [16]}})
    result = temple("run", str(changed), "--no-progress", cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    message = one_line(result)
    assert f"{manifest}:2" in message, message
    for word in words:
        assert word in message, message
    assert manifest.read_bytes() == corrupt, "the file is left for the user to fix"
    report = temple("report", str(run_dir), cwd=tmp_path)
    assert report.returncode == 2 and f"{manifest}:2" in one_line(report)


def test_a_corrupt_ledger_line(done_run, tmp_path):
    recipe, run_dir = copy_of(done_run, tmp_path)
    ledger = run_dir / "ledger.jsonl"
    ledger.write_text(ledger.read_text().replace("}\n", "}\n{oops\n", 1))
    result = temple("run", str(recipe), "--no-progress", cwd=tmp_path)
    assert result.returncode == 2
    assert f"{ledger}:2" in one_line(result)


# -- temple report on what is not a run -------------------------------------------------

def test_report_on_bad_input(tmp_path, done_run):
    cases = {
        "missing": tmp_path / "nope",
        "a file": tmp_path / "file.txt",
        "empty": tmp_path / "empty",
    }
    cases["a file"].write_text("x")
    cases["empty"].mkdir()
    for name, path in cases.items():
        result = temple("report", str(path), cwd=tmp_path)
        assert result.returncode == 2, (name, result.stderr[-2000:])
        assert str(path) in one_line(result), name
    # Pairs that are JSON objects but not pairs: named by file and line, not a KeyError.
    recipe, run_dir = copy_of(done_run, tmp_path)
    pairs = run_dir / "generate" / "pairs.jsonl"
    pairs.write_text(pairs.read_text() + json.dumps({"pair_id": "x"}) + "\n")
    count = len(pairs.read_text().splitlines())
    result = temple("report", str(run_dir), cwd=tmp_path)
    assert result.returncode == 2 and f"{pairs}:{count}" in one_line(result)
