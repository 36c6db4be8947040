"""Held-out means held out: the videos of a run, and the check that evaluation data avoids them.

A score on videos the model was trained on measures memory, not temporal understanding, so an
evaluator on held-out videos refuses any video this run selected from or trained on: the
inputs of its ``select`` stage, the videos of its pairs, and every video of every train
stage's data file (another run's pairs, SFT samples). Files are compared by real path, and
files of equal size also byte for byte (a copy in another folder is the same video).
"""

from __future__ import annotations

import filecmp
import os
from pathlib import Path

from temple_core.errors import RecipeError
from temple_core.store import iter_jsonl


def _real(path: str | Path) -> str:
    return os.path.realpath(os.path.expanduser(str(path)))


def training_videos(ctx) -> dict[str, str]:
    """``{real path: where this run uses it}`` (``ctx``: the stage context)."""
    layout = ctx.layout
    out: dict[str, str] = {}
    for record in iter_jsonl(layout.videos):
        out.setdefault(_real(record["path"]), "an input video of this run (select/videos.jsonl)")
    for pair in iter_jsonl(layout.pairs):
        out.setdefault(_real(pair["video_path"]), "a video of this run's pairs (generate/pairs.jsonl)")
    train = ctx.recipe.train
    if train is not None:
        from temple_core.stages.train import stage_data

        for stage in train.stages:
            if stage.data is None:
                continue  # this run's own pairs: counted above
            where = f"a training video of train.stages[{stage.index}] ({stage.data})"
            kind, items = stage_data(ctx, stage)
            for item in items:
                for video in ([item.video_path] if kind == "pairs" else item["videos"]):
                    out.setdefault(_real(video), where)
    return out


def _same_content(a: str, b: str) -> bool:
    """Byte for byte (only asked of files of equal size; stops at the first difference)."""
    try:
        return filecmp.cmp(a, b, shallow=False)
    except OSError:
        return False


def check_heldout(videos: list[str | Path], training: dict[str, str], where: str) -> None:
    """Raise ``RecipeError`` at ``where`` when any of ``videos`` is one of ``training``."""
    clashes = []
    sizes: dict[int, list[str]] = {}
    for path in training:
        try:
            sizes.setdefault(os.path.getsize(path), []).append(path)
        except OSError:
            continue
    for video in videos:
        real = _real(video)
        if real in training:
            clashes.append((str(video), training[real]))
            continue
        try:
            same_size = sizes.get(os.path.getsize(real), [])
        except OSError:
            continue
        for other in same_size:
            if _same_content(real, other):
                clashes.append((str(video), f"a copy of {other}, {training[other]}"))
                break
    if clashes:
        first, why = clashes[0]
        more = f" (and {len(clashes) - 1} more)" if len(clashes) > 1 else ""
        raise RecipeError(
            where,
            f"{len(clashes)} held-out video(s) are videos this run trains on: {first} is {why}{more}; "
            "evaluate on videos the model never saw",
        )
