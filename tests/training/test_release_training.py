"""The release's training settings (SPEC §5), checked on the real TRL trainers and the real
tiny models against the released rules written out here:

* optimizer and schedule: AdamW, weight decay 0.1 (not on biases / norms), betas (0.9, 0.95),
  cosine schedule after a linear warmup over ``ceil(0.05 x steps)`` steps, in both trainers;
* SFT: LoRA on the language model's and the vision tower's linear layers, the projector not
  trained; the merge folds every LoRA layer, the vision tower's included;
* training video presets ``paper`` and ``release``, explicit keys winning, the release's
  per-video pixel budget split over the frames as qwen-vl-utils does.
"""

import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from temple_core.records import Pair
from temple_core.recipe import recipe_from_data
from temple_core.training.data import load_sft
from temple_core.training.options import lora_config, video_options
from temple_core.training.video_dpo import build_dpo_trainer
from temple_core.training.video_sft import build_sft_trainer, train_sft
from temple_plugins.trainers.dpo import DPO
from temple_plugins.trainers.sft import SFT
from testkit.references import smart_resize
from testkit.backends import write_video as write_sized_video
from testkit.training import build_backend, easy_pairs, stage_context, state_dict_of, write_videos

ROOT = Path(__file__).resolve().parents[2]
SFT_FILE = ROOT / "examples" / "sft" / "sample.jsonl"
PAIRS = str(ROOT / "examples" / "pairs" / "sample.jsonl")
SMALL = dict(batch_size=2, per_device_batch_size=2, max_length=512, fps=1.0, gradient_checkpointing=False, save_steps=1000)


# -- the released rules, written out -------------------------------------------------------

def release_lr(step: int, total: int, base: float, warmup_ratio: float = 0.05) -> float:
    """Linear warmup over ceil(ratio x total) steps, then half a cosine down to 0 (ms-swift's
    ``cosine`` with ``warmup_ratio``, i.e. transformers' ``get_cosine_schedule_with_warmup``)."""
    warmup = math.ceil(total * warmup_ratio)
    if step < warmup:
        return base * step / warmup
    progress = (step - warmup) / (total - warmup)
    return base * 0.5 * (1.0 + math.cos(math.pi * progress))


def decays(name: str) -> bool:
    """Weight decay applies to every trained weight but biases and normalisation weights."""
    return "bias" not in name and "norm" not in name.lower()


#: Where each built-in family keeps its vision tower and its projector (the part SFT's LoRA leaves alone).
TOWERS = {
    "qwen2_vl": ("model.visual.", "model.visual.merger."),
    "qwen2_5_vl": ("model.visual.", "model.visual.merger."),
    "mimo_vl": ("model.visual.", "model.visual.merger."),
    "internvl2_5": ("model.vision_tower.", "model.multi_modal_projector."),
    # Qwen3-VL projects twice: the final merger and the deepstack mergers feeding early LM layers.
    "qwen3_vl": ("model.visual.", ("model.visual.merger.", "model.visual.deepstack_merger_list.")),
}


# -- optimizer and schedule ------------------------------------------------------------------

@pytest.fixture(scope="module")
def data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("release-training")
    videos = write_videos(tmp / "videos", 2)
    return tmp, [Pair.from_dict(p) for p in easy_pairs(videos)], load_sft(SFT_FILE)


@pytest.mark.parametrize("trainer", ["dpo", "sft"])
def test_optimizer_and_schedule_are_the_releases(data, trainer):
    tmp, pairs, samples = data
    backend = build_backend(preset="tiny-random")
    if trainer == "dpo":
        options = DPO.Options(**SMALL)
        built, _ = build_dpo_trainer(options, stage_context(backend, pairs, tmp / "0-dpo"))
    else:
        options = SFT.Options(**SMALL)
        built, _ = build_sft_trainer(options, stage_context(backend, samples, tmp / "0-sft", kind="sft", name="0-sft"))
    total = 40
    built.create_optimizer_and_scheduler(num_training_steps=total)
    optimizer = built.optimizer
    assert type(optimizer) is torch.optim.AdamW
    trained = {p: n for n, p in built.model.named_parameters() if p.requires_grad}
    seen = 0
    for group in optimizer.param_groups:
        assert group["betas"] == (0.9, 0.95) and group["eps"] == 1e-8
        for p in group["params"]:
            seen += 1
            assert group["weight_decay"] == (0.1 if decays(trained[p]) else 0.0), trained[p]
    assert seen == len(trained) and any(decays(n) for n in trained.values())
    base = options.lr
    for step in range(total):
        assert built.lr_scheduler.get_last_lr()[0] == pytest.approx(release_lr(step, total, base), rel=1e-9, abs=1e-15), step
        optimizer.step()
        built.lr_scheduler.step()


