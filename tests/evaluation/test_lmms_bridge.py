"""The lmms-eval bridge, really run: lmms-eval in its own interpreter (``TEMPLE_LMMS_PYTHON``,
an environment with lmms-eval 0.7.3, torchvision and temple: scripts/lmms_eval_bridge.sh builds
it and runs these tests) scores two tiny local tasks (``--include_path``: one generative, one
log-likelihood multiple choice, on synthetic videos) on a tiny merged checkpoint through
temple's model class (``--model temple``) on the CPU, and temple collects the scores into
``eval/<checkpoint>/<label>.json``. The command line and the recipe checks run everywhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from testkit.evaluation import evaluator, request
from testkit.training import build_backend, write_video

from temple_core.errors import RecipeError
from temple_core.plugins import get_plugin_manager
from temple_core.recipe import recipe_from_data

LMMS_PYTHON = os.environ.get("TEMPLE_LMMS_PYTHON")
needs_lmms = pytest.mark.skipif(not LMMS_PYTHON, reason="set TEMPLE_LMMS_PYTHON to an interpreter with lmms-eval (scripts/lmms_eval_bridge.sh)")

GENERATE = """task: temple_tiny_generate
dataset_path: json
dataset_kwargs: {{data_files: {{test: {docs}}}}}
test_split: test
output_type: generate_until
doc_to_visual: !function utils.doc_to_visual
doc_to_text: !function utils.doc_to_text
doc_to_target: answer
generation_kwargs: {{max_new_tokens: 4, do_sample: false}}
process_results: !function utils.process_results
metric_list:
  - {{metric: accuracy, aggregation: mean, higher_is_better: true}}
metadata: {{version: 1.0}}
"""
CHOICE = """task: temple_tiny_choice
dataset_path: json
dataset_kwargs: {{data_files: {{test: {docs}}}}}
test_split: test
output_type: multiple_choice
doc_to_visual: !function utils.doc_to_visual
doc_to_text: !function utils.doc_to_text
doc_to_choice: !function utils.doc_to_choice
doc_to_target: !function utils.doc_to_target
metric_list:
  - {{metric: acc, aggregation: mean, higher_is_better: true}}
