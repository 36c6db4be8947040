"""The select stage end to end on synthetic videos and bad files: decisions, errors,
resumption after a kill, and splitting across processes."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from temple_core.recipe import recipe_from_data
from temple_core.stages.runner import StageContext
from temple_core.stages import select as select_stage
from temple_core.store import Ledger, read_jsonl

HERE = Path(__file__).resolve().parent
ORDER = ["cuts", "fade", "flash", "long", "interview", "three"]


def recipe_data(run_dir, paths, select=None):
    return {
        "run_dir": str(run_dir),
        "videos": {"paths": [str(p) for p in paths]},
        "select": select or {"thumbnails": True},
    }


def run_select(run_dir, paths, plugins, select=None, rank=0, world_size=1):
    recipe = recipe_from_data(recipe_data(run_dir, paths, select), plugins=plugins)
    ctx = StageContext(recipe, Path(run_dir), plugins, rank=rank, world_size=world_size, progress=False)
    summary = select_stage.run(ctx)
    return summary, read_jsonl(Path(run_dir) / "select" / "videos.jsonl")


def inputs(videos_dir, bad_files):
    return [videos_dir / f"{n}.mp4" for n in ORDER] + list(bad_files.values())


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, videos_dir, bad_files, plugins):
    """One uninterrupted run with the defaults (TransNetV2 many-hot, colorhist)."""
    run_dir = tmp_path_factory.mktemp("full")
    summary, records = run_select(run_dir, inputs(videos_dir, bad_files), plugins)
    return run_dir, summary, records


def by_id(records):
    return {r["video_id"]: r for r in records}


def close(got, expected, tolerance=1):
    return len(got) == len(expected) and all(
        abs(g[0] - e[0]) <= tolerance and abs(g[1] - e[1]) <= tolerance for g, e in zip(got, expected)
    )


def test_decisions_on_synthetic_videos(full_run):
    run_dir, summary, records = full_run
    r = by_id(records)
    assert [x["video_id"] for x in records[: len(ORDER)]] == ORDER  # input order

    cuts = r["cuts"]
    assert cuts["status"] == "kept" and cuts["reason"] is None
    assert cuts["fps"] == 10.0 and cuts["num_frames"] == 105
    assert close(cuts["clips"], [[0, 19], [20, 41], [42, 59], [60, 84], [85, 104]])
    assert cuts["groups"] == [[0], [1], [2], [3], [4]] and cuts["segments"] == [[0], [1], [2], [3], [4]]
    assert len(cuts["keyframes"]) == 5 and all(len(k) == 2 for k in cuts["keyframes"])
    for (first, last), (k1, k2) in zip(cuts["clips"], cuts["keyframes"]):
        assert first <= k1 < k2 <= last

    fade = r["fade"]
    assert fade["status"] == "kept"
    assert close(fade["clips"], [[0, 24], [35, 59], [60, 84], [85, 109]])

    # The 3-frame flash is not a shot (the release's cuts drop it: no stage count); the
    # black shot is monochrome.
    flash = r["flash"]
    assert flash["status"] == "kept"
    assert flash["details"]["too_few_frames"] == 0 and flash["details"]["monochrome"] == 1
    assert not any(s <= 26 <= e for s, e in flash["shots"])
    assert close(flash["clips"], [[0, 24], [28, 52], [53, 77], [90, 114], [115, 139]])
    assert flash["groups"][0] == [0, 1]  # scene 0 before and after the flash: one group
    assert flash["segments"] == [[0, 1], [2], [3], [4]]

    long = r["long"]
    assert long["status"] == "rejected" and long["reason"] == "long_scene"
    assert long["details"]["clip"] == 1 and 16.0 < long["details"]["seconds"] <= 17.0

    interview = r["interview"]
    assert interview["status"] == "rejected" and interview["reason"] == "repeated_group"
    assert interview["groups"] == [[0, 2, 4], [1, 3, 5]]
    assert interview["details"]["segments"] == 6 and interview["details"]["group_segments"] == 3

    three = r["three"]
    assert three["status"] == "rejected" and three["reason"] == "few_shots" and three["details"]["kept"] == 3

    assert summary["kept"] == 3 and summary["rejected"] == 3 and summary["error"] == 5
    assert summary["reasons"] == {"few_shots": 1, "long_scene": 1, "repeated_group": 1}


def test_bad_files_get_error_records(full_run, bad_files):
    _, _, records = full_run
    r = by_id(records)
    for name, path in bad_files.items():
        record = r[path.stem]
        assert record["status"] == "error", name
        assert str(path) in record["reason"], record["reason"]
    assert "0 bytes" in r["empty"]["reason"]
    assert "no video stream" in r["audio"]["reason"]
    assert "truncated" in r["cut_short"]["reason"]


def test_thumbnails_for_kept_videos(full_run):
    run_dir, _, records = full_run
    for record in records:
        folder = run_dir / "select" / "thumbs" / record["video_id"]
        if record["status"] == "kept":
            names = {p.name for p in folder.iterdir()}
            assert names == {f"{i}.jpg" for pair in record["keyframes"] for i in pair}
        else:
            assert not folder.exists()


def test_rerun_skips_done_videos(full_run, plugins, videos_dir, bad_files):
    run_dir, _, records = full_run
    before = (run_dir / "select" / "videos.jsonl").read_bytes()
    started = time.time()
    _, again = run_select(run_dir, inputs(videos_dir, bad_files), plugins)
    assert time.time() - started < 5  # nothing is decoded again
    assert (run_dir / "select" / "videos.jsonl").read_bytes() == before


def test_killed_run_resumes_to_the_same_manifest(tmp_path, full_run, videos_dir, bad_files, plugins):
    _, _, uninterrupted = full_run
    run_dir = tmp_path / "killed"
    recipe_path = tmp_path / "recipe.yaml"
    recipe_path.write_text(yaml.safe_dump(recipe_data(run_dir, inputs(videos_dir, bad_files))))
    child = subprocess.Popen([sys.executable, str(HERE / "run_select.py"), str(recipe_path)], start_new_session=True)
    shard = run_dir / "select" / "videos.rank0.jsonl"
    try:
        deadline = time.time() + 120
        while time.time() < deadline and child.poll() is None:
            if shard.exists() and shard.read_bytes().count(b"\n") >= 2:
                break
            time.sleep(0.05)
        assert child.poll() is None, "the run finished before it could be killed"
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    finally:
        if child.poll() is None:
            child.kill()
    done = shard.read_bytes().count(b"\n")
    assert 2 <= done < len(uninterrupted)
    assert not (run_dir / "select" / "videos.jsonl").exists()
    _, resumed = run_select(run_dir, inputs(videos_dir, bad_files), plugins)
    assert resumed == uninterrupted


def test_two_ranks_equal_one(tmp_path, videos_dir, bad_files, plugins, monkeypatch):
    """Ranks 0 and 1 of 2 (in-process, one after the other) then the merge by rank 0 give the
    manifest of a single process. One process cannot meet itself at a barrier: rank 1 has
    finished before rank 0 starts, which is what the barrier ensures in a real launch (tested
    there: test_accelerate_launch_two_processes, tests/core/test_distributed.py)."""
    select = {"shot_detector": {"name": "pyscenedetect"}}
    paths = inputs(videos_dir, bad_files)
    _, single = run_select(tmp_path / "one", paths, plugins, select)
    recipe = recipe_from_data(recipe_data(tmp_path / "two", paths, select), plugins=plugins)
    monkeypatch.setattr("temple_core.stages.runner.barrier", lambda world_size: None)
    summaries = []
    for rank in (1, 0):  # rank 0 last: it merges
        ctx = StageContext(recipe, tmp_path / "two", plugins, rank=rank, world_size=2, progress=False)
        summaries.append(select_stage.run(ctx))
    assert read_jsonl(tmp_path / "two" / "select" / "videos.jsonl") == single
    # PySceneDetect finds the same hard cuts, so the same decisions on the hard-cut videos.
    r = by_id(single)
    assert r["cuts"]["status"] == "kept" and r["cuts"]["segments"] == [[0], [1], [2], [3], [4]]
    assert (r["interview"]["reason"], r["long"]["reason"], r["three"]["reason"]) == (
        "repeated_group", "long_scene", "few_shots")
    assert r["interview"]["groups"] == [[0, 2, 4], [1, 3, 5]]
    assert summaries[0]["videos"] == len(paths) // 2  # rank 1 did every second video
    assert summaries[1]["videos"] == len(paths)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("accelerate") is None, reason="accelerate CLI not on PATH")
def test_accelerate_launch_two_processes(tmp_path, videos_dir, bad_files, plugins):
    select = {"shot_detector": {"name": "pyscenedetect"}}
    paths = inputs(videos_dir, bad_files)
    _, single = run_select(tmp_path / "one", paths, plugins, select)
    recipe_path = tmp_path / "recipe.yaml"
    recipe_path.write_text(yaml.safe_dump(recipe_data(tmp_path / "two", paths, select)))
    # accelerate 1.15's `--cpu --num_processes 2` starts ONE process (more need mpirun); the
    # example config launches 2 CPU processes through torchrun (see its comments).
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    config = HERE.parent.parent / "examples" / "accelerate" / "cpu_2proc.yaml"
    result = subprocess.run(
        ["accelerate", "launch", "--config_file", str(config), "--main_process_port", "29541",
         str(HERE / "run_select.py"), str(recipe_path)],
        capture_output=True, text=True, env=env, timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(recipe_path.with_suffix(".ranks").read_text().split()) == ["0/2", "1/2"], "two processes ran"
    merged = read_jsonl(tmp_path / "two" / "select" / "videos.jsonl")
    assert merged == single
    assert Ledger(tmp_path / "two").state("select").summary["videos"] == len(paths)


def test_bad_encoder_checkpoint_stops_before_any_video(tmp_path, videos_dir, plugins):
    from temple_core.errors import ModelError, RecipeError

    select = {"shot_detector": {"name": "pyscenedetect"}, "encoder": {"name": "siglip", "path": str(tmp_path / "broken")}}
    with pytest.raises(RecipeError, match="select.encoder.path"):  # a folder that is not there: at validation
        run_select(tmp_path / "run", [videos_dir / "cuts.mp4"], plugins, select)
    (tmp_path / "broken").mkdir()  # there, but no checkpoint in it: when the model loads, before any video
    with pytest.raises(ModelError, match="broken"):
        run_select(tmp_path / "run", [videos_dir / "cuts.mp4"], plugins, select)
    assert not (tmp_path / "run" / "select" / "videos.rank0.jsonl").exists()
