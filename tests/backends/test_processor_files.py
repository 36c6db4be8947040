"""Merged folders are checkpoints other tools load: every processor file of the starting
checkpoint comes along, byte for byte (the tiny presets carry them too); and, where an
interpreter with torchvision is given (``TEMPLE_TORCHVISION_PYTHON``, see
scripts/lmms_eval_bridge.sh), transformers' own AutoProcessor loads the merged folder and
gives temple's input ids and video tensors."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from testkit.training import build_backend

FAMILIES = ["qwen2_vl", "qwen2_5_vl", "mimo_vl", "internvl2_5", "qwen3_vl"]
ROOT = Path(__file__).resolve().parents[2]
TV_PYTHON = os.environ.get("TEMPLE_TORCHVISION_PYTHON")


def merged_twice(family, tmp_path) -> tuple[Path, Path]:
    """preset -> stage 0 (a LoRA model merged) -> stage 1 (from stage 0's folder, merged again)."""
    from peft import LoraConfig, get_peft_model

    start = build_backend(family, preset="tiny-random")
    preset = Path(start.model_dir())
    folder = preset
    for stage in range(2):
        backend = build_backend(family, path=str(folder)) if stage else start
        model = get_peft_model(backend.load_model(), LoraConfig(r=2, target_modules=backend.lora_target_modules(backend.model)[:2]))
        out = tmp_path / f"{stage}-dpo" / "merged"
        out.mkdir(parents=True)
        backend.merge_and_save(model, out)
        folder = out
    return preset, folder


@pytest.mark.parametrize("family", FAMILIES)
def test_merged_folders_carry_the_starting_processor_files(family, tmp_path):
    from temple_core.models.hf import PROCESSOR_FILES

    preset, merged = merged_twice(family, tmp_path)
    carried = [n for n in PROCESSOR_FILES if (preset / n).is_file()]
    assert {"preprocessor_config.json", "video_preprocessor_config.json", "tokenizer.json", "tokenizer_config.json",
            "chat_template.jinja"} <= set(carried)
    for name in carried:
        assert (merged / name).read_bytes() == (preset / name).read_bytes(), name
    config = json.loads((preset / "video_preprocessor_config.json").read_text())
    assert config["processor_class"] and config["video_processor_type"]
    build_backend(family, path=str(merged)).load_model()  # and the backend loads it back


@pytest.mark.skipif(not TV_PYTHON, reason="set TEMPLE_TORCHVISION_PYTHON to an interpreter with torchvision (scripts/lmms_eval_bridge.sh builds one)")
@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "internvl2_5"])
def test_autoprocessor_loads_a_merged_folder(family, tmp_path):
    _, merged = merged_twice(family, tmp_path)
    result = subprocess.run([TV_PYTHON, str(ROOT / "tests" / "testkit" / "autoprocessor_check.py"), family, str(merged)],
                            capture_output=True, text=True, timeout=600, env={**os.environ, "TEMPLE_CACHE": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["input_ids"] and report["pixels"] and report["grid"] in (True, None), report
