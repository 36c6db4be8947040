"""A 4-stage DPO curriculum then SFT from one recipe: each stage starts from (and is
referenced against) the previous stage's merged weights; the vision tower is untouched by DPO
and LoRA-trained by SFT (not its projector); the final merged model loads with the backend's ``path:``; a re-run
trains nothing again."""

from pathlib import Path

import pytest
import torch
from transformers import TrainerCallback

from temple_core.plugins import get_plugin_manager
from temple_core.recipe import recipe_from_data
from temple_core.stages.runner import StageContext
from temple_core.stages import train as train_stage
from temple_core.store import Ledger, read_jsonl
from testkit.training import build_backend, easy_pairs, state_dict_of, write_jsonl, write_videos

ROOT = Path(__file__).resolve().parents[2]
SFT_FILE = ROOT / "examples" / "sft" / "sample.jsonl"
SMALL = {"batch_size": 2, "per_device_batch_size": 2, "max_steps": 2, "warmup_ratio": 0.0, "lr": 1e-3,
         "gradient_checkpointing": False, "max_length": 512, "fps": 1.0, "save_steps": 1000}


def base_weights(model) -> dict[str, torch.Tensor]:
    """The weights under the adapter (what the reference runs on), named as in a saved model."""
    weights = {}
    for name, tensor in model.get_base_model().state_dict().items():
        if "lora_" in name or ".modules_to_save." in name:
            continue
        name = name.replace(".base_layer.", ".").replace(".original_module.", ".")
        weights[name] = tensor.detach().clone()
    return weights


class StartRecorder(TrainerCallback):
    """Records each stage's starting weights as the trainer sees them when training begins."""

    def __init__(self):
        self.starts = []

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.starts.append(base_weights(model))


def same(a: dict, b: dict, keys) -> bool:
    return all(torch.equal(a[k], b[k]) for k in keys)


