"""Training recipes: trainer options (pass-through args checked against TRL), example recipes."""

import re
from pathlib import Path

import pytest
import yaml

from temple_core.errors import RecipeError, TempleError
from temple_core.recipe import load_recipe, recipe_from_data
from temple_core.training.options import accumulation_steps

ROOT = Path(__file__).resolve().parents[2]
SFT = str(ROOT / "examples" / "sft" / "sample.jsonl")
PAIRS = str(ROOT / "examples" / "pairs" / "sample.jsonl")


def recipe(tmp_path, *stages):
    return {"run_dir": str(tmp_path / "run"), "train": {"backend": {"name": "qwen2_vl"}, "stages": list(stages)}}


def test_spec_defaults(tmp_path):
    r = recipe_from_data(recipe(tmp_path, {"trainer": "dpo", "data": PAIRS}, {"trainer": "sft", "data": SFT}))
    dpo, sft = (s.trainer.options for s in r.train.stages)
    assert (dpo.beta, dpo.loss_type, dpo.lora_r, dpo.lora_alpha, dpo.lr, dpo.batch_size) == (0.1, "sigmoid", 32, 64, 5e-6, 16)
    assert dpo.rpo_alpha == 1.0  # SPEC §5: the release's DPO + NLL on the chosen answer
    assert (dpo.warmup_ratio, dpo.epochs, dpo.freeze_vision, dpo.max_length) == (0.05, 1.0, True, 8192)
    assert (sft.lora_r, sft.lora_alpha, sft.lr, sft.vision, sft.warmup_ratio) == (32, 32, 1e-4, "lora", 0.05)
    assert [s.dir_name for s in r.train.stages] == ["0-dpo", "1-sft"]


def test_args_pass_through_is_checked_against_dpoconfig(tmp_path):
    ok = recipe_from_data(recipe(tmp_path, {"trainer": "dpo", "data": PAIRS, "args": {"label_smoothing": 0.1, "max_grad_norm": 0.5}}))
    assert ok.train.stages[0].trainer.options.args == {"label_smoothing": 0.1, "max_grad_norm": 0.5}
    with pytest.raises(RecipeError, match=r"train\.stages\[0\]\.args: 'label_smothing' is not a DPOConfig option \(did you mean 'label_smoothing'\?\)"):
        recipe_from_data(recipe(tmp_path, {"trainer": "dpo", "data": PAIRS, "args": {"label_smothing": 0.1}}))
    with pytest.raises(RecipeError, match=r"train\.stages\[0\]\.args: 'learning_rate' is set by the stage's option 'lr'"):
        recipe_from_data(recipe(tmp_path, {"trainer": "sft", "data": SFT, "args": {"learning_rate": 0.1}}))
    with pytest.raises(RecipeError, match=r"'packing' is not a DPOConfig option"):
        recipe_from_data(recipe(tmp_path, {"trainer": "dpo", "data": PAIRS, "args": {"packing": True}}))
    with pytest.raises(RecipeError, match=r"train\.stages\[0\]\.args: 'loss_weights' is set by the stage's option 'rpo_alpha'"):
        recipe_from_data(recipe(tmp_path, {"trainer": "dpo", "data": PAIRS, "args": {"loss_weights": [1.0]}}))
    with pytest.raises(RecipeError, match=r"train\.stages\[0\]\.loss_type: 'sft' is the chosen answer's NLL: set rpo_alpha"):
        recipe_from_data(recipe(tmp_path, {"trainer": "dpo", "data": PAIRS, "loss_type": "sigmoid,sft"}))


def test_unknown_option_names_the_stage(tmp_path):
    with pytest.raises(RecipeError, match=r"train\.stages\[1\]\.betta: unknown key \(did you mean 'beta'\?\)"):
        recipe_from_data(recipe(tmp_path, {"trainer": "sft", "data": SFT}, {"trainer": "dpo", "data": PAIRS, "betta": 0.2}))
    with pytest.raises(RecipeError, match=r"train\.stages\[0\]\.vision: must be in"):
        recipe_from_data(recipe(tmp_path, {"trainer": "sft", "data": SFT, "vision": "half"}))


def test_stage_data_must_suit_its_trainer(tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"pair_id": "a", "video_path": "v.mp4", "prompt": "p", "chosen": "c", "rejected": "r"}\n')
    with pytest.raises(RecipeError, match=r"train\.stages\[0\]\.data: .*sample\.jsonl holds SFT samples .*, but a dpo stage trains on preference pairs"):
        recipe_from_data(recipe(tmp_path, {"trainer": "dpo", "data": SFT}))
    with pytest.raises(RecipeError, match=r"train\.stages\[1\]\.data: .*pairs\.jsonl holds preference pairs, but a sft stage trains on SFT samples"):
        recipe_from_data(recipe(tmp_path, {"trainer": "dpo", "data": str(pairs)}, {"trainer": "sft", "data": str(pairs)}))
    with pytest.raises(RecipeError, match=r"train\.stages\[0\]\.difficulty: a sft stage trains on an SFT file"):
        recipe_from_data(recipe(tmp_path, {"trainer": "sft", "difficulty": 16}))
    with pytest.raises(RecipeError, match=r"train\.stages\[0\]\.perturbations: picks preference pairs; .*sample\.jsonl is an SFT file"):
        recipe_from_data(recipe(tmp_path, {"trainer": "sft", "data": SFT, "perturbations": ["drop"]}))
    # A pairs file with a difficulty: that file's pairs at r (transfer from another run).
    r = recipe_from_data(recipe(tmp_path, {"trainer": "dpo", "data": PAIRS, "difficulty": 2}))
    assert (r.train.stages[0].data, r.train.stages[0].difficulty) == (PAIRS, 2)


def test_global_batch_must_split_over_processes():
    assert accumulation_steps(16, 1, 8, "s") == 2
    assert accumulation_steps(16, 2, 1, "s") == 8
    with pytest.raises(TempleError, match=r"s\.batch_size: the global batch 16 is not a multiple of per_device_batch_size 3 x 2"):
        accumulation_steps(16, 3, 2, "s")


ORDERINGS = ["sft_only.yaml", "temple_dpo4_sft.yaml", "sft_then_dpo4.yaml", "temple_sft_other_dpo.yaml"]


@pytest.mark.parametrize("name", ORDERINGS)
def test_example_recipes_validate_once_paths_are_filled_in(tmp_path, name):
    text = (ROOT / "examples" / "recipes" / name).read_text()
    with pytest.raises(TempleError, match="/path/to/"):
        load_recipe(ROOT / "examples" / "recipes" / name)  # the placeholders are caught, by name
    # Fill the placeholders in as a user would: real files and folders.
    (tmp_path / "videos").mkdir()
    (tmp_path / "model").mkdir()
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("")
    text = re.sub(r"/path/to/[^\s,\]}]*sft[^\s,\]}]*\.jsonl", SFT, text)
    text = re.sub(r"/path/to/[^\s,\]}]*\.jsonl", str(pairs), text)
    text = re.sub(r"/path/to/videos/", str(tmp_path / "videos"), text)
    text = re.sub(r"/path/to/[^\s,\]}]*", str(tmp_path / "model"), text)
    data = yaml.safe_load(text)
    r = recipe_from_data(data, run_dir=str(tmp_path / "run"), check_files=False)
    trainers = [s.trainer.name for s in r.train.stages]
    assert trainers.count("sft") == 1 and set(trainers) <= {"dpo", "sft"}
