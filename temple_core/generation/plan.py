"""Which rejected responses a video gets: one per (perturbation, difficulty), with its kept indices."""

from __future__ import annotations

import hashlib
import random
import reprlib
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from temple_core.errors import PluginError, TempleError


@attrs.define
class Variant:
    """One rejected response to write: the perturbed clip order of one (perturbation, difficulty)."""

    perturbation: str
    difficulty: int
    kept_indices: list[int]


def video_rng(seed: int, video_id: str, purpose: str) -> random.Random:
    """A random stream that depends only on the recipe seed, the video and what it is for.

    String seeds are hashed by ``random`` itself (SHA-512), so the stream is the same in every
    process and every run: sharding and resumption cannot change a video's pairs.
    """
    return random.Random(f"{seed}:{video_id}:{purpose}")


def video_seed(seed: int, video_id: str) -> int:
    """An integer seed for the backend's sampling of one video (stable across processes)."""
    digest = hashlib.sha256(f"{seed}:{video_id}:sampling".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def plan_variants(
    num_clips: int,
    perturbations: Sequence[tuple[str, Callable[..., Any]]],
    difficulties: Sequence[int],
    rng: random.Random,
) -> list[Variant]:
    """Perturb the clip order once per (perturbation, difficulty), perturbations outermost.

    The perturbation is applied to the clip *indices*, so its ``kept_indices`` are checked
    against what it returned: a third-party perturbation that reports indices inconsistent
    with its items is caught here rather than producing untraceable pairs.
    """
    variants = []
    indices = list(range(num_clips))
    for name, perturbation in perturbations:
        for r in difficulties:
            result = perturbation(indices, r, rng)
            if not (hasattr(result, "items") and hasattr(result, "kept_indices")):
                raise PluginError(
                    f"perturbation '{name}' at r={r} returned {type(result).__name__} {reprlib.repr(result)}; a perturbation "
                    "returns temple_core.records.Perturbed(items=..., kept_indices=...)"
                )
            try:
                kept = [int(i) for i in result.kept_indices]
                items = list(result.items)
            except (TypeError, ValueError) as exc:
                raise PluginError(f"perturbation '{name}' at r={r} returned a Perturbed whose kept_indices are not clip indices: {exc}") from None
            if items != kept or any(not 0 <= i < num_clips for i in kept):
                raise PluginError(
                    f"perturbation '{name}' at r={r} returned kept_indices {kept} that do not match "
                    f"its items {items} for {num_clips} clips"
                )
            variants.append(Variant(name, int(r), kept))
    return variants


def per_video_rngs(rng, count: int) -> list[random.Random]:
    """The captioner's ``rng`` argument as one stream per video.

    The stage passes a list (one ``video_rng`` per video) so that a video's perturbations do
    not depend on which other videos share its batch; a single ``Random`` (a caller outside
    the stage) is shared by the videos in order.
    """
    if isinstance(rng, random.Random):
        return [rng] * count
    rngs = list(rng)
    if len(rngs) != count:
        raise ValueError(f"got {len(rngs)} random streams for {count} videos")
    return rngs


def keyframes_of(video) -> list[list[int]]:
    """The two keyframes of every clip (segment) of a selected video, checked."""
    if video.status != "kept":
        raise TempleError(f"video {video.video_id} was not kept by selection (status {video.status})")
    if not video.keyframes or len(video.keyframes) != len(video.segments):
        raise TempleError(
            f"video {video.video_id}: {len(video.keyframes)} keyframe lists for {len(video.segments)} segments "
            "in select/videos.jsonl"
        )
    return [list(k) for k in video.keyframes]
