"""Ground truth of held-out videos: the sidecar ``<video>.json`` and what follows from it.

A synthetic world with known events (the ``heldout_events`` sample, the micro world of
:mod:`temple_core.samples.world`) writes, beside each video::

    {"events": [{"description": "a red circle moves left", "start": 0.0, "end": 1.0}, ...]}

events in time order, ``start`` / ``end`` in seconds (optional). Evaluators read it here:
``temporal_order`` (the correct order), ``event_recall`` (what a description should mention),
and :func:`ground_truth_record` gives the selection record perfect shot detection would write
(one clip per event, keyframes by the release's rule), so a captioner can be run on the true
clips of a held-out video.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from temple_core.errors import TempleError


def sidecar_of(video: str | Path) -> Path:
    """The ground-truth file of a video: ``<video without suffix>.json``."""
    return Path(video).with_suffix(".json")


def read_events(path: Path) -> list[dict]:
    """The events of a sidecar, in time order, each with a non-empty ``description``
    (``TempleError`` naming the file if bad)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        events = [e if isinstance(e, dict) else {"description": str(e)} for e in data["events"]]
        descriptions = [e["description"] for e in events]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise TempleError(f"{path}: not a ground-truth sidecar ({{\"events\": [{{\"description\": ...}}, ...]}}): {exc}") from None
    if any(not isinstance(d, str) or not d.strip() for d in descriptions):
        raise TempleError(f"{path}: every event needs a non-empty description")
    # The list's order is the true order every evaluator scores against: where the events
    # give their start times, those must agree with it.
    starts = []
    for i, event in enumerate(events):
        if event.get("start") is None:
            continue
        start = event["start"]
        if isinstance(start, bool) or not isinstance(start, (int, float)) or not math.isfinite(start):
            raise TempleError(f"{path}: event {i}'s start is not a finite number of seconds: {start!r}")
        starts.append((i, float(start)))
    for (i, a), (j, b) in zip(starts, starts[1:]):
        if b < a:
            raise TempleError(f"{path}: events must be listed in time order, but event {j} starts at {b:g} s, before event {i} ({a:g} s)")
    return events


def read_sidecar(path: Path) -> list[str]:
    """The event descriptions of a sidecar, in time order."""
    return [e["description"] for e in read_events(path)]


def ground_truth_record(video: str | Path, video_id: str | None = None):
    """The ``select/videos.jsonl`` record of a video whose sidecar gives every event's
    ``start`` and ``end``: one clip and one segment per event (frames ``[round(start * fps),
    round(end * fps) - 1]``), two keyframes each by the release's clarity rule (SPEC §1)."""
    from temple_core.records import VideoRecord
    from temple_core.selection import clarity, keyframe_windows, pick_keyframes
    from temple_core.video.source import VideoSource

    video = Path(video)
    events = read_events(sidecar_of(video))
    source = VideoSource(video)
    fps = float(source.fps)
    ranges = []
    for i, event in enumerate(events):
        if event.get("start") is None or event.get("end") is None:
            raise TempleError(f"{sidecar_of(video)}: event {i} has no start/end (needed to cut the video into its clips)")
        first, last = round(float(event["start"]) * fps), min(source.num_frames, round(float(event["end"]) * fps)) - 1
        if last < first:
            raise TempleError(f"{sidecar_of(video)}: event {i} spans no frame ({event['start']} .. {event['end']} s)")
        ranges.append([first, last])
    keyframes = []
    for first, last in ranges:
        window = sorted({f for _, _, frames in keyframe_windows(first, last) for f in frames})
        scores = {f: clarity(frame) for f, frame in zip(window, source.read_frames(window))}
        keyframes.append(pick_keyframes(first, last, scores))
    indices = [[i] for i in range(len(ranges))]
    return VideoRecord(
        video_id=video_id or video.stem, path=str(video.resolve()), status="kept", fps=fps, num_frames=source.num_frames,
        duration=source.num_frames / fps, shots=ranges, clips=ranges, groups=indices, segments=indices, keyframes=keyframes,
    )


def normalise(text: str) -> str:
    """Lower-case words separated by single spaces: how event phrases are found in texts."""
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def mentions(text: str, phrases: list[str]) -> list[int | None]:
    """Per phrase, where (word offset) it occurs in ``text`` as whole words, or None. Each
    place in the text names one event: longer phrases claim their words first (so "a dog
    runs" is not found inside "a dog runs away" when both are events), and a phrase given
    twice (the same event happening twice) takes its next occurrence."""
    words = normalise(text).split()
    claimed = [False] * len(words)
    out: list[int | None] = [None] * len(phrases)
    targets = [normalise(phrase).split() for phrase in phrases]
    for k in sorted(range(len(phrases)), key=lambda k: -len(targets[k])):  # stable: list order among equals
        n = len(targets[k])
        for at in range(len(words) - n + 1) if n else ():
            if words[at:at + n] == targets[k] and not any(claimed[at:at + n]):
                out[k] = at
                claimed[at:at + n] = [True] * n
                break
    return out
