"""A temple recipe on the third-party backbone, through temple's own CLI: select the built-in
synthetic videos, generate pairs with LLaVA-OneVision (the paper's contextual captioner: clip
keyframes as images, summaries), train a DPO stage on them and an SFT stage after it."""

import json
import subprocess
import sys

import torch
import yaml

from llava_videos import write_video
from temple_llava_onevision import LlavaOneVisionBackend


def test_generate_dpo_and_sft_run_on_llava_onevision(tmp_path):
    videos = [write_video(tmp_path / "sft" / f"{n}.mp4", c) for n, c in (("a", [(200, 40, 40), (40, 70, 200)]), ("b", [(40, 170, 60), (220, 200, 40)]))]
    sft = tmp_path / "sft.jsonl"
    sft.write_text("".join(json.dumps({"id": f"s{i}", "videos": [str(v)], "messages": [
        {"role": "user", "content": "<video>\nDescribe the video."}, {"role": "assistant", "content": text}]}) + "\n"
        for i, (v, text) in enumerate(zip(videos, ["red, then blue.", "green, then yellow."]))))
    backend = {"name": "llava_onevision", "preset": "tiny-random", "num_frames": 4}
    small = {"lr": 1.0e-3, "batch_size": 2, "max_steps": 2, "max_length": 1024, "gradient_checkpointing": False}
    recipe = {
        "run_dir": str(tmp_path / "run"),
        "seed": 0,
        "videos": {"samples": ["synthetic"]},
        "select": {"shot_detector": {"name": "pyscenedetect"}, "encoder": {"name": "colorhist"}},
        "generate": {
            "backend": backend,
            "captioner": {"name": "contextual", "clip_max_new_tokens": 6},
            "sampling": {"max_new_tokens": 6},
            "difficulties": [2],
            # Random-weight texts: keep every pair (the filters are tested elsewhere).
            "filters": {"drop_contained": False, "longer_chosen": [], "length_ratio": []},
        },
        "train": {"backend": backend, "stages": [{"trainer": "dpo", "difficulty": 2, **small},
                                                  {"trainer": "sft", "data": str(sft), **small}]},
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    result = subprocess.run([sys.executable, "-m", "temple_core", "run", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]

    run = tmp_path / "run"
    pairs = [json.loads(line) for line in (run / "generate" / "pairs.jsonl").read_text().splitlines()]
    assert pairs and {p["generator"] for p in pairs} == {"llava_onevision:tiny-random"}
    assert all(p["chosen"] != p["rejected"] for p in pairs)
    captions = [json.loads(line) for line in (run / "generate" / "captions.jsonl").read_text().splitlines()]
    assert captions and all(c.get("clip_captions") for c in captions)

    start = LlavaOneVisionBackend(LlavaOneVisionBackend.Options(preset="tiny-random")).load_model().state_dict()
    dpo, sft_dir = run / "train" / "0-dpo", run / "train" / "1-sft"
    for stage in (dpo, sft_dir):
        assert len((stage / "metrics.jsonl").read_text().splitlines()) == 2  # two optimizer steps logged
    merged = {}
    for stage in (dpo, sft_dir):
        model = LlavaOneVisionBackend(LlavaOneVisionBackend.Options(path=str(stage / "merged"))).load_model()
        merged[stage.name] = model.state_dict()
    vision = ("model.vision_tower.", "model.multi_modal_projector.")
    # DPO: the language model moved, the tower did not (frozen); SFT then trains the tower too.
    assert any(not torch.equal(merged["0-dpo"][k], start[k]) for k in start if k.startswith("model.language_model."))
    assert all(torch.equal(merged["0-dpo"][k], start[k]) for k in start if k.startswith(vision))
    assert any(not torch.equal(merged["1-sft"][k], merged["0-dpo"][k]) for k in start if k.startswith("model.vision_tower."))
