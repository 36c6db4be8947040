"""The records that flow between stages, one JSONL line each in the run directory.

Each record is an attrs class; ``to_dict`` gives its JSON line, ``from_dict`` reads one
back (unknown keys are kept in ``extra`` so that a newer writer's lines still load).
"""

from __future__ import annotations

from typing import Any

import attrs


def _record(cls):
    """Give an attrs record ``to_dict`` / ``from_dict`` with a forgiving reader."""

    names = {f.name for f in attrs.fields(cls)}

    def to_dict(self) -> dict[str, Any]:
        data = attrs.asdict(self, recurse=True)
        extra = data.pop("extra", None) or {}
        data.update(extra)
        return data

    @classmethod
    def from_dict(klass, data: dict[str, Any]):
        known = {k: v for k, v in data.items() if k in names and k != "extra"}
        extra = {k: v for k, v in data.items() if k not in names}
        if "extra" in names:
            known["extra"] = extra
        return klass(**known)

    cls.to_dict = to_dict
    cls.from_dict = from_dict
    return cls


@attrs.define
class Perturbed:
    """What a perturbation returns: the perturbed items and, for each, its original index."""

    items: list
    kept_indices: list[int]


@attrs.define
class ShotDetection:
    """What a shot detector returns. ``shots`` are ``[start, end]`` frame ranges, inclusive."""

    shots: list[list[int]]
    fps: float
    num_frames: int
    # Per-frame transition probabilities (when the detector has them), for plots and tests.
    scores: list[float] | None = None


@_record
@attrs.define
class VideoRecord:
    """One line of ``select/videos.jsonl``: one input video and what selection decided."""

    video_id: str
    path: str
    status: str  # "kept" | "rejected" | "error"
    reason: str | None = None
    fps: float | None = None
    num_frames: int | None = None
    duration: float | None = None
    shots: list[list[int]] = attrs.Factory(list)
    clips: list[list[int]] = attrs.Factory(list)
    groups: list[list[int]] = attrs.Factory(list)
    segments: list[list[int]] = attrs.Factory(list)
    keyframes: list[list[int]] = attrs.Factory(list)
    # Numbers behind a rejection (e.g. {"rule": "long_scene", "clip": 3, "seconds": 17.2}).
    details: dict[str, Any] = attrs.Factory(dict)
    extra: dict[str, Any] = attrs.Factory(dict)

    def segment_frames(self) -> list[tuple[int, int]]:
        """Each segment's first and last frame: from its first clip's start to its last clip's end."""
        return [(self.clips[seg[0]][0], self.clips[seg[-1]][1]) for seg in self.segments]


@_record
@attrs.define
class Rejected:
    """One rejected response of a video: the summary of a perturbed clip-caption list."""

    perturbation: str
    difficulty: int
    kept_indices: list[int]
    text: str


@_record
@attrs.define
class CaptionRecord:
    """One line of ``generate/captions.jsonl``: one selected video's captions and responses."""

    video_id: str
    video_path: str
    generator: str
    clip_captions: list[str]
    chosen: str
    rejected: list[dict[str, Any]] = attrs.Factory(list)  # Rejected.to_dict() each
    extra: dict[str, Any] = attrs.Factory(dict)


@_record
@attrs.define
class Pair:
    """One line of ``generate/pairs.jsonl``: a kept preference pair, traceable to its video."""

    pair_id: str
    video_id: str
    video_path: str
    prompt: str
    chosen: str
    rejected: str
    perturbation: str
    difficulty: int
    kept_indices: list[int]
    generator: str
    extra: dict[str, Any] = attrs.Factory(dict)
