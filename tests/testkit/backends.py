"""Helpers for the backend tests: small random videos, and the inputs of the committed
transformers-processor reference (``tests/backends/data/processor_reference.npz``)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def write_video(path: Path, width: int, height: int, frames: int, fps: int = 4, seed: int = 0) -> Path:
    """A small H.264 video of random-coloured frames with a moving bar."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            image = np.empty((height, width, 3), np.uint8)
            image[:] = rng.integers(0, 256, 3)
            x = (i * 7) % max(1, width - 8)
            image[:, x : x + 8] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


#: (seed, frames, height, width, max_pixels): upsampling, odd sizes under a max_pixels cap,
#: downsampling, and a single frame.
CASES = [(0, 3, 37, 101, 4000), (1, 5, 48, 64, 3136), (2, 2, 90, 160, 6000), (3, 1, 23, 17, 784)]


def case_input(seed: int, frames: int, height: int, width: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (frames, height, width, 3), dtype=np.uint8)


#: Qwen3-VL processor cases (``tests/backends/data/qwen3_vl_processor_reference.npz``):
#: (seed, frames, height, width, max_pixels, min_pixels, fps). Odd sizes under a cap, a frame
#: count that is not a multiple of the temporal patch, an upscale (sides under 32, a min_pixels
#: floor), a wide clip, and a single frame.
QWEN3_CASES = [
    (10, 5, 37, 101, 4000, 784, 2.0),
    (11, 4, 48, 64, 90000, 784, 1.0),
    (12, 3, 90, 160, 6000, 784, 0.5),
    (13, 2, 17, 23, 4000, 3136, 2.0),
    (14, 6, 24, 230, 3000, 784, 4.0),
    (15, 1, 40, 50, 2000, 784, 2.0),
]


def qwen3_case(seed: int, frames: int, height: int, width: int):
    """The case's frames and the image shown beside them (numpy's PCG64 is stable)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (frames, height, width, 3), dtype=np.uint8), rng.integers(0, 256, (30, 44, 3), dtype=np.uint8)


def qwen3_case_conversation(seed, frames, height, width, fps):
    video, image = qwen3_case(seed, frames, height, width)
    return [{"role": "user", "content": [
        {"type": "video", "frames": list(video), "fps": fps}, {"type": "image", "image": image},
        {"type": "text", "text": "Describe."}]}]


def qwen3_processor_outputs(backend, case, video=None, metadata=None) -> dict:
    """transformers' own ``Qwen3VLProcessor`` (torchvision video and image processors, the
    backend's tokenizer) on a case's conversation: ``text`` (its input_ids decoded) and the
    tensors. Needs torchvision. ``video``/``metadata``: other frames and their VideoMetadata
    (e.g. decoded from a file) instead of the case's."""
    from transformers import Qwen3VLProcessor
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor
    from transformers.video_utils import VideoMetadata

    seed, frames, height, width, max_pixels, min_pixels, fps = case
    case_video, image = qwen3_case(seed, frames, height, width)
    conversation = qwen3_case_conversation(seed, frames, height, width, fps)
    if video is None:
        video = case_video
        metadata = VideoMetadata(total_num_frames=frames, fps=fps, frames_indices=list(range(frames)))
    if len(video) == 1:
        # Qwen3VLVideoProcessor refuses fewer frames than one temporal patch; the backend pads
        # a single frame with itself first, which is what the processor gets here.
        video = np.concatenate([video, video])
        metadata = VideoMetadata(total_num_frames=metadata.total_num_frames, fps=metadata.fps,
                                 frames_indices=list(metadata.frames_indices) * 2)
    vc = backend.model.config.vision_config
    common = dict(patch_size=vc.patch_size, merge_size=vc.spatial_merge_size, temporal_patch_size=vc.temporal_patch_size,
                  image_mean=[0.5] * 3, image_std=[0.5] * 3)
    t = len(video)
    proc = Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessor(size={"shortest_edge": min_pixels, "longest_edge": max_pixels}, **common),
        # temple's per-frame budgets, times the clip's frames: the processor's per-clip budget.
        video_processor=Qwen3VLVideoProcessor(size={"shortest_edge": min_pixels * t, "longest_edge": max_pixels * t},
                                              cap_pixels_per_frame=False, **common),
        tokenizer=backend.processor, chat_template=backend.processor.chat_template,
    )
    text = backend.processor.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
    out = proc(text=[text], images=[image], videos=[video], video_metadata=[metadata], do_sample_frames=False, return_tensors="pt")
    result = {k: out[k] for k in ("pixel_values_videos", "video_grid_thw", "pixel_values", "image_grid_thw", "mm_token_type_ids", "input_ids")}
    result["text"] = backend.processor.decode(out["input_ids"][0], skip_special_tokens=False)
    return result


def pixels_from_levels(levels: np.ndarray) -> np.ndarray:
    """Stored uint8 grey levels -> the processor's pixel values (rescale 1/255, mean = std = 0.5)."""
    return ((levels.astype(np.float32) / 255.0 - 0.5) / 0.5).astype(np.float32)


def conversations(videos):
    """Four conversations over the backends' test videos: a whole video, a clip, text first, two images."""
    image = np.random.default_rng(5).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    convs = [
        [{"role": "user", "content": [{"type": "video", "path": str(videos[0])}, {"type": "text", "text": "Describe the video."}]}],
        [{"role": "user", "content": [{"type": "video", "path": str(videos[1]), "start": 0.5, "end": 2.0}, {"type": "text", "text": "What happens first?"}]}],
        [{"role": "user", "content": [{"type": "text", "text": "Summarise the clips in time order."}, {"type": "video", "path": str(videos[2])}]}],
        [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "image", "image": image[::-1].copy()}, {"type": "text", "text": "Compare."}]}],
    ]
    return convs


def preference_parts(batch: dict) -> tuple[dict, dict, dict]:
    """A collated preference batch split as the DPO trainer splits it: what both answers share
    (the video tensors), then the chosen and the rejected rows (their prefixes removed)."""
    shared = {k: v for k, v in batch.items() if not k.startswith(("chosen_", "rejected_"))}
    chosen, rejected = ({k[len(side) + 1 :]: v for k, v in batch.items() if k.startswith(side + "_")} for side in ("chosen", "rejected"))
    return shared, chosen, rejected


def assert_vision_reuse_matches(backend, model, shared: dict, rows: dict) -> None:
    """The logits of ``rows`` with the vision tower's output computed once and handed in
    (``vision_features``) equal those of a plain forward on the raw video tensors."""
    import torch

    with torch.no_grad():
        raw = model(**rows, **backend.model_inputs(shared)).logits
        reused = model(**rows, **backend.model_inputs(shared, vision_features=backend.vision_features(model, shared))).logits
    torch.testing.assert_close(raw, reused, atol=1e-5, rtol=1e-5)
