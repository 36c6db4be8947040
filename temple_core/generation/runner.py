"""The generate stage's work loop: shard, batch, caption, pair, write, merge (resumable).

Per video the stage writes its pairs first and then its ``captions.jsonl`` line, which is
the video's *done* marker: a run killed in between re-does that video, and its pairs (same
seed, same ids) are deduplicated by ``pair_id`` when the shards are merged.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any

from temple_core.distributed import shard
from temple_core.errors import TempleError
from temple_core.generation.pairs import make_pairs
from temple_core.generation.plan import video_rng, video_seed
from temple_core.generation.prompts import PAIR_PROMPTS, one_of, read_prompt_lines
from temple_core.records import CaptionRecord, VideoRecord
from temple_core.store import RunLayout, ShardedJsonl, read_jsonl, read_records

log = logging.getLogger(__name__)


def selected_videos(layout: RunLayout) -> list[VideoRecord]:
    path = layout.videos
    if not path.is_file():
        raise TempleError(f"{path} not found: run the select stage first (temple run RECIPE --stages select)")
    records = read_records(path, VideoRecord.from_dict, required=("video_id", "path", "status"))
    kept = [r for r in records if r.status == "kept"]
    if records and not kept:
        raise TempleError(f"{path}: select kept none of the {len(records)} videos, nothing to caption ({_why_none(records)})")
    return kept


def _why_none(records: list[VideoRecord]) -> str:
    """What selection said about videos it kept none of, from the select stage's own summary:
    unreadable ones (first few named), rejection reasons counted (most frequent first)."""
    from temple_core.stages.select import summarize

    s = summarize([r.to_dict() for r in records])
    parts = []
    if s["error"]:
        named = "; ".join(s["errors"][:3])
        parts.append(f"{s['error']} could not be read -- {named}{'; ...' if s['error'] > 3 else ''}")
    if s["rejected"]:
        reasons = sorted(s["reasons"].items(), key=lambda kv: -kv[1])
        parts.append(f"{s['rejected']} rejected -- " + ", ".join(f"{k}: {v}" for k, v in reasons))
    return "; ".join(parts) + "; see docs/selection.md for the rules and their recipe keys"


def _generate(captioner, videos, backend, perturbations, difficulties, seed, sampling):
    """Call the captioner as its contract says (:class:`temple_core.contracts.CaptionGenerator`):
    one random stream per video (so batching never changes a video's perturbations), the
    summary ``sampling`` settings and one sampling seed per video."""
    rngs = [video_rng(seed, v.video_id, "perturb") for v in videos]
    seeds = [video_seed(seed, v.video_id) for v in videos]
    records = captioner.generate(videos, backend, perturbations, difficulties, rngs, sampling=sampling, seeds=seeds)
    if len(records) != len(videos):
        raise TempleError(f"captioner returned {len(records)} records for {len(videos)} videos")
    return [r if isinstance(r, CaptionRecord) else CaptionRecord.from_dict(r) for r in records]


class _Progress:
    """tqdm bar on the main process: videos, pairs kept / dropped, generated tokens per second."""

    def __init__(self, total: int, enabled: bool, tokenizer=None):
        self.bar = None
        # A multimodal processor wraps its tokenizer; its own __call__ expects images first.
        self.tokenizer = getattr(tokenizer, "tokenizer", tokenizer)
        self.kept = self.dropped = self.tokens = 0
        self.started = time.time()
        if enabled and total:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc="generate", unit="video")

    def _count(self, texts: list[str]) -> int:
        if self.tokenizer is not None:
            try:
                return sum(len(self.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)
            except Exception:  # a processor without a plain text call: fall back to words
                pass
        return sum(len(t.split()) for t in texts)

    def update(self, record: CaptionRecord, kept: int, dropped: int) -> None:
        self.kept += kept
        self.dropped += dropped
        if self.bar is None:
            return
        self.tokens += self._count([*record.clip_captions, record.chosen, *(r["text"] for r in record.rejected)])
        rate = self.tokens / max(time.time() - self.started, 1e-6)
        self.bar.set_postfix(pairs=self.kept, dropped=self.dropped, tok_s=f"{rate:.1f}")
        self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def summarize(captions: list[dict[str, Any]], pairs: list[dict[str, Any]]) -> dict[str, Any]:
    by_difficulty: Counter = Counter()
    by_perturbation: dict[str, Counter] = {}
    for p in pairs:
        by_difficulty[str(p["difficulty"])] += 1
        by_perturbation.setdefault(p["perturbation"], Counter())[str(p["difficulty"])] += 1
    dropped = Counter(reason for c in captions for reason in (c.get("dropped") or {}).values())
    generators = sorted({c.get("generator", "?") for c in captions})
    # The decoding settings that really ran (the checkpoint's where the recipe left them unset).
    generation = []
    for c in captions:
        if c.get("generation") and c["generation"] not in generation:
            generation.append(c["generation"])
    return {
        "videos": len(captions),
        "pairs": len(pairs),
        "pairs_by_difficulty": dict(sorted(by_difficulty.items(), key=lambda kv: -int(kv[0]))),
        "pairs_by_perturbation": {k: dict(v) for k, v in by_perturbation.items()},
        "dropped": dict(dropped),
        "generator": generators[0] if len(generators) == 1 else generators,
        **({"generation": generation[0] if len(generation) == 1 else generation} if generation else {}),
    }


def run_stage(ctx) -> dict[str, Any]:
    config = ctx.recipe.generate
    seed = int(getattr(ctx.recipe, "seed", 0) or 0)
    layout = ctx.layout
    videos = selected_videos(layout)
    captions = ShardedJsonl.at(layout.captions, key="video_id", rank=ctx.rank, world_size=ctx.world_size)
    pairs = ShardedJsonl.at(layout.pairs, key="pair_id", rank=ctx.rank, world_size=ctx.world_size)
    done = captions.done_keys()
    mine = [v for v in shard(videos, ctx.rank, ctx.world_size) if v.video_id not in done]

    captioner = config.captioner.build(ctx.plugins)
    backend = None
    if ctx.plugins.get("caption_generators", config.captioner.name).capability("needs_backend"):
        if config.backend is None:
            raise TempleError(f"generate.backend: captioner '{config.captioner.name}' needs a backend")
        backend = config.backend.build(ctx.plugins)
    perturbations = [(spec.name, spec.build(ctx.plugins)) for spec in config.perturbations]
    prompts = list(one_of(config.prompts, config.prompts_file, PAIR_PROMPTS, read=read_prompt_lines))
    written = {r["pair_id"] for r in pairs.records()} if mine else set()

    progress = _Progress(len(mine), ctx.progress, getattr(backend, "tokenizer", None) if backend is not None else None)
    try:
        step = config.videos_per_batch
        for start in range(0, len(mine), step):
            batch = mine[start : start + step]
            for record in _generate(captioner, batch, backend, perturbations, config.difficulties, seed, config.sampling):
                kept, dropped = make_pairs(record, prompts, config.filters, video_rng(seed, record.video_id, "prompt"))
                for pair in kept:
                    if pair.pair_id not in written:  # an interrupted earlier run wrote it already
                        pairs.append(pair.to_dict())
                        written.add(pair.pair_id)
                line = record.to_dict()
                line["dropped"] = dropped  # why each missing pair was dropped, for the summary and report
                captions.append(line)  # the video's done marker: written last
                progress.update(record, len(kept), len(dropped))
    finally:
        progress.close()

    ctx.barrier()
    summary: dict[str, Any] = {}
    if ctx.is_main:
        order = [v.video_id for v in videos]
        captions.merge(order=order)
        merged = read_jsonl(captions.merged_path)
        pair_order = [f"{c['video_id']}-{r['perturbation']}-r{r['difficulty']}" for c in merged for r in c["rejected"]]
        pairs.merge(order=pair_order)
        merged_pairs = read_jsonl(pairs.merged_path)
        summary = summarize(merged, merged_pairs)
        _export(ctx, config, merged_pairs)
    ctx.barrier()
    return summary


def _export(ctx, config, pairs: list[dict[str, Any]]) -> None:
    if not config.exporters:
        return
    from temple_core.records import Pair

    records = [Pair.from_dict(p) for p in pairs]
    for spec in config.exporters:
        exporter = spec.build(ctx.plugins)
        out = ctx.layout.export(spec.name, ctx.plugins.get("exporters", spec.name).capability("suffix"))
        count = exporter.export(records, out)
        log.info("exported %d pairs to %s", count, out)
