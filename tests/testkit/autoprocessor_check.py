"""Run by an interpreter WITH torchvision (``TEMPLE_TORCHVISION_PYTHON``), on a model folder
temple wrote: transformers' own ``AutoProcessor.from_pretrained(folder)`` must load it and turn
a video and a prompt into the same input ids and visual tensors as temple's backend (which
needs no torchvision). Prints one JSON line: what matched.

    python tests/testkit/autoprocessor_check.py FAMILY FOLDER
"""

from __future__ import annotations

import json
import sys

import numpy as np
import torch


def main(family: str, folder: str) -> dict:
    from transformers import AutoProcessor

    from temple_core.config import Structurer
    from temple_core.plugins import get_plugin_manager

    plugins = get_plugin_manager()
    backend = Structurer(plugins).component("backends", {"name": family, "path": folder, "max_pixels": 6000, "min_pixels": 784}, "x").build(plugins)
    proc = AutoProcessor.from_pretrained(folder)
    frames = np.random.default_rng(0).integers(0, 256, (4, 48, 64, 3), dtype=np.uint8)
    conversation = [{"role": "user", "content": [{"type": "video", "frames": list(frames), "fps": 2.0}, {"type": "text", "text": "Describe."}]}]
    visual = backend.visual_inputs(conversation[0]["content"][0])
    ours_ids = backend.processor(backend.render(conversation, [visual], True), add_special_tokens=False)["input_ids"]
    text = proc.apply_chat_template([{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "Describe."}]}],
                                    tokenize=False, add_generation_prompt=True)
    kwargs = {"do_sample_frames": False, "return_tensors": "pt"}
    if family.startswith(("qwen", "mimo")):
        kwargs["videos_kwargs"] = {"size": {"shortest_edge": 784, "longest_edge": 6000}}
    out = proc(text=[text], videos=[frames], **kwargs)
    key = "pixel_values_videos" if "pixel_values_videos" in out else "pixel_values"
    theirs = out[key].reshape(visual["pixels"].shape) if key == "pixel_values_videos" and out[key].dim() == 5 else out[key]
    return {
        "processor": type(proc).__name__,
        "input_ids": out["input_ids"][0].tolist() == ours_ids,
        "pixels": bool(torch.allclose(theirs.float(), visual["pixels"].float(), atol=1e-5)),
        "grid": out["video_grid_thw"][0].tolist() == list(visual["grid"]) if "video_grid_thw" in out else None,
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])))