def test_defaults_and_recipe_overrides(tmp_path):
    def stage(**entry):
        r = recipe_from_data({"run_dir": str(tmp_path), "train": {"backend": {"name": "qwen2_vl"}, "stages": [entry]}})
        return r.train.stages[0].trainer.options

    for trainer, data in (("dpo", PAIRS), ("sft", str(SFT_FILE))):
        o = stage(trainer=trainer, data=data)
        assert (o.optimizer, o.weight_decay, o.adam_betas, o.lr_scheduler, o.warmup_ratio) == ("adamw_torch", 0.1, [0.9, 0.95], "cosine", 0.05)
    o = stage(trainer="sft", data=str(SFT_FILE), weight_decay=0.0, adam_betas=[0.9, 0.999], optimizer="adafactor")
    assert (o.weight_decay, o.adam_betas, o.optimizer) == (0.0, [0.9, 0.999], "adafactor")
    from temple_core.errors import RecipeError

    with pytest.raises(RecipeError, match=r"train\.stages\[0\]\.adam_betas: must be two numbers"):
        stage(trainer="dpo", data=PAIRS, adam_betas=[0.9])
    with pytest.raises(RecipeError, match=r"train\.stages\[0\]\.args: 'weight_decay' is set by the stage's option 'weight_decay'"):
        stage(trainer="dpo", data=PAIRS, args={"weight_decay": 0.0})


# -- SFT: LoRA on the vision tower, not on the projector ---------------------------------------

