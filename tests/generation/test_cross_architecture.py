"""Pairs written by one backend train another: a recipe whose train.backend differs reads them as they are."""

from __future__ import annotations

import pytest
from testkit.generation import selected_run

from temple_core.plugins import PluginManager
from temple_core.recipe import recipe_from_data
from temple_core.stages.runner import run_stages
from temple_core.store import RunLayout
from temple_core.training.data import load_pairs

qwen_vl = pytest.importorskip("temple_plugins.backends.qwen_vl")


def _plugins():
    plugins = PluginManager()
    if "qwen2_vl" not in plugins.names("backends"):  # until the backends are in registry.yaml
        plugins.add_module(qwen_vl, "tests")
    return plugins


def test_qwen2_vl_pairs_feed_a_qwen2_5_vl_recipe(tmp_path):
    plugins = _plugins()
    run_dir, _ = selected_run(tmp_path, {"a": ["red_still", "dark_blue", "green_busy", "yellow_some"]})
    recipe = recipe_from_data(
        {
            "run_dir": str(run_dir),
            "generate": {
                "backend": {"name": "qwen2_vl", "preset": "tiny-random"},
                "captioner": {"name": "contextual", "clip_max_new_tokens": 6},
                "sampling": {"max_new_tokens": 6}, "difficulties": [2],
                # Random-weight texts: keep every pair, this test is about who can read them.
                "filters": {"drop_contained": False, "longer_chosen": [], "length_ratio": []},
            },
            "train": {
                "backend": {"name": "qwen2_5_vl", "preset": "tiny-random"},
                "stages": [{"trainer": "dpo", "difficulty": 2}],
            },
        },
        plugins=plugins,
    )
    assert recipe.generate.backend.name != recipe.train.backend.name
    run_stages(recipe, plugins, stages=["generate"], progress=False, log=lambda *_: None)
    pairs = load_pairs(RunLayout(run_dir).pairs, difficulty=2)
    assert len(pairs) == 3 and {p.generator for p in pairs} == {"qwen2_vl:tiny-random"}
    # The other architecture encodes a pair straight from the file: the whole video, the prompt, both texts.
    trainer_backend = recipe.train.backend.build(plugins)
    encoded = trainer_backend.encode_preference(
        video=pairs[0].video_path, prompt=pairs[0].prompt, chosen=pairs[0].chosen, rejected=pairs[0].rejected,
        max_length=4096, fps=2.0, max_frames=8,
    )
    # What the trainer's model learns on each side is exactly that answer of the file, ended as
    # ms-swift ends the last turn (decoded with the training backend's own tokenizer).
    tok = getattr(trainer_backend.processor, "tokenizer", trainer_backend.processor)
    for side, text in (("chosen", pairs[0].chosen), ("rejected", pairs[0].rejected)):
        learned = [i for i, label in zip(encoded[f"{side}_input_ids"], encoded[f"{side}_labels"]) if label != -100]
        assert tok.decode(learned) == text + "<|im_end|>", side
