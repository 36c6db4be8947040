"""An interrupted stage resumes from its checkpoint and ends where an uninterrupted run ends;
``accelerate launch`` with 2 CPU processes (gloo) gives the metrics file one process gives."""

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from transformers import TrainerCallback

from temple_core.plugins import get_plugin_manager
from temple_core.recipe import recipe_from_data
from temple_core.stages.runner import StageContext
from temple_core.stages import train as train_stage
from temple_core.store import read_jsonl
from testkit.training import easy_pairs, state_dict_of, write_jsonl, write_videos

ROOT = Path(__file__).resolve().parents[2]
STAGE = {"trainer": "dpo", "difficulty": 16, "batch_size": 2, "per_device_batch_size": 1, "max_steps": 6,
         "warmup_ratio": 0.0, "lr": 1e-3, "gradient_checkpointing": False, "max_length": 512, "fps": 1.0,
         "save_steps": 2, "save_total_limit": 5}


class Interrupted(Exception):
    pass


class InterruptAfterFirstSave(TrainerCallback):
    def on_save(self, args, state, control, **kwargs):
        raise Interrupted(f"interrupted after the checkpoint of step {state.global_step}")


def make_recipe(run_dir, videos, stage=STAGE):
    write_jsonl(run_dir / "generate" / "pairs.jsonl", easy_pairs(videos, 16, per_video=2))
    return {"run_dir": str(run_dir), "seed": 7, "train": {"backend": {"name": "qwen2_vl", "preset": "tiny-random"}, "stages": [stage]}}


def run(data, callbacks=()):
    plugins = get_plugin_manager()
    recipe = recipe_from_data(data, plugins=plugins)
    ctx = StageContext(recipe, Path(recipe.run_dir), plugins, progress=False)
    return train_stage.run(ctx, callbacks=list(callbacks))


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    return write_videos(tmp_path_factory.mktemp("videos"), 2)


def test_interrupt_after_the_merge_before_the_finish_record_keeps_the_training(tmp_path, videos, monkeypatch):
    """merged/ is published, then the process dies before the ledger says finished (a Ctrl-C
    while the curves are drawn): the rerun resumes from the final checkpoint, not step 0."""
    from temple_core.training import curves

    def interrupted(*args, **kwargs):
        raise Interrupted("interrupted between the merge and the finish record")

    data = make_recipe(tmp_path / "run", videos)
    with monkeypatch.context() as patch:
        patch.setattr(curves, "plot_stage", interrupted)
        with pytest.raises(Interrupted):
            run(data)
    stage_dir = tmp_path / "run" / "train" / "0-dpo"
    assert (stage_dir / "merged").is_dir()
    assert (stage_dir / "checkpoints" / "checkpoint-6").is_dir(), "the checkpoints went before the stage was recorded done"
    resumed = run(data)["stages"][0]
    assert resumed["status"] == "ran" and resumed["resumed_from"].endswith("checkpoint-6")
    assert [m["step"] for m in read_jsonl(stage_dir / "metrics.jsonl")] == [1, 2, 3, 4, 5, 6]
    assert not (stage_dir / "checkpoints").exists()  # finished now: deleted as before
    again = run(data)["stages"][0]
    assert again["status"] == "up to date"


def test_interrupted_stage_resumes_to_the_same_weights(tmp_path, videos):
    whole = run(make_recipe(tmp_path / "whole", videos))
    assert whole["stages"][0]["steps"] == 6

    cut = make_recipe(tmp_path / "cut", videos)
    with pytest.raises(Interrupted):
        run(cut, callbacks=[InterruptAfterFirstSave()])
    stage_dir = tmp_path / "cut" / "train" / "0-dpo"
    assert (stage_dir / "checkpoints" / "checkpoint-2").is_dir() and not (stage_dir / "_done.json").exists()
    resumed = run(cut)
    assert resumed["stages"][0]["resumed_from"].endswith("checkpoint-2")
    steps = [m["step"] for m in read_jsonl(stage_dir / "metrics.jsonl")]
    assert steps == [1, 2, 3, 4, 5, 6]  # the steps redone after the checkpoint are not counted twice

    a = state_dict_of(tmp_path / "whole" / "train" / "0-dpo" / "merged")
    b = state_dict_of(stage_dir / "merged")
    assert set(a) == set(b)
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed run ended on other weights"
    # adapter/ on top of the starting weights is the stage's result (the path a sharded run takes).
    from temple_core.training.runner import merge_saved_adapter
    from testkit.training import build_backend, stage_context

    tctx = stage_context(build_backend(preset="tiny-random"), [], tmp_path / "whole" / "train" / "0-dpo")
    merge_saved_adapter(tctx, tmp_path / "from-adapter")
    c = state_dict_of(tmp_path / "from-adapter")
    assert all(torch.equal(a[k], c[k]) for k in a)
    whole_metrics = read_jsonl(tmp_path / "whole" / "train" / "0-dpo" / "metrics.jsonl")
    cut_metrics = read_jsonl(stage_dir / "metrics.jsonl")
    assert [m["loss"] for m in cut_metrics] == pytest.approx([m["loss"] for m in whole_metrics], abs=1e-6)
    # TRL's running token count continues from the checkpoint instead of restarting at 0.
    assert [m["num_tokens"] for m in cut_metrics] == [m["num_tokens"] for m in whole_metrics]
    assert cut_metrics[-1]["num_tokens"] > cut_metrics[2]["num_tokens"] > cut_metrics[1]["num_tokens"] > 0


