"""Collators: rows of a stage's dataset -> the backend's padded training batch.

Videos are decoded and tokenised per batch by the backend (they are too big to pre-tokenise).
A sample whose video fails to decode here (it passed the probe before training, so this is
rare) or that cannot fit ``max_length`` is counted in ``skipped`` -- and written to ``log``, the
stage's ``skipped_in_batches`` manifest (a :class:`~temple_core.store.ShardedJsonl`: one shard
per process, appended by its DataLoader workers too, whose memory the summary never sees) --
and, given a ``pool`` (the
stage's rows: ``too_long: resample``), replaced by another row of the pool, as ms-swift's lazy
dataset does (``LazyLLMDataset``: up to 10 tries in all). ms-swift walks one shuffled order with
a cursor that moves on every failure; here each failing row has its own seeded order of
candidates, so which row replaces it depends on nothing else (a resumed stage or another process
makes the same choice, whatever the order of the rows). Without a pool, or when every candidate
fails too, the row is left out; a batch with nothing left is an error naming its videos.
"""

from __future__ import annotations

import json
import random
from typing import Any

from temple_core.errors import SkipSample, TempleError, VideoError
from temple_core.store import ShardedJsonl


def failures_log(tctx) -> ShardedJsonl:
    """The stage's ``skipped_in_batches`` manifest, this process's shard (see the module doc)."""
    return ShardedJsonl.at(tctx.layout.skipped_in_batches, key="id", rank=tctx.rank, world_size=tctx.world_size)


class VideoCollator:
    """The shared loop; a subclass says how one row is encoded and how a batch is padded."""

    #: What a row is called in messages ("pair", "sample").
    noun = "sample"

    #: Rows tried for one sample in all, itself included (ms-swift's ``n_try_fetch``).
    TRIES = 10

    def __init__(self, backend, video_options: dict[str, Any], max_length: int, pool: list[dict[str, Any]] | None = None,
                 seed: int = 0, log: ShardedJsonl | None = None):
        self.backend = backend
        self.video_options = video_options
        self.max_length = max_length
        self.pool = pool
        self.seed = seed
        self.log = log
        self.skipped: list[dict[str, Any]] = []  # this process's (or worker's) own
        self._by_id: list[dict[str, Any]] | None = None

    def counts(self, merge: bool = False) -> dict[str, int]:
        """For the stage summary: samples that failed in their batch, and how many of them
        another sample replaced -- each sample once. With ``merge`` (the main process, once
        every process has finished training): from every shard of ``log``, whichever process,
        worker or (resumed) run of the stage met it, then merged into its one file; otherwise
        this process's own."""
        entries = self.skipped
        if merge and self.log is not None:
            entries = self.log.records()
            self.log.merge()
        failed = {e["id"] for e in entries}
        replaced = {e["id"] for e in entries if e.get("replaced_by")}
        return {"skipped_in_batches": len(failed), "replaced_in_batches": len(replaced)}

    def candidates(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        """The rows that may replace ``row``, in the order they are tried."""
        if not self.pool:
            return []
        if self._by_id is None:  # the pool's order plays no part
            self._by_id = sorted(self.pool, key=self.row_id)
        others = [r for r in self._by_id if self.row_id(r) != self.row_id(row)]
        order = random.Random(f"{self.seed}:replace:{self.row_id(row)}").sample(range(len(others)), min(len(others), self.TRIES - 1))
        return [others[i] for i in order]

    def _encode_or_replace(self, row: dict[str, Any]) -> dict[str, Any] | None:
        try:
            return self.encode(row)
        except (SkipSample, VideoError) as exc:
            entry = {"id": self.row_id(row), "reason": getattr(exc, "reason", str(exc))}
            self.skipped.append(entry)
        for other in self.candidates(row):
            try:
                encoded = self.encode(other)
            except (SkipSample, VideoError):
                continue
            entry["replaced_by"] = self.row_id(other)
            self._record(entry)
            return encoded
        self._record(entry)
        return None

    def _record(self, entry: dict[str, Any]) -> None:
        if self.log is not None:
            self.log.append(entry)

    def encode(self, row: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def collate(self, encoded: list[dict[str, Any]]) -> dict[str, Any]:
        raise NotImplementedError

    def row_id(self, row: dict[str, Any]) -> str:
        raise NotImplementedError

    def videos_of(self, row: dict[str, Any]) -> list[str]:
        raise NotImplementedError

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        encoded = [e for e in (self._encode_or_replace(row) for row in rows) if e is not None]
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