@pytest.mark.parametrize("family", list(TOWERS))
def test_sft_lora_covers_the_tower_and_the_language_model_not_the_projector(family):
    backend = build_backend(family, preset="tiny-random")
    model = backend.load_model()
    tower, projector = TOWERS[family]
    linears = {n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    want_vision = {n for n in linears if n.startswith(tower) and not n.startswith(projector)}
    want_lm = {n for n in linears if n.startswith("model.language_model.")}
    assert want_vision and want_lm and any(n.startswith(projector) for n in linears)
    config = lora_config(model, backend, 32, 32, 0.05, SFT.Options().vision)
    assert set(config.target_modules) == want_vision | want_lm
    assert config.modules_to_save is None and (config.r, config.lora_alpha) == (32, 32)
    # DPO's: the language model only.
    assert set(lora_config(model, backend, 32, 64, 0.05, "frozen").target_modules) == want_lm


def test_sft_merge_folds_the_vision_lora_and_leaves_the_projector(data):
    tmp, _, samples = data
    out = tmp / "merge" / "0-sft"
    options = SFT.Options(**{**SMALL, "max_steps": 2, "warmup_ratio": 0.0, "lr": 1e-2, "lora_r": 8, "lora_alpha": 16})
    backend = build_backend(preset="tiny-random")
    start = {k: v.detach().clone() for k, v in build_backend(preset="tiny-random").load_model().state_dict().items()}
    train_sft(options, stage_context(backend, samples, out, kind="sft", name="0-sft"))
    merged = state_dict_of(out / "merged")
    adapter = load_file(str(out / "adapter" / "adapter_model.safetensors"))
    scale = 16 / 8
    checked = []
    for layer in ("model.visual.blocks.0.attn.qkv", "model.visual.blocks.1.mlp.fc2", "model.language_model.layers.0.self_attn.q_proj"):
        a = adapter[f"base_model.model.{layer}.lora_A.weight"]
        b = adapter[f"base_model.model.{layer}.lora_B.weight"]
        assert b.abs().max() > 0, f"{layer}: B still zero, nothing trained"
        expected = start[f"{layer}.weight"] + (b @ a) * scale
        torch.testing.assert_close(merged[f"{layer}.weight"], expected, rtol=1e-5, atol=1e-6)
        assert not torch.equal(merged[f"{layer}.weight"], start[f"{layer}.weight"])
        checked.append(layer)
    # The projector, and everything of the tower that LoRA does not touch (norms, biases, the
    # patch embedding), is exactly as it was.
    for name, tensor in start.items():
        if name.startswith("model.visual.merger.") or (name.startswith("model.visual.") and not name.endswith(".weight")):
            assert torch.equal(merged[name], tensor), name
        if ".norm" in name or "patch_embed" in name:
            assert torch.equal(merged[name], tensor), name
    assert len(checked) == 3


# -- training video presets ------------------------------------------------------------------

def test_presets_fill_what_the_stage_leaves_unset(tmp_path):
    def options(**entry):
        r = recipe_from_data({"run_dir": str(tmp_path), "train": {"backend": {"name": "qwen2_vl"}, "stages": [{"trainer": "dpo", "data": PAIRS, **entry}]}})
        return r.train.stages[0].trainer.options

    paper = options()
    assert (paper.video, paper.fps, paper.max_frames, paper.max_pixels, paper.max_length) == ("paper", 2.0, 100, 90000, 8192)
    assert paper.total_pixels is None and paper.min_pixels is None
    release = options(video="release")
    assert (release.fps, release.max_frames, release.total_pixels, release.min_pixels, release.max_length) == (1.0, 600, 9_000_000, 3136, 16384)
    assert release.max_pixels == 768 * 28 * 28  # qwen-vl-utils' VIDEO_MAX_PIXELS, left at its default by the launchers
    mixed = options(video="release", fps=2.0, max_length=4096)
    assert (mixed.fps, mixed.max_length, mixed.max_frames, mixed.total_pixels) == (2.0, 4096, 600, 9_000_000)
    assert video_options(mixed) == {"fps": 2.0, "max_frames": 600, "max_pixels": 602112, "min_pixels": 3136, "total_pixels": 9_000_000}
    from temple_core.errors import RecipeError

    with pytest.raises(RecipeError, match=r"train\.stages\[0\]\.video: must be in"):
        options(video="paperish")


@pytest.mark.parametrize("preset,extra", [("paper", {}), ("release", {}), ("release", {"total_pixels": 120_000})])
def test_preset_video_input_reaches_the_model(tmp_path, preset, extra):
    """A 12 s, 320x240 video encoded for training: frame count and per-frame size follow the
    preset (and, with a total budget, qwen-vl-utils' split of it over the frames)."""
    video = write_sized_video(tmp_path / "v.mp4", 320, 240, frames=48, fps=4)
    options = DPO.Options(video=preset, **extra)
    backend = build_backend(preset="tiny-random")
    encoded = backend.encode_preference(video=str(video), prompt="Describe.", chosen="a b", rejected="b a",
                                        max_length=options.max_length, **video_options(options))
    frames = min(round(12 * options.fps), options.max_frames)  # 12 s sampled at the preset's fps
    cap = options.max_pixels
    if options.total_pixels is not None:
        cap = max(min(cap, options.total_pixels / frames * 2), int(options.min_pixels * 1.05))
    low = options.min_pixels or backend.options.min_pixels
    rh, rw = smart_resize(240, 320, 28, low, cap)
    (visual,) = encoded["visuals"]
    assert visual["grid"] == [math.ceil(frames / 2), rh // 14, rw // 14]
    if extra:
        assert rh * rw < 320 * 240 / 3  # the budget, not the per-frame cap, decided the size


@pytest.mark.parametrize("family", ["qwen2_5_vl", "mimo_vl"])
def test_training_second_per_grid_ts_is_ms_swifts(tmp_path, family):
    """ms-swift 3.7's Qwen2.5-VL template sets a training video's ``second_per_grid_ts`` to
    ``temporal_patch_size / FPS`` (qwen-vl-utils' FPS, the launchers' setting), whatever was
    sampled: a 60 s video capped at 10 frames at 2 fps gets 2 / 2 = 1.0, not 2 / (10 / 60 s)."""
    video = write_sized_video(tmp_path / "v.mp4", 64, 48, frames=240, fps=4)
    kwargs = dict(video=str(video), prompt="Describe.", chosen="a b", rejected="b a", max_length=4096, fps=2.0, max_frames=10)
    swift = build_backend(family, preset="tiny-random").encode_preference(**kwargs)
    assert [v["seconds_per_grid"] for v in swift["visuals"]] == [2 / 2.0]
    sampled = build_backend(family, preset="tiny-random", train_seconds_per_grid="sampled").encode_preference(**kwargs)
    (visual,) = sampled["visuals"]
    assert visual["grid"][0] == 5 and visual["seconds_per_grid"] == pytest.approx(2 / (10 / 60), rel=0.05)  # the capped rate
    # Chat and evaluation keep the sampled rate.
    chat = build_backend(family, preset="tiny-random").visual_inputs({"type": "video", "path": str(video)}, 2.0, 10)
    assert chat["seconds_per_grid"] == visual["seconds_per_grid"]
    # In the model's batch.
    backend = build_backend(family, preset="tiny-random")
    assert backend.collate_preference([swift])["second_per_grid_ts"].tolist() == [1.0]
