"""How an evaluator shows a video to the checkpoint: the file, or -- for a *blind* baseline --
black frames of the same count, size and rate.

A blind baseline is what a model scores without seeing anything: if it beats chance on an
order question, the texts leak the answer (e.g. timestamps that run backwards in a perturbed
description) and the evaluation measures the leak, not temporal understanding. The frames are
the ones the backend would sample from the file (``eval.frames``), all zero.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from temple_core.evaluation.request import FrameSettings


def video_item(path: str | Path, frames: FrameSettings, blind: bool = False) -> dict[str, Any]:
    """A video content item for ``backend.chat`` / ``score_texts``."""
    if not blind:
        return {"type": "video", "path": str(path)}
    from temple_core.video.source import VideoSource, sample_indices

    source = VideoSource(path)
    indices = sample_indices(source.num_frames, source.fps, frames.fps, None, None, frames.max_frames)
    span = (indices[-1] - indices[0] + 1) / source.fps
    rate = len(indices) / span if len(indices) > 1 else frames.fps
    black = np.zeros((source.height, source.width, 3), np.uint8)
    return {"type": "video", "frames": [black] * len(indices), "fps": rate}
