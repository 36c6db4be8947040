"""Run by an interpreter WITH torchvision and qwen-vl-utils (``TEMPLE_TORCHVISION_PYTHON``): one
clip of a video shown to a Qwen model the release's way -- its two keyframes as PIL images in
one ``{"type": "video", "video": [...]}`` element, ``qwen_vl_utils.process_vision_info``, then
``AutoProcessor.from_pretrained(folder, max_pixels=28 * 28 * 512)`` (the release's
inference/generator_qwen2vl.py) -- against temple's ``contextual`` captioner with its defaults
and temple's backend. Prints one JSON line: what matched.

    python tests/testkit/release_clip_check.py FAMILY FOLDER VIDEO FRAME FRAME
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch


#: Where scripts/lmms_eval_bridge.sh installs qwen-vl-utils 0.0.11 (lmms-eval needs >= 0.0.14,
#: which for a frame list adds a third, video-level resize the release's version did not have).
RELEASE_QWEN_VL_UTILS = Path(sys.prefix) / "qwen-vl-utils-0.0.11"


def main(family: str, folder: str, video: str, first: int, second: int) -> dict:
    if not (RELEASE_QWEN_VL_UTILS / "qwen_vl_utils").is_dir():
        raise SystemExit(f"qwen-vl-utils 0.0.11 is not in {RELEASE_QWEN_VL_UTILS} (scripts/lmms_eval_bridge.sh installs it)")
    sys.path.insert(0, str(RELEASE_QWEN_VL_UTILS))
    import qwen_vl_utils
    from PIL import Image
    from qwen_vl_utils import process_vision_info
    from transformers import AutoProcessor

    from temple_core.config import Structurer
    from temple_core.plugins import get_plugin_manager
    from temple_core.video.source import VideoSource

    frames = VideoSource(video).read_frames([first, second])

    # The release.
    proc = AutoProcessor.from_pretrained(folder, max_pixels=28 * 28 * 512)
    messages = [{"role": "user", "content": [{"type": "video", "video": [Image.fromarray(f) for f in frames]},
                                             {"type": "text", "text": "Describe this video in detail."}]}]
    text = proc.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    image_inputs, video_inputs = process_vision_info(messages)
    out = proc(text=[text], images=image_inputs, videos=video_inputs, padding=True, return_tensors="pt")

    # temple: the captioner's clip item (its default presize), the backend's video path.
    plugins = get_plugin_manager()
    backend = Structurer(plugins).component("backends", {"name": family, "path": folder}, "x").build(plugins)
    captioner = plugins.build("caption_generators", "contextual")
    (item,) = captioner.clip_items(captioner.presize(frames))
    ours = backend.visual_inputs(item)

    theirs = out["pixel_values_videos"]
    report = {
        "processor": type(proc).__name__,
        "qwen_vl_utils": str(Path(qwen_vl_utils.__file__).parent),
        "grid": out["video_grid_thw"][0].tolist(),
        "ours_grid": list(ours["grid"]),
        "pixels": theirs.shape == ours["pixels"].shape and bool(torch.allclose(theirs.float(), ours["pixels"].float(), atol=1e-5)),
        "max_abs": float((theirs.float() - ours["pixels"].float()).abs().max()) if theirs.shape == ours["pixels"].shape else None,
    }
    if "second_per_grid_ts" in out:
        report["second_per_grid_ts"] = [float(x) for x in out["second_per_grid_ts"]]
        report["ours_second_per_grid_ts"] = ours.get("seconds_per_grid")
    return report


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))))
