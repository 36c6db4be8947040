"""Preference pairs from one video's responses (SPEC §4): prompt, filters, provenance."""

from __future__ import annotations

import random
from collections.abc import Sequence

from temple_core.generation.filters import drop_reason
from temple_core.records import CaptionRecord, Pair


def pair_id(video_id: str, perturbation: str, difficulty: int) -> str:
    """Deterministic, so a resumed or re-sharded run writes the same ids (and dedupes on them)."""
    return f"{video_id}-{perturbation}-r{difficulty}"


def make_pairs(
    record: CaptionRecord, prompts: Sequence[str], filters, rng: random.Random
) -> tuple[list[Pair], dict[str, str]]:
    """The kept pairs of one video, and ``{pair_id: reason}`` for the dropped ones.

    One prompt is drawn per (perturbation, difficulty), dropped or not, so that a change of
    filters does not change the prompts of the pairs that stay.
    """
    kept, dropped = [], {}
    for rejected in record.rejected:
        prompt = rng.choice(list(prompts))
        pid = pair_id(record.video_id, rejected["perturbation"], rejected["difficulty"])
        # A response the backend's clean-up found unusable (MiMo-VL without an opening sentence,
        # SPEC §2.5) drops its pairs for that reason, before the filters.
        reason = (record.extra.get("chosen_unusable") or rejected.get("unusable")
                  or drop_reason(record.chosen, rejected["text"], rejected["perturbation"], filters))
        if reason is not None:
            dropped[pid] = reason
            continue
        kept.append(
            Pair(
                pair_id=pid, video_id=record.video_id, video_path=record.video_path, prompt=prompt,
                chosen=record.chosen.strip(), rejected=rejected["text"].strip(),
                perturbation=rejected["perturbation"], difficulty=int(rejected["difficulty"]),
                kept_indices=list(rejected["kept_indices"]), generator=record.generator,
                extra={"num_clips": len(record.clip_captions)},
            )
        )
    return kept, dropped
