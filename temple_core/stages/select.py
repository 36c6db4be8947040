"""The ``select`` stage: a folder of videos -> ``<run_dir>/select/videos.jsonl`` (SPEC §1).

Per video: one low-resolution decoding pass for shot detection, which also records each
frame's grayscale range (the monochrome filter); the scene filters; one middle frame per
clip (by seeking) through the similarity encoder; WPGMA grouping; segments and the segment
filter; keyframes from the clarity of the frames in each segment's keyframe windows (by
seeking, streamed; the release's rule bit for bit, :mod:`temple_core.selection.keyframes`); optional JPEG thumbnails of the keyframes. Memory does not grow with a
video's length: nothing holds more than a window of full-resolution frames.

Resumable (a video's line is written when it is done; a re-run skips done videos) and split
across the processes of a launch by ``(rank, world_size)``; rank 0 merges the shards in
input order, so any number of processes gives the same manifest.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any, Literal

import attrs
import av
import cv2
import numpy as np

from temple_core.video import worker as decode_worker
from temple_core.config import Section, component_field
from temple_core.distributed import shard
from temple_core.errors import VideoError
from temple_core.records import VideoRecord
from temple_core.selection import (
    clarity,
    filter_segments,
    filter_shots,
    group_wpgma,
    groups_of,
    keyframe_windows,
    pick_keyframes,
    segments_of,
)
from temple_core.selection.filters import shot_gray_ranges
from temple_core.store import RunLayout, ShardedJsonl
from temple_core.store.files import write_bytes_atomic
from temple_core.video.decoding import GRAY_RULES
from temple_core.video.source import VideoSource

_ge0 = attrs.validators.ge(0)
_gt0 = attrs.validators.gt(0)


@attrs.define(kw_only=True)
class Config(Section):
    """The recipe's ``select:`` section. Defaults are SPEC §1's numbers."""

    #: Finds the shots (SPEC §1: TransNetV2, threshold 0.5).
    shot_detector: Any = component_field("shot_detectors", "transnetv2")
    #: Embeds each clip's middle frame for grouping. temple's default colorhist needs no weights; the paper's and the release's SigLIP so400m is `{name: siglip, path: ...}` (a row of the method page's differences).
    encoder: Any = component_field("similarity_encoders", "colorhist")
    #: Shots with fewer frames are not shots. (SPEC §1)
    min_shot_frames: int = attrs.field(default=8, validator=_ge0)
    #: Drop a shot with ``end - start < min_shot_seconds * fps``. (SPEC §1)
    min_shot_seconds: float = attrs.field(default=0.2, validator=_ge0)
    #: Drop a shot whose grayscale levels span less than this (``max - min``). (SPEC §1)
    monochrome_range: int = attrs.field(default=10, validator=[_ge0, attrs.validators.le(256)])
    #: How a frame's grayscale levels are measured for the monochrome filter: ``rgb``
    #: (OpenCV's gray of the decoded RGB frame: the release's ``cv2.cvtColor(BGR2GRAY)``) or
    #: ``luma`` (the decoder's luma plane mapped to full range: no colour conversion);
    #: docs/method.md.
    monochrome_gray: Literal["rgb", "luma"] = attrs.field(default="rgb", validator=attrs.validators.in_(GRAY_RULES))
    #: Count a shot's last frame in its grayscale span (the release's ``frames[start:end]``
    #: leaves it out: its shots end on the transition frame); docs/method.md.
    monochrome_last_frame: bool = False
    #: Reject the video if a kept shot is longer than this. (SPEC §1)
    max_shot_seconds: float = attrs.field(default=16.0, validator=_gt0)
    #: Reject the video if it keeps fewer / more shots. (SPEC §1)
    min_shots: int = attrs.field(default=4, validator=_ge0)
    #: Reject the video if it keeps more shots than this (SPEC §1: 4..32).
    max_shots: int = attrs.field(default=32, validator=attrs.validators.ge(1))
    #: Merge clips while their WPGMA similarity is strictly above this. (SPEC §1)
    group_threshold: float = attrs.field(default=0.8, validator=[attrs.validators.ge(-1.0), attrs.validators.le(1.0)])
    #: Reject the video with fewer segments than this. (SPEC §1)
    min_segments: int = attrs.field(default=4, validator=_ge0)
    #: Reject the video if one group appears as this many segments or more (or > len // 3). (SPEC §1)
    max_group_segments: int = attrs.field(default=4, validator=attrs.validators.ge(1))
    #: Keyframes per segment, at 1/3 and 2/3 of it for 2, by the release's clarity-weighted rule (SPEC §1); at most 64.
    keyframes_per_segment: int = attrs.field(default=2, validator=[attrs.validators.ge(1), attrs.validators.le(64)])
    #: Write ``select/thumbs/<video_id>/<frame>.jpg`` for each keyframe (for the report).
    thumbnails: bool = False
    #: Width of those thumbnails in pixels.
    thumbnail_width: int = attrs.field(default=320, validator=attrs.validators.ge(16))
    #: Decode the detection pass in a separate worker process, overlapping decoding with the
    #: shot detector (2+ CPUs; in-process otherwise). Same results either way; off: in-process.
    decode_worker: bool = True

    def __attrs_post_init__(self):
        if self.min_shots > self.max_shots:
            raise ValueError(f"min_shots ({self.min_shots}) is larger than max_shots ({self.max_shots})")


# Middle frames go through the encoder this many at a time (bounded memory at any resolution).
_ENCODE_CHUNK = 8


class Selector:
    """Selection of one video at a time with a built detector and encoder."""

    def __init__(self, config: Config, detector, encoder, thumbnails: RunLayout | None = None):
        self.config = config
        self.detector = detector
        self.encoder = encoder
        #: Where keyframe thumbnails go (``None``: none are written).
        self.thumbnails = thumbnails

    def select(self, video_id: str, path: Path) -> VideoRecord:
        record = VideoRecord(video_id=video_id, path=str(path), status="error")
        try:
            self._select(record, path)
        except (VideoError, av.error.FFmpegError) as exc:
            message = str(exc)
            if str(path) not in message:
                message = f"{path}: {message}"
            record.status, record.reason = "error", message
        return record

    def _select(self, record: VideoRecord, path: Path) -> None:
        c = self.config
        video = VideoSource(path, decode_worker=c.decode_worker)
        video.record_gray_range = True
        video.gray_rule = c.monochrome_gray
        detection = self.detector.detect(video)
        fps, n = float(detection.fps), int(detection.num_frames)
        record.fps, record.num_frames, record.duration = fps, n, round(n / fps, 3)
        record.shots = [[int(s), int(e)] for s, e in detection.shots]
        gray = video.gray_range
        if gray is None or len(gray) != n:
            # The detector decoded on its own: one extra pass for the grayscale ranges.
            video.record_gray_range = True
            for _ in video.iter_frames(16, 16):
                pass
            gray = video.gray_range
        spans = shot_gray_ranges(record.shots, gray, last_frame=c.monochrome_last_frame)
        decision = filter_shots(
            record.shots,
            fps,
            spans,
            min_shot_frames=c.min_shot_frames,
            min_shot_seconds=c.min_shot_seconds,
            monochrome_range=c.monochrome_range,
            max_shot_seconds=c.max_shot_seconds,
            min_shots=c.min_shots,
            max_shots=c.max_shots,
        )
        record.clips = decision.kept
        record.details = dict(decision.details)
        if decision.rejected:
            record.status, record.reason = "rejected", decision.reason
            return

        middles = [(s + e) // 2 for s, e in record.clips]
        embeddings = np.concatenate(
            [
                np.asarray(self.encoder.encode(video.read_frames(middles[i : i + _ENCODE_CHUNK])), dtype=np.float64)
                for i in range(0, len(middles), _ENCODE_CHUNK)
            ]
        )
        similarity = embeddings @ embeddings.T
        labels = group_wpgma(similarity, c.group_threshold)
        record.groups = groups_of(labels)
        record.segments = segments_of(labels)
        seg_decision = filter_segments(
            record.segments, labels, min_segments=c.min_segments, max_group_segments=c.max_group_segments
        )
        record.details.update(seg_decision.details)
        if seg_decision.rejected:
            record.status, record.reason = "rejected", seg_decision.reason
            return

        record.keyframes = [self._keyframes(video, first, last) for first, last in record.segment_frames()]
        if self.thumbnails is not None:
            self._thumbnails(video, record)
        record.status, record.reason = "kept", None

    def _keyframes(self, video: VideoSource, first: int, last: int) -> list[int]:
        windows = keyframe_windows(first, last, self.config.keyframes_per_segment)
        wanted = {i for _, _, frames in windows for i in frames}
        lo, hi = min(wanted), max(wanted)
        scores: dict[int, float] = {}
        # The windows are adjacent: one seek and one streamed run covers them all. RGB frames:
        # the release blurs the RGB frame before converting it to gray (SPEC §1), and the
        # decoder's own luma plane would give other numbers.
        for index, frame in video.iter_range(lo, hi):
            if index in wanted:
                scores[index] = clarity(frame)
        return pick_keyframes(first, last, scores, self.config.keyframes_per_segment)

    def _thumbnails(self, video: VideoSource, record: VideoRecord) -> None:
        indices = sorted({i for pair in record.keyframes for i in pair})
        width = min(self.config.thumbnail_width, video.width)
        height = max(2, round(video.height * width / video.width))
        for index, frame in zip(indices, video.read_frames(indices, width, height)):
            ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            if not ok:
                raise VideoError(f"{record.path}: frame {index} cannot be encoded as a JPEG thumbnail")
            # Written by Python, not cv2.imwrite (which returns False on a full disk, silently).
            write_bytes_atomic(self.thumbnails.thumbnail(record.video_id, index), jpeg.tobytes())


class _Progress:
    """tqdm bar: videos done, kept / rejected / errors, and video-seconds per second."""

    def __init__(self, total: int, enabled: bool):
        self.counts: Counter = Counter()
        self.seconds = 0.0
        self.started = time.time()
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc="select", unit="video")

    def update(self, record: VideoRecord) -> None:
        self.counts[record.status] += 1
        self.seconds += record.duration or 0.0
        if self.bar is not None:
            rate = self.seconds / max(1e-9, time.time() - self.started)
            self.bar.set_postfix(
                kept=self.counts["kept"], rejected=self.counts["rejected"], errors=self.counts["error"],
                video_s_per_s=f"{rate:.1f}", refresh=False,
            )
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def select_videos(
    config: Config,
    plugins,
    videos: list[Path],
    video_ids: list[str],
    layout: RunLayout,
    rank: int = 0,
    world_size: int = 1,
    progress: bool = False,
) -> ShardedJsonl:
    """This rank's share of the work, resumable; returns the store (not merged)."""
    store = ShardedJsonl.at(layout.videos, key="video_id", rank=rank, world_size=world_size)
    done = store.done_keys()
    mine = [(vid, path) for vid, path in shard(list(zip(video_ids, videos)), rank, world_size) if vid not in done]
    if not mine:
        return store
    detector = config.shot_detector.build(plugins)
    encoder = config.encoder.build(plugins)
    encoder.encode([])  # loads the model now: a bad checkpoint fails before any video, once
    thumbs = layout if config.thumbnails else None
    selector = Selector(config, detector, encoder, thumbs)
    bar = _Progress(len(mine), progress)
    try:
        for vid, path in mine:
            record = selector.select(vid, Path(path))
            store.append(record.to_dict())
            bar.update(record)
    finally:
        bar.close()
        if config.decode_worker:
            decode_worker.shutdown()  # later stages of the run do not need it (nor its memory)
    return store


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    statuses = Counter(r["status"] for r in records)
    reasons = Counter(r["reason"] for r in records if r["status"] == "rejected")
    errors = [f"{r['video_id']}: {r['reason']}" for r in records if r["status"] == "error"]
    return {
        "videos": len(records),
        "kept": statuses["kept"],
        "rejected": statuses["rejected"],
        "error": statuses["error"],
        "reasons": dict(sorted(reasons.items())),
        "errors": errors[:20],
        "video_seconds": round(sum(r.get("duration") or 0.0 for r in records), 1),
    }


def run(ctx) -> dict[str, Any]:
    """Run selection for this process's share, then (rank 0) merge the shards in input order."""
    videos, ids = list(ctx.videos), list(ctx.video_ids)
    store = select_videos(ctx.recipe.select, ctx.plugins, videos, ids, ctx.layout, ctx.rank, ctx.world_size, ctx.progress)
    if ctx.rank != 0:
        summary = summarize(store.records())  # partial: before rank 0 merges (and removes) the shards
    ctx.barrier()
    if ctx.rank == 0:
        store.merge(order=ids)
        summary = summarize(store.records())
    return summary