metadata: {{version: 1.0}}
"""
UTILS = '''def doc_to_visual(doc):
    return [doc["video"]]


def doc_to_text(doc):
    options = "\\n".join(f"{chr(65 + i)}. {o}" for i, o in enumerate(doc["options"]))
    return f"{doc['question']}\\n{options}\\nAnswer with the option's letter."


def doc_to_choice(doc):
    return [chr(65 + i) for i in range(len(doc["options"]))]


def doc_to_target(doc):
    return ord(doc["answer"]) - 65


def process_results(doc, results):
    return {"accuracy": 1.0 if results[0].strip()[:1].upper() == doc["answer"] else 0.0}
'''
COLOURS = {"red": (200, 40, 40), "green": (40, 170, 60), "blue": (40, 70, 200)}


def local_tasks(folder: Path) -> Path:
    """Two tasks over five synthetic videos: 'which colour comes first?'."""
    names = list(COLOURS)
    docs = []
    for i in range(5):
        first, second = names[i % 3], names[(i + 1) % 3]
        video = write_video(folder / "videos" / f"v{i}.mp4", [COLOURS[first], COLOURS[second]])
        docs.append({"video": str(video), "question": "What colour comes first?", "options": names, "answer": "ABC"[names.index(first)]})
    (folder / "docs.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    tasks = folder / "tasks"
    tasks.mkdir()
    (tasks / "temple_tiny_generate.yaml").write_text(GENERATE.format(docs=folder / "docs.jsonl"))
    (tasks / "temple_tiny_choice.yaml").write_text(CHOICE.format(docs=folder / "docs.jsonl"))
    (tasks / "utils.py").write_text(UTILS)
    return tasks


def test_command_passes_the_frame_settings(tmp_path):
    ev = evaluator("lmms_eval", tasks=["vinoground", "tempcompass_multi_choice"], limit=3)
    req = request(None, tmp_path, label="bench")
    req.python = "/venv/bin/python"
    from temple_core.evaluation.request import Checkpoint

    req.checkpoint = Checkpoint("final", "/runs/x/train/4-sft/merged", "/runs/x/train/4-sft/merged", backend="qwen2_5_vl")
    cmd = ev.command(req, tmp_path / "out")
    assert cmd[:3] == ["/venv/bin/python", "-m", "lmms_eval"]
    args = dict(kv.split("=", 1) for kv in cmd[cmd.index("--model_args") + 1].split(","))
    assert cmd[cmd.index("--model") + 1] == "temple"
    assert args == {"backend": "qwen2_5_vl", "path": "/runs/x/train/4-sft/merged", "fps": "2.0", "max_frames": "64", "max_pixels": "250000"}
    assert cmd[cmd.index("--tasks") + 1] == "vinoground,tempcompass_multi_choice" and cmd[cmd.index("--limit") + 1] == "3"
    native = evaluator("lmms_eval", tasks=["vinoground"], model="qwen2_vl", model_args={"use_flash_attention_2": "False"})
    args = dict(kv.split("=", 1) for kv in native.model_args(req).split(","))
    assert args == {"pretrained": "/runs/x/train/4-sft/merged", "max_pixels": "250000", "max_num_frames": "64", "use_flash_attention_2": "False"}


def test_recipe_needs_eval_python(tmp_path):
    data = {"run_dir": str(tmp_path / "run"), "eval": {"backend": {"name": "qwen2_vl", "preset": "tiny-random"}, "checkpoints": ["base"],
                                                         "evaluators": [{"name": "lmms_eval", "tasks": ["vinoground"]}]}}
    with pytest.raises(RecipeError, match=r"^eval\.python: evaluator 'lmms_eval' runs in its own Python"):
        recipe_from_data(data, plugins=get_plugin_manager())
    data["eval"]["evaluators"][0]["tasks"] = []
    data["eval"]["python"] = sys.executable
    with pytest.raises(RecipeError, match=r"eval\.evaluators\[0\]\.tasks: .*at least one lmms-eval task"):
        recipe_from_data(data, plugins=get_plugin_manager())


@needs_lmms
def test_lmms_eval_scores_a_merged_checkpoint_through_temple(tmp_path):
    tasks = local_tasks(tmp_path / "bench")
    start = build_backend("qwen2_vl", preset="tiny-random")
    merged = tmp_path / "ckpt" / "merged"
    merged.mkdir(parents=True)
    start.merge_and_save(start.load_model(), merged)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "run_dir": str(tmp_path / "run"),
        "eval": {"backend": {"name": "qwen2_vl", "preset": "tiny-random"}, "checkpoints": [str(merged)], "python": LMMS_PYTHON,
                 "frames": {"fps": 1.0, "max_frames": 4, "max_pixels": 3136},
                 "evaluators": [{"name": "lmms_eval", "label": "tiny", "tasks": ["temple_tiny_generate", "temple_tiny_choice"],
                                 "include_path": str(tasks), "batch_size": 2,
                                 "env": {"HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}}]},
    }))
    result = subprocess.run([sys.executable, "-m", "temple_core", "run", str(recipe), "--no-progress"], capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    folder = tmp_path / "run" / "eval" / "ckpt-merged"
    data = json.loads((folder / "tiny.json").read_text())
    assert data["metric"] == "lmms-eval temple_tiny_generate,accuracy"
    assert 0.0 <= data["score"] <= 1.0 and data["n"] == 5
    assert data["metrics"]["tasks"]["temple_tiny_choice"]["acc"]["value"] in {i / 5 for i in range(6)}
    assert data["settings"]["frames"] == {"fps": 1.0, "max_frames": 4, "max_pixels": 3136, "min_pixels": None}
    assert "--model temple" in data["metrics"]["command"] and f"path={merged}" in data["metrics"]["command"]
    records = [json.loads(line) for line in (folder / "tiny.jsonl").read_text().splitlines()]
    assert sorted(r["item_id"] for r in records) == sorted(f"{t}:{i}" for t in ("temple_tiny_generate", "temple_tiny_choice") for i in range(5))
    log = (folder / "tiny.lmms" / "log.txt").read_text()
    assert "temple (backend=qwen2_vl" in log  # lmms-eval ran temple's model class
    assert "tiny" in result.stdout
