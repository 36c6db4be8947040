"""Every recipe in examples/recipes validates once its placeholders point at real (tiny) files.

The placeholders (/path/to/...) are replaced as a user would: checkpoint folders by tiny
random-weight models shaped like the release the placeholder names (e.g. InternVL3_5: a Qwen3
language model; llava-onevision: the third-party package's preset), saved with save_pretrained; the video
folders by real videos (held-out ones apart); the SFT, pairs and multiple-choice files by the
shipped examples; the lmms-eval interpreter by this one. Then `temple
validate` runs on the file, and every backend the recipe names loads its checkpoint.
"""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from temple_core.plugins import get_plugin_manager
from temple_core.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[2]
RECIPES = sorted((ROOT / "examples" / "recipes").glob("*.yaml"))
#: (marker in the placeholder's name, backend, preset of a tiny checkpoint shaped like that release).
FAMILY_OF_CHECKPOINT = [
    ("MiMo-VL", "mimo_vl", "tiny-random"),
    ("Qwen3-VL", "qwen3_vl", "tiny-random"),
    ("Qwen2.5-VL", "qwen2_5_vl", "tiny-random"),
    ("Qwen2-VL", "qwen2_vl", "tiny-random"),
    ("InternVL3_5", "internvl", "tiny-random-internvl3_5"),  # Qwen3 language model
    ("InternVL2_5-8B", "internvl2_5", "tiny-random-llama"),  # InternLM2, converted to Llama in the -hf format
    ("InternVL", "internvl", "tiny-random"),  # Qwen2 language model (InternVL3, InternVL2.5-1B/4B/38B/78B)
    ("llava-onevision", "llava_onevision", "tiny-random"),  # the third-party package examples/plugins/temple-llava-onevision
]


@pytest.fixture(scope="module")
def tiny_checkpoints(tmp_path_factory):
    """family -> a folder holding that family's tiny model, saved and loadable by `path`."""
    root = tmp_path_factory.mktemp("ckpts")
    pm = get_plugin_manager()
    folders = {}
    for marker, family, preset in FAMILY_OF_CHECKPOINT:
        backend = pm.build("backends", family, pm.get("backends", family).options(preset=preset))
        folders[marker] = root / marker
        shutil.copytree(backend.model_dir(), folders[marker])
    from transformers import SiglipVisionConfig, SiglipVisionModel

    from temple_plugins.similarity_encoders.siglip import TINY

    SiglipVisionModel(SiglipVisionConfig(**TINY)).save_pretrained(root / "siglip")
    folders["siglip"] = root / "siglip"
    return folders


def fill_placeholders(text: str, tmp_path: Path, checkpoints: dict) -> str:
    videos = tmp_path / "videos"
    videos.mkdir(exist_ok=True)
    for sample in (ROOT / "examples" / "sft" / "videos").glob("*.mp4"):
        shutil.copy(sample, videos)

    def checkpoint(match):
        name = match.group(1)
        if "siglip" in name:
            return str(checkpoints["siglip"])
        for marker, _, _ in FAMILY_OF_CHECKPOINT:
            if marker.lower() in name.lower():
                return str(checkpoints[marker])
        raise AssertionError(f"unknown placeholder checkpoint: {name}")

    # Comments may mention the placeholders too; only the YAML matters.
    text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    heldout = tmp_path / "heldout"
    heldout.mkdir(exist_ok=True)
    for sample in (ROOT / "examples" / "eval" / "videos").glob("*.mp4"):
        shutil.copy(sample, heldout)
    text = re.sub(r"/path/to/videos/?", str(videos), text)
    text = re.sub(r"/path/to/heldout-videos/?", str(heldout), text)
    text = text.replace("/path/to/lmms-venv/bin/python", sys.executable)
    text = re.sub(r"/path/to/[^\s,\]}]*-mc\.jsonl", str(ROOT / "examples" / "eval" / "sample_mc.jsonl"), text)
    text = re.sub(r"/path/to/[^\s,\]}]*sft[^\s,\]}]*\.jsonl", str(ROOT / "examples" / "sft" / "sample.jsonl"), text)
    text = re.sub(r"/path/to/[^\s,\]}]*\.jsonl", str(ROOT / "examples" / "pairs" / "sample.jsonl"), text)
    text = re.sub(r"(?:\.\./)*runs/[^\s,\]}]*/generate/pairs\.jsonl", str(ROOT / "examples" / "pairs" / "sample.jsonl"), text)
    text = re.sub(r"/path/to/([^\s,\]}]*)", checkpoint, text)
    assert "/path/to/" not in text
    return text


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_validates_with_real_files(recipe, tmp_path, tiny_checkpoints):
    # The filled copy sits where the original does relative to the shipped example data
    # (examples/recipes/ next to examples/sft/): its relative paths mean the same files.
    filled = tmp_path / "examples" / "recipes" / recipe.name
    filled.parent.mkdir(parents=True)
    for shipped in ("sft", "pairs", "eval"):
        (tmp_path / "examples" / shipped).symlink_to(ROOT / "examples" / shipped)
    filled.write_text(fill_placeholders(recipe.read_text(), tmp_path, tiny_checkpoints))
    result = subprocess.run(
        [sys.executable, "-m", "temple_core", "validate", str(filled), "--run-dir", str(tmp_path / "run")],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    pm = get_plugin_manager()
    parsed = load_recipe(filled, plugins=pm, run_dir=str(tmp_path / "run"))
    for section in ("generate", "train"):
        config = getattr(parsed, section)
        if config is not None and config.backend is not None:
            backend = config.backend.build(pm)
            backend.load_model()  # the family's loader accepts the checkpoint it was pointed at
            assert backend.describe().startswith(config.backend.name)


def test_placeholders_are_caught_by_name():
    recipe = ROOT / "examples" / "recipes" / "temple_dpo4_sft.yaml"
    result = subprocess.run([sys.executable, "-m", "temple_core", "validate", str(recipe)], capture_output=True, text=True)
    assert result.returncode == 2 and "/path/to/" in result.stderr


def test_transfer_recipes_train_another_family_than_generated_the_pairs():
    targets = {}
    for recipe in RECIPES:
        if recipe.stem.startswith("transfer_"):
            data = yaml.safe_load(recipe.read_text())
            targets[recipe.stem] = data["train"]["backend"]["name"]
            assert {s["difficulty"] for s in data["train"]["stages"] if s["trainer"] == "dpo"} == {16, 8, 4, 2}
    assert sorted(targets.values()) == ["internvl", "internvl2_5", "llava_onevision", "qwen2_5_vl", "qwen2_vl", "qwen3_vl"]
