"""Collators: rows of a stage's dataset -> the backend's padded training batch.

Videos are decoded and tokenised per batch by the backend (they are too big to pre-tokenise).
A sample whose video fails to decode here (it passed the probe before training, so this is
rare) or that cannot fit ``max_length`` is left out of its batch and counted in ``skipped``;
a batch with nothing left is an error naming its videos.
"""

from __future__ import annotations

import json
from typing import Any

from temple_core.errors import SkipSample, TempleError, VideoError


class VideoCollator:
    """The shared loop; a subclass says how one row is encoded and how a batch is padded."""

    #: What a row is called in messages ("pair", "sample").
    noun = "sample"

    def __init__(self, backend, video_options: dict[str, Any], max_length: int):
        self.backend = backend
        self.video_options = video_options
        self.max_length = max_length
        self.skipped: list[dict[str, Any]] = []

    def encode(self, row: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def collate(self, encoded: list[dict[str, Any]]) -> dict[str, Any]:
        raise NotImplementedError

    def row_id(self, row: dict[str, Any]) -> str:
        raise NotImplementedError

    def videos_of(self, row: dict[str, Any]) -> list[str]:
        raise NotImplementedError

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        encoded = []
        for row in rows:
            try:
                encoded.append(self.encode(row))
            except (SkipSample, VideoError) as exc:
                self.skipped.append({"id": self.row_id(row), "reason": getattr(exc, "reason", str(exc))})
        if not encoded:
            names = ", ".join(v for row in rows for v in self.videos_of(row))
            raise TempleError(
                f"no {self.noun} of this batch could be encoded (videos: {names}): {self.skipped[-1]['reason']}"
            )
        return self.collate(encoded)


class PreferenceCollator(VideoCollator):
    """Pairs -> ``chosen_*`` / ``rejected_*`` rows sharing one video per pair, and
    ``video_keys``: each pair's video (a trainer may compute a video's features once)."""

    noun = "pair"

    def encode(self, row):
        encoded = self.backend.encode_preference(
            video=row["video_path"],
            prompt=row["prompt"],
            chosen=row["chosen"],
            rejected=row["rejected"],
            max_length=self.max_length,
            **self.video_options,
        )
        return {**encoded, "video_key": row["video_path"]}

    def collate(self, encoded):
        # ``video_keys``: which pairs share a video (the same file at the stage's frame settings).
        return {**self.backend.collate_preference(encoded), "video_keys": [e["video_key"] for e in encoded]}

    def row_id(self, row):
        return row["pair_id"]

    def videos_of(self, row):
        return [row["video_path"]]


class SFTCollator(VideoCollator):
    """SFT samples (``messages`` as JSON text, ``videos``) -> ``input_ids`` / ``labels`` + video."""

    def encode(self, row):
        return self.backend.encode_sft(
            messages=json.loads(row["messages"]),
            videos=list(row["videos"]),
            max_length=self.max_length,
            **self.video_options,
        )

    def collate(self, encoded):
        return self.backend.collate_sft(encoded)

    def row_id(self, row):
        return row["id"]

    def videos_of(self, row):
        return list(row["videos"])