@pytest.fixture(scope="module")
def curriculum(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("curriculum")
    run_dir = tmp / "run"
    videos = write_videos(tmp / "videos", 2)
    pairs = [p for r in (16, 8, 4, 2) for p in easy_pairs(videos, r)]
    # One pair whose video is gone: skipped and counted, not fatal.
    pairs.append({**pairs[0], "pair_id": "lost", "video_path": str(tmp / "videos" / "deleted.mp4")})
    write_jsonl(run_dir / "generate" / "pairs.jsonl", pairs)
    stages = [{"trainer": "dpo", "difficulty": r, **SMALL} for r in (16, 8, 4, 2)]
    stages.append({"trainer": "sft", "data": str(SFT_FILE), **SMALL})
    plugins = get_plugin_manager()
    recipe = recipe_from_data(
        {"run_dir": str(run_dir), "seed": 3, "train": {"backend": {"name": "qwen2_vl", "preset": "tiny-random"}, "stages": stages}},
        plugins=plugins,
    )
    recorder = StartRecorder()
    ctx = StageContext(recipe, run_dir, plugins, progress=False)
    summary = train_stage.run(ctx, callbacks=[recorder])
    return ctx, summary, recorder


def test_each_stage_starts_from_and_refers_to_the_previous_merged_weights(curriculum):
    ctx, summary, recorder = curriculum
    train_dir = ctx.run_dir / "train"
    names = ["0-dpo", "1-dpo", "2-dpo", "3-dpo", "4-sft"]
    assert [s["stage"] for s in summary["stages"]] == names
    assert len(recorder.starts) == 5
    for k in range(1, 5):
        previous = state_dict_of(train_dir / names[k - 1] / "merged")
        start = recorder.starts[k]
        assert set(previous) == set(start), names[k]
        assert same(previous, start, previous), f"{names[k]} did not start from {names[k - 1]}/merged"
        # ... and training changed something, so the chain is not trivially equal.
        assert not same(previous, recorder.starts[k - 1], previous)


def test_vision_tower_frozen_in_dpo_lora_trained_in_sft(curriculum):
    ctx, _, recorder = curriculum
    train_dir = ctx.run_dir / "train"
    backend = build_backend(path=str(train_dir / "0-dpo" / "merged"))
    prefixes = tuple(n + "." for n in backend.vision_module_names(backend.load_model()))
    first = recorder.starts[0]
    vision = [k for k in first if k.startswith(prefixes)]
    assert vision
    for name in ("0-dpo", "1-dpo", "2-dpo", "3-dpo"):
        assert same(state_dict_of(train_dir / name / "merged"), first, vision), f"{name} changed the vision tower"
    # SFT (LoRA on the tower, SPEC §5): exactly the tower's linear weights change; the
    # projector (merger), norms, biases and the patch embedding stay as they were.
    sft = state_dict_of(train_dir / "4-sft" / "merged")
    start = recorder.starts[4]
    model = backend.load_model()
    linear = {f"{n}.weight" for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    changed = {k for k in vision if not torch.equal(sft[k], start[k])}
    expected = {k for k in vision if k in linear and not k.startswith("model.visual.merger.")}
    assert expected and changed == expected, "SFT's LoRA did not change exactly the vision tower's linear layers"


def test_outputs_curves_and_final_model(curriculum):
    ctx, summary, _ = curriculum
    train_dir = ctx.run_dir / "train"
    for stage in summary["stages"]:
        folder = train_dir / stage["stage"]
        assert (folder / "metrics.jsonl").is_file() and (folder / "curves.png").stat().st_size > 1000
        assert Ledger(ctx.run_dir).state(f"train/{stage['stage']}").event == "finished" and (folder / "adapter").is_dir()
        assert not (folder / "checkpoints").exists()
    assert (train_dir / "curves.png").stat().st_size > 1000
    assert summary["final_model"] == str(train_dir / "4-sft" / "merged")
    backend = build_backend(path=summary["final_model"])
    (answer,) = backend.chat(
        [[{"role": "user", "content": [{"type": "video", "path": str(ROOT / "examples/sft/videos/red_then_blue.mp4")}, {"type": "text", "text": "Describe the video."}]}]],
        max_new_tokens=5,
        do_sample=False,
    )
    assert isinstance(answer, str)


def test_unreadable_video_is_skipped_and_counted(curriculum):
    ctx, summary, _ = curriculum
    assert [s["skipped"] for s in summary["stages"]] == [1, 0, 0, 0, 0]
    assert [s["samples"] for s in summary["stages"]][:4] == [4, 4, 4, 4]
    (skipped,) = read_jsonl(ctx.run_dir / "train" / "0-dpo" / "skipped.jsonl")
    assert skipped["id"] == "lost" and "no such file" in skipped["reason"]


def test_sft_curves_compared_with_another_run(curriculum, tmp_path):
    """The paper's Figure 4: SFT loss / grad norm with DPO first (the curriculum run) vs without."""
    ctx, _, _ = curriculum
    plugins = get_plugin_manager()
    recipe = recipe_from_data(
        {"run_dir": str(tmp_path / "sft-only"), "seed": 3, "train": {
            "backend": {"name": "qwen2_vl", "preset": "tiny-random"}, "compare_with": str(ctx.run_dir),
            "stages": [{"trainer": "sft", "data": str(SFT_FILE), **SMALL}]}},
        plugins=plugins,
    )
    summary = train_stage.run(StageContext(recipe, tmp_path / "sft-only", plugins, progress=False))
    assert summary["comparison"] == str(tmp_path / "sft-only" / "train" / "sft_compare.png")
    assert Path(summary["comparison"]).stat().st_size > 1000


def test_rerun_trains_nothing(curriculum):
    ctx, summary, _ = curriculum
    before = {p: p.stat().st_mtime_ns for p in (ctx.run_dir / "train").glob("*/merged/*")}
    again = train_stage.run(ctx)
    assert [s["status"] for s in again["stages"]] == ["up to date"] * 5
    assert {p: p.stat().st_mtime_ns for p in (ctx.run_dir / "train").glob("*/merged/*")} == before


def test_appending_a_stage_keeps_the_finished_ones(tmp_path):
    """Changing train: (here: one more stage) makes the run move train/ aside; the unchanged,
    finished stages are taken back rather than trained again."""
    from temple_core.stages.runner import run_stages

    videos = write_videos(tmp_path / "videos", 1)
    write_jsonl(tmp_path / "run" / "generate" / "pairs.jsonl", [p for r in (16, 8) for p in easy_pairs(videos, r)])
    plugins = get_plugin_manager()
    data = {"run_dir": str(tmp_path / "run"), "seed": 1, "train": {
        "backend": {"name": "qwen2_vl", "preset": "tiny-random"},
        "stages": [{"trainer": "dpo", "difficulty": 16, **SMALL}]}}
    run_stages(recipe_from_data(data, plugins=plugins), plugins, progress=False, log=lambda *a: None)
    merged = tmp_path / "run" / "train" / "0-dpo" / "merged"
    stamp = {p.name: p.stat().st_mtime_ns for p in merged.iterdir()}
    data["train"]["stages"].append({"trainer": "dpo", "difficulty": 8, **SMALL})
    (result,) = run_stages(recipe_from_data(data, plugins=plugins), plugins, progress=False, log=lambda *a: None)
    assert [s["status"] for s in result.summary["stages"]] == ["up to date", "ran"]
    assert {p.name: p.stat().st_mtime_ns for p in merged.iterdir()} == stamp
    assert result.summary["stages"][1]["start"] == str(merged)


def test_training_bar_is_labelled_from_its_first_line(capsys):
    """The stage's progress bar shows the stage's name from the first time it is drawn
    (transformers' own callback draws an unlabelled "0/N" bar first)."""
    from transformers import TrainerControl, TrainerState, TrainingArguments

    from temple_core.training.metrics import CompactProgressCallback

    callback = CompactProgressCallback("0-dpo")
    state = TrainerState(max_steps=3)
    args = TrainingArguments(output_dir="unused", report_to=[])
    callback.on_train_begin(args, state, TrainerControl())
    callback.on_step_end(args, state, TrainerControl())
    callback.on_train_end(args, state, TrainerControl())
    drawn = [line for line in capsys.readouterr().err.replace("\r", "\n").splitlines() if line.strip()]
    assert drawn and all(line.startswith("0-dpo:") for line in drawn), drawn
