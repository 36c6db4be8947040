"""docs/recipes.md is what the code says: every recipe key, default and meaning."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_recipe_reference_is_up_to_date():
    env = dict(os.environ, TEMPLE_LOAD_PLUGINS="builtin")
    fresh = subprocess.run(
        [sys.executable, "-m", "temple_core.recipe_docs"], capture_output=True, text=True, env=env, check=True
    ).stdout
    committed = (ROOT / "docs" / "recipes.md").read_text()
    assert committed == fresh, "docs/recipes.md is stale: python -m temple_core.recipe_docs > docs/recipes.md"


def test_every_spec_number_is_a_documented_default():
    page = (ROOT / "docs" / "recipes.md").read_text()
    for key, default in [
        ("select.min_shot_frames", "`8`"), ("select.min_shot_seconds", "`0.2`"), ("select.monochrome_range", "`10`"),
        ("select.max_shot_seconds", "`16.0`"), ("select.min_shots", "`4`"), ("select.max_shots", "`32`"),
        ("select.group_threshold", "`0.8`"), ("select.keyframes_per_segment", "`2`"), ("transnetv2.threshold", "`0.5`"),
        ("generate.difficulties", "`[16, 8, 4, 2]`"), ("generate.sampling.temperature", "`0.7`"),
        ("generate.sampling.repetition_penalty", "`1.05`"), ("generate.sampling.max_new_tokens", "`8192`"),
        ("generate.filters.max_length_ratio", "`1.5`"), ("dpo.beta", "`0.1`"), ("dpo.lr", "`5e-06`"),
        ("dpo.lora_r", "`32`"), ("dpo.lora_alpha", "`64`"), ("dpo.batch_size", "`16`"), ("dpo.warmup_ratio", "`0.05`"),
        ("sft.lr", "`0.0001`"), ("sft.lora_alpha", "`32`"), ("sft.batch_size", "`16`"),
        # The release's (issue 13): optimizer, SFT's vision LoRA, video presets, TransNetV2's
        # segments, the captioner's clip input, MiMo-VL's clean-up.
        ("sft.warmup_ratio", "`0.05`"), ("dpo.weight_decay", "`0.1`"), ("sft.weight_decay", "`0.1`"),
        ("sft.adam_betas", "`[0.9, 0.95]`"), ("dpo.lr_scheduler", "`'cosine'`"), ("sft.vision", "`'lora'`"),
        ("dpo.video", "`'paper'`"), ("sft.video", "`'paper'`"), ("transnetv2.windows", "`'release'`"),
        ("transnetv2.segment", "`2000`"), ("transnetv2.overlap", "`400`"), ("transnetv2.final", "`400`"),
        ("transnetv2.resize", "`'opencv'`"), ("contextual.clip_input", "`'video'`"),
        ("contextual.clip_max_pixels", "`401408`"), ("mimo_vl.clean_descriptions", "`True`"),
    ]:
        row = next((line for line in page.splitlines() if line.startswith(f"| `{key}` |")), None)
        assert row is not None, f"{key} is not documented"
        assert f"| {default} | SPEC §" in row, f"{key}: expected default {default} from SPEC in {row}"
