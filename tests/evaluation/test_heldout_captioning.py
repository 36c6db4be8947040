"""temporal_order on held-out videos with no ground truth: this run's select section finds
their clips and this run's captioner (here ``heuristic``) captions them; the captions are
prepared once and shared by every checkpoint."""

from __future__ import annotations

import json
import subprocess
import sys

import yaml

from temple_core.samples.synthetic import Shot, write_video
from temple_core.store import read_jsonl


def test_run_captioner_captions_held_out_videos(tmp_path):
    held = tmp_path / "held"
    write_video(held / "cuts.mp4", [Shot(0, 20), Shot(1, 22), Shot(2, 18), Shot(3, 25), Shot(4, 20)], fps=10)
    write_video(held / "three.mp4", [Shot(6, 20), Shot(7, 20), Shot(8, 20)], fps=10)  # 3 shots: selection rejects it
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "run_dir": str(tmp_path / "run"),
        "select": {"shot_detector": {"name": "pyscenedetect"}, "decode_worker": False},
        "generate": {"captioner": {"name": "heuristic"}},
        "eval": {"backend": {"name": "qwen2_vl", "preset": "tiny-random"}, "checkpoints": ["base"],
                 "frames": {"max_frames": 4, "max_pixels": 3136},
                 "evaluators": [{"name": "temporal_order", "videos": {"paths": [str(held)]}, "captions": "captioner"}]},
    }))
    result = subprocess.run([sys.executable, "-m", "temple_core", "run", str(recipe), "--stages", "eval", "--no-progress"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    records = {r["item_id"]: r for r in read_jsonl(tmp_path / "run" / "eval" / "base" / "temporal_order.jsonl")}
    assert records["three"]["skipped"].startswith("selection: rejected")
    cuts = records["cuts"]
    assert cuts["source"] == "captioner heuristic" and cuts["clips"] == 5
    prepared = {r["video_id"]: r for r in read_jsonl(tmp_path / "run" / "eval" / "_data" / "temporal_order" / "clips.rank0.jsonl")}
    assert len(prepared["cuts"]["captions"]) == 5 and "scene" in prepared["cuts"]["captions"][0]
    data = json.loads((tmp_path / "run" / "eval" / "base" / "temporal_order.json").read_text())
    assert data["metrics"]["videos"] == 1 and data["metrics"]["skipped"] == {"three": cuts and records["three"]["skipped"]}
    assert not (tmp_path / "run" / "select").exists(), "--stages eval ran no other stage"
