"""The scene filters and the segment filter of SPEC §1, with the numbers behind each decision."""

from __future__ import annotations

from collections import Counter
from typing import Any

import attrs
import numpy as np


@attrs.define
class Decision:
    """What a filter decided: the kept items, and when the video is rejected, why.

    ``reason`` is a short rule name (``long_scene``, ``few_shots``, ...); ``details`` holds
    the numbers (which shot, how long, the limit) for the manifest.
    """

    kept: list = attrs.Factory(list)
    reason: str | None = None
    details: dict[str, Any] = attrs.Factory(dict)

    @property
    def rejected(self) -> bool:
        return self.reason is not None


def shot_gray_ranges(shots: list[list[int]], gray_range: np.ndarray, last_frame: bool = False) -> list[int]:
    """Per shot, ``max - min`` grayscale level over its frames' pixels (from the per-frame
    ``(min, max)`` the decoding pass recorded): frames ``start .. end - 1`` as the release's
    ``frames[start_frame:end_frame]`` (its shot ends *on* the transition frame), or ``start ..
    end`` with ``last_frame``. No frame at all (a one-frame shot without its last) spans 0."""
    out = []
    for start, end in shots:
        part = gray_range[start : end + 1 if last_frame else end]
        out.append(int(part[:, 1].max()) - int(part[:, 0].min()) if len(part) else 0)
    return out


def filter_shots(
    shots: list[list[int]],
    fps: float,
    gray_spans: list[int] | None,
    *,
    min_shot_frames: int = 8,
    min_shot_seconds: float = 0.2,
    monochrome_range: int = 10,
    max_shot_seconds: float = 16.0,
    min_shots: int = 4,
    max_shots: int = 32,
) -> Decision:
    """Apply, in order: minimum shot (``frames < min_shot_frames`` is not a shot), short
    scene (``end - start < min_shot_seconds * fps``), monochrome (``gray span <
    monochrome_range``), then reject the video for a long scene (a kept shot with
    ``(end - start) / fps > max_shot_seconds``) or a shot count outside
    ``[min_shots, max_shots]``. ``kept`` are the surviving shots (the clips).
    """
    counts = {"detected": len(shots), "too_few_frames": 0, "too_short": 0, "monochrome": 0}
    kept = []
    for i, (start, end) in enumerate(shots):
        if end - start + 1 < min_shot_frames:
            counts["too_few_frames"] += 1
        elif end - start < min_shot_seconds * fps:
            counts["too_short"] += 1
        elif gray_spans is not None and gray_spans[i] < monochrome_range:
            counts["monochrome"] += 1
        else:
            kept.append([int(start), int(end)])
    counts["kept"] = len(kept)
    # Same measure as the short-scene rule (end - start), so the two rules never overlap oddly.
    for i, (start, end) in enumerate(kept):
        seconds = (end - start) / fps
        if seconds > max_shot_seconds:
            return Decision(
                kept,
                "long_scene",
                {**counts, "clip": i, "frames": [start, end], "seconds": round(seconds, 3), "limit": max_shot_seconds},
            )
    if len(kept) < min_shots:
        return Decision(kept, "few_shots", {**counts, "limit": min_shots})
    if len(kept) > max_shots:
        return Decision(kept, "many_shots", {**counts, "limit": max_shots})
    return Decision(kept, None, counts)


def filter_segments(segments: list[list[int]], labels: list[int], *, min_segments: int = 4, max_group_segments: int = 4) -> Decision:
    """Reject a video with fewer than ``min_segments`` segments, or where one group appears
    as more than ``len(segments) // 3`` segments or as ``max_group_segments`` or more.

    ``labels[c]`` is clip ``c``'s group; a segment's group is its clips' group.
    """
    n = len(segments)
    if n < min_segments:
        return Decision(segments, "few_segments", {"segments": n, "limit": min_segments})
    per_group = Counter(labels[seg[0]] for seg in segments)
    group, count = max(per_group.items(), key=lambda kv: (kv[1], -kv[0]))
    if count > n // 3 or count >= max_group_segments:
        return Decision(
            segments,
            "repeated_group",
            {"segments": n, "group": int(group), "group_segments": int(count), "limit": min(n // 3, max_group_segments - 1)},
        )
    return Decision(segments, None, {"segments": n})