def test_same_seed_same_weights_other_seed_other_weights(tmp_path, videos):
    short = {**STAGE, "max_steps": 2, "save_steps": 100}
    for name, seed in (("a", 7), ("again", 7), ("b", 8)):
        run(dict(make_recipe(tmp_path / name, videos, short), seed=seed))
    a, again, b = (state_dict_of(tmp_path / n / "train" / "0-dpo" / "merged") for n in ("a", "again", "b"))
    assert all(torch.equal(a[k], again[k]) for k in a)
    assert any(not torch.equal(a[k], b[k]) for k in a)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.skipif(shutil.which("accelerate") is None, reason="accelerate CLI not on PATH")
def test_accelerate_launch_two_cpu_processes(tmp_path, videos):
    """Two processes over gloo. accelerate 1.15's ``--cpu --num_processes 2`` starts only one
    process (it needs mpirun for more), so the launch is examples/accelerate/cpu_2proc.yaml:
    accelerate's torchrun launcher, no GPU visible."""
    stage = {**STAGE, "batch_size": 4, "max_steps": 3, "save_steps": 100}
    one = make_recipe(tmp_path / "one", videos, stage)
    run(one)
    two = make_recipe(tmp_path / "two", videos, stage)
    recipe_path = tmp_path / "two.yaml"
    recipe_path.write_text(yaml.safe_dump(two))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(
        ["accelerate", "launch", "--config_file", str(ROOT / "examples" / "accelerate" / "cpu_2proc.yaml"),
         "--main_process_port", str(free_port()), "-m", "temple_core", "run", str(recipe_path), "--no-progress"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    final = json.loads((tmp_path / "two" / "train" / "final.json").read_text())
    assert final["stages"][0]["processes"] == 2
    single = read_jsonl(tmp_path / "one" / "train" / "0-dpo" / "metrics.jsonl")
    double = read_jsonl(tmp_path / "two" / "train" / "0-dpo" / "metrics.jsonl")
    assert [m["step"] for m in double] == [m["step"] for m in single] == [1, 2, 3]
    assert [sorted(m) for m in double] == [sorted(m) for m in single]
    # Same global batch (4 pairs a step: 4 accumulated on one process, 2 x 2 on two) in the
    # same seeded order: step 1 sees the same pairs at the same weights, so the same mean
    # log-probabilities and token count (gathered over both processes).
    for key in ("logps/chosen", "logps/rejected", "num_tokens"):
        assert double[0][key] == pytest.approx(single[0][key], abs=1e-4), key
    assert (tmp_path / "two" / "train" / "0-dpo" / "merged").is_dir()


def test_single_process_cpu_launch_is_detected():
    from temple_core.stages.train import single_process_cpu_launch

    # What accelerate's simple launcher gives `--cpu --num_processes 2`: one process, no WORLD_SIZE.
    assert single_process_cpu_launch({"ACCELERATE_USE_CPU": "True", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"})
    assert not single_process_cpu_launch({"ACCELERATE_USE_CPU": "True"})  # --num_processes 1
    assert not single_process_cpu_launch({"ACCELERATE_USE_CPU": "True", "MASTER_ADDR": "x", "WORLD_SIZE": "2"})


def test_fsdp_asked_for_without_a_gpu_is_reported():
    from temple_core.stages.train import fsdp_without_gpu

    assert fsdp_without_gpu({"ACCELERATE_USE_FSDP": "true"}, cuda_available=False)
    assert not fsdp_without_gpu({"ACCELERATE_USE_FSDP": "true"}, cuda_available=True)
    assert not fsdp_without_gpu({"ACCELERATE_USE_DEEPSPEED": "true"}, cuda_available=False)
    assert not fsdp_without_gpu({}, cuda_available=False)


def launch(config, recipe, extra=()):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config), *extra,
         "--main_process_port", str(free_port()), "-m", "temple_core", "run", str(recipe), "--no-progress"],
        capture_output=True, text=True, env=env, timeout=600,
    )


def test_deepspeed_zero2_config_on_two_cpu_processes(tmp_path, videos):
    """examples/accelerate/deepspeed_zero2.yaml, really run: DeepSpeed's CPU accelerator on 2
    processes gives the metrics of one process (deepspeed is optional: pip install deepspeed)."""
    pytest.importorskip("deepspeed", reason="deepspeed is not installed (optional, for multi-GPU training)")
    stage = {**STAGE, "batch_size": 4, "max_steps": 3, "save_steps": 100}
    run(make_recipe(tmp_path / "one", videos, stage))
    recipe_path = tmp_path / "ds.yaml"
    recipe_path.write_text(yaml.safe_dump(make_recipe(tmp_path / "ds", videos, stage)))
    result = launch(ROOT / "examples" / "accelerate" / "deepspeed_zero2.yaml", recipe_path,
                    ["--num_processes", "2", "--mixed_precision", "no"])
    assert result.returncode == 0, result.stderr[-4000:]
    final = json.loads((tmp_path / "ds" / "train" / "final.json").read_text())["stages"][0]
    assert (final["processes"], final["distributed_type"], final["zero_stage"]) == (2, "DEEPSPEED", 2)
    single = read_jsonl(tmp_path / "one" / "train" / "0-dpo" / "metrics.jsonl")
    sharded = read_jsonl(tmp_path / "ds" / "train" / "0-dpo" / "metrics.jsonl")
    assert [m["step"] for m in sharded] == [1, 2, 3]
    for key in ("loss", "logps/chosen", "logps/rejected"):
        assert [m[key] for m in sharded] == pytest.approx([m[key] for m in single], abs=1e-4), key
    assert (tmp_path / "ds" / "train" / "0-dpo" / "merged" / "config.json").is_file()
