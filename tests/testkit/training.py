"""Helpers for the training tests: tiny videos and pairs files written on the spot."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

W, H = 64, 48


def write_video(path: Path, colours: list[tuple[int, int, int]], fps: int = 1, seconds_per_colour: int = 1) -> Path:
    """A tiny H.264 video: flat colours in sequence with a moving white bar (64x48)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        index = 0
        for colour in colours:
            for _ in range(fps * seconds_per_colour):
                image = np.empty((H, W, 3), np.uint8)
                image[:] = colour
                x = (index * 9) % (W - 8)
                image[:, x : x + 8] = 255
                for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                    container.mux(packet)
                index += 1
        for packet in stream.encode():
            container.mux(packet)
    return path


PALETTE = [(200, 40, 40), (40, 170, 60), (40, 70, 200), (220, 200, 40), (160, 60, 200), (30, 200, 200)]


def write_videos(folder: Path, count: int, seconds: int = 4) -> list[Path]:
    paths = []
    for i in range(count):
        colours = [PALETTE[(i + k) % len(PALETTE)] for k in range(seconds)]
        paths.append(write_video(folder / f"v{i}.mp4", colours))
    return paths


def easy_pairs(videos: list[Path], difficulty: int = 16, per_video: int = 2, perturbations=("drop", "shuffle")) -> list[dict]:
    """Pairs a model can learn to tell apart: the chosen text is always the same kind of
    sentence, the rejected one is always another (short, distinct vocabulary)."""
    pairs = []
    for v, path in enumerate(videos):
        for k in range(per_video):
            perturbation = perturbations[k % len(perturbations)]
            pairs.append(
                {
                    "pair_id": f"p{v}-{k}-{difficulty}",
                    "video_id": path.stem,
                    "video_path": str(path),
                    "prompt": "Describe the video.",
                    "chosen": "red then green then blue.",
                    "rejected": "blue blue blue.",
                    "perturbation": perturbation,
                    "difficulty": difficulty,
                    "kept_indices": [0, 1],
                    "generator": "test",
                }
            )
    return pairs


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def stage_context(backend, pairs_or_samples, out_dir: Path, kind: str = "pairs", seed: int = 0, callbacks=(), name="0-dpo"):
    """A :class:`TrainStageContext` for one stage, as the train stage builds it."""
    from temple_core.store import TrainStageLayout
    from temple_core.training.context import TrainStageContext

    return TrainStageContext(
        index=int(name.split("-")[0]),
        name=name,
        trainer=name.split("-", 1)[1],
        where=f"train.stages[{name.split('-')[0]}]",
        backend=backend,
        start="test",
        kind=kind,
        data=list(pairs_or_samples),
        layout=TrainStageLayout(out_dir),
        seed=seed,
        progress=False,
        callbacks=list(callbacks),
    )


def build_backend(name: str = "qwen2_vl", **options):
    """A backend component as a recipe's ``train.backend`` would build it."""
    from temple_core.config import Structurer
    from temple_core.plugins import get_plugin_manager

    plugins = get_plugin_manager()
    spec = Structurer(plugins).component("backends", {"name": name, **options}, "train.backend")
    return spec.build(plugins)


def state_dict_of(folder: Path, backend: str = "qwen2_vl") -> dict:
    """Every weight of a saved model folder, loaded the way a stage loads it (the backend's
    ``path:``), so names are the model's own (not the checkpoint's on-disk names)."""
    model = build_backend(backend, path=str(folder)).load_model()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}
