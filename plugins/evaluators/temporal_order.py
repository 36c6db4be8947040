"""``temporal_order``: does the model prefer the description of a video in its true order?

For each held-out video, its clip captions told in order ("First, ... Then, ... Finally, ...")
are scored by the checkpoint against the same captions dropped, shuffled and reversed at each
difficulty r (the perturbation plugins, SPEC §3) -- the question TEMPLE's DPO pairs ask, on
videos the model never trained on. Each (video, perturbation, r) is won when the correct
description is more likely than the perturbed one (a tie counts half). Two likelihoods are
reported: the sum of token log-probabilities, and the per-token mean (length-normalised:
``drop`` makes texts shorter, and a shorter text is more likely under any model, so the raw
sum is biased against the correct order for ``drop``). The headline score is the
length-normalised accuracy over every perturbation x r; chance is 0.5.

Held-out videos: ``videos`` (files, folders, globs, built-in samples) and/or ``from_run``
(another run's kept videos). None may be a video this run selected from or trained on.
Clip captions, per video (``captions: auto`` tries them in this order):

* ``ground_truth`` -- a sidecar ``<video>.json`` beside the video:
  ``{"events": [{"description": "...", "start": s, "end": e}, ...]}`` (start/end optional),
  one entry per event in time order. A synthetic world with known events writes these.
* ``run`` -- the clip captions ``from_run`` wrote (``generate/captions.jsonl``).
* ``captioner`` -- this run's captioner (``generate.captioner`` with ``generate.backend``)
  on the video's clips as this run's ``select`` section (or its defaults) finds them.

Captions are prepared once (``eval/_data/<label>/clips.*.jsonl``) and shared by every checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import attrs

from temple_core.config import ComponentSpec, component_field, path_field
from temple_core.contracts import Evaluator
from temple_core.errors import RecipeError
from temple_core.evaluation import EvalResult, EvaluatorOptions
from temple_core.evaluation.heldout import check_heldout
from temple_core.evaluation.stats import cell, clustered_interval
from temple_core.evaluation.texts import ordered_description
from temple_core.evaluation.truth import read_sidecar, sidecar_of
from temple_core.evaluation.videos import video_item
from temple_core.hookspecs import hookimpl
from temple_core.recipe import VideosConfig, resolve_videos, video_ids
from temple_core.store import ShardedJsonl, iter_jsonl

DEFAULT_PROMPT = "Describe what happens in this video, in the order it happens."


def _difficulties(instance, attribute, value):
    if not value or any(r < 1 for r in value) or len(set(value)) != len(value):
        raise ValueError(f"must be distinct difficulties >= 1, got {value}")


class TemporalOrder(Evaluator):
    """Correct-order description vs its drop/shuffle/reverse perturbations, by log-likelihood."""

    needs_backend = True
    shards_items = True

    @attrs.define(kw_only=True, frozen=True)
    class Options(EvaluatorOptions):
        #: Held-out videos: files, folders, globs (``paths``) and built-in samples (``samples``).
        videos: VideosConfig = attrs.Factory(VideosConfig)
        #: Another run directory: its kept videos (``select/videos.jsonl``) are held-out videos too,
        #: and its clip captions (``generate/captions.jsonl``) can be used.
        from_run: str | None = path_field(None, kind="dir")
        #: Where clip captions come from: ``ground_truth`` (sidecar ``<video>.json``), ``run`` (from_run's
        #: captions), ``captioner`` (this run's generate.captioner), ``auto`` (the first available, in that order).
        captions: Literal["auto", "ground_truth", "run", "captioner"] = "auto"
        #: The perturbations scored against the correct order (SPEC §3).
        perturbations: list[ComponentSpec] = component_field("perturbations", ["drop", "shuffle", "reverse"])
        #: Difficulty factors r (SPEC §3).
        difficulties: list[int] = attrs.field(factory=lambda: [16, 8, 4, 2], validator=_difficulties)
        #: The instruction the descriptions answer.
        prompt: str = DEFAULT_PROMPT
        #: Videos with fewer clips are skipped (one clip has no order).
        min_clips: int = attrs.field(default=2, validator=attrs.validators.ge(2))
        #: Score at most this many videos (the first ones); null: all.
        max_videos: int | None = None
        #: A blind baseline: black frames (same count, size and rate) instead of the video; a model
        #: must then be at chance, or the texts leak the answer.
        blind: bool = False

    def __init__(self, options: "TemporalOrder.Options | None" = None):
        self.options = options or TemporalOrder.Options()

    # -- the videos and their clip captions ------------------------------------------------
    def videos(self, request) -> list[dict[str, Any]]:
        """``[{video_id, path, run_captions}]``: every held-out video, checked against the training videos."""
        o = self.options
        out: list[dict[str, Any]] = []
        if o.videos.paths or o.videos.samples:
            try:
                paths = resolve_videos(o.videos, request.data_dir, materialize=True)
            except RecipeError as exc:
                raise RecipeError(f"{request.where}.{exc.path}", exc.message) from None
            out += [{"video_id": vid, "path": str(p), "run_captions": None} for vid, p in zip(video_ids(paths), paths)]
        if o.from_run:
            run = Path(o.from_run).expanduser()
            captions = {c["video_id"]: c.get("clip_captions") for c in iter_jsonl(run / "generate" / "captions.jsonl")}
            listing = run / "select" / "videos.jsonl"
            if not listing.is_file():
                raise RecipeError(f"{request.where}.from_run", f"{listing} not found: not a run directory with a select stage")
            taken = {v["video_id"] for v in out}
            for record in iter_jsonl(listing):
                if record.get("status") == "kept" and record["video_id"] not in taken:
                    out.append({"video_id": record["video_id"], "path": record["path"], "run_captions": captions.get(record["video_id"]),
                                "record": record})
        if not out:
            raise RecipeError(request.where, "no held-out videos: give videos (paths or samples) or from_run")
        if o.max_videos is not None:
            out = out[: o.max_videos]
        key = f"{request.where}.{'videos' if o.videos.paths or o.videos.samples else 'from_run'}"
        check_heldout([v["path"] for v in out], request.run.training_videos(), key)
        return out

    def _captions(self, request, video: dict[str, Any]) -> dict[str, Any]:
        """``{source, captions}`` or ``{skipped: reason}`` for one video."""
        o = self.options
        sidecar = sidecar_of(video["path"])
        wants = o.captions
        if wants in ("auto", "ground_truth") and sidecar.is_file():
            return {"source": "ground_truth", "captions": read_sidecar(sidecar)}
        if wants == "ground_truth":
            raise RecipeError(f"{request.where}.captions", f"ground_truth: no sidecar {sidecar} for {video['path']}")
        if wants in ("auto", "run") and video.get("run_captions"):
            return {"source": f"run {o.from_run}", "captions": list(video["run_captions"])}
        if wants == "run":
            raise RecipeError(f"{request.where}.captions", f"run: {o.from_run or 'no from_run'} has no clip captions for {video['video_id']}")
        return self._caption_with_run_captioner(request, video)

    def _caption_with_run_captioner(self, request, video: dict[str, Any]) -> dict[str, Any]:
        from temple_core.records import VideoRecord

        captioner, backend = request.run.captioner()
        record = video.get("record")
        if record is None:
            record = self._select(request, video).to_dict()
        if record.get("status") != "kept":
            return {"skipped": f"selection: {record.get('status')} ({record.get('reason')})"}
        out = captioner.generate([VideoRecord.from_dict(record)], backend, [], [], [request.rng(video["video_id"], "captions")])
        return {"source": f"captioner {getattr(captioner, 'describe', lambda: type(captioner).__name__)()}",
                "captions": list(out[0].clip_captions)}

    def _select(self, request, video):
        """Selection (SPEC §1) of a held-out video, with this run's select section or its defaults."""
        if getattr(self, "_selector", None) is None:
            from temple_core.config import Structurer
            from temple_core.stages.select import Config as SelectConfig, Selector

            config = request.run.recipe.select
            if config is None:  # the section's defaults, its components built as a recipe would
                config = Structurer(request.plugins).structure(SelectConfig, {}, "select")
            encoder = config.encoder.build(request.plugins)
            encoder.encode([])
            self._selector = Selector(config, config.shot_detector.build(request.plugins), encoder)
        return self._selector.select(video["video_id"], Path(video["path"]))

    # -- scoring ----------------------------------------------------------------------------
    def score(self, request) -> None:
        from temple_core.generation.plan import plan_variants

        o = self.options
        videos = request.share(self.videos(request))
        done = request.items.done_keys()
        todo = [v for v in videos if v["video_id"] not in done]
        if not todo:
            return
        prepared = ShardedJsonl(request.data_dir, "clips", key="video_id", rank=request.rank, world_size=request.world_size)
        cached = {r["video_id"]: r for r in prepared.records()}
        perturbations = [(spec.name, spec.build(request.plugins)) for spec in o.perturbations]
        for video in todo:
            vid = video["video_id"]
            prep = cached.get(vid)
            if prep is None:
                prep = {"video_id": vid, "path": video["path"], **self._captions(request, video)}
                prepared.append(prep)
            if "skipped" in prep:
                request.items.add({"item_id": vid, "video": video["path"], "skipped": prep["skipped"]})
                continue
            captions = prep["captions"]
            if len(captions) < o.min_clips:
                request.items.add({"item_id": vid, "video": video["path"], "skipped": f"{len(captions)} clip(s) < min_clips {o.min_clips}"})
                continue
            correct = ordered_description(captions)
            variants = []
            for v in plan_variants(len(captions), perturbations, o.difficulties, request.rng(vid, "perturb")):
                text = ordered_description([captions[i] for i in v.kept_indices])
                variants.append({"perturbation": v.perturbation, "difficulty": v.difficulty, "kept_indices": v.kept_indices,
                                 "text": text, "identical": text == correct})
            texts = [correct] + sorted({v["text"] for v in variants if not v["identical"]})
            shown = video_item(video["path"], request.frames, o.blind)
            conversation = [{"role": "user", "content": [shown, {"type": "text", "text": o.prompt}]}]
            scores = dict(zip(texts, request.backend.score_texts(conversation, texts, batch_size=request.batch_size)))
            right = scores[correct]
            for v in variants:
                if v["identical"]:
                    continue
                s = scores[v["text"]]
                v.update(logprob=s.logprob, tokens=s.tokens, win_sum=_win(right.logprob, s.logprob), win_mean=_win(right.mean, s.mean))
            request.items.add({
                "item_id": vid, "video": video["path"], "source": prep["source"], "clips": len(captions), "blind": o.blind,
                "correct": {"text": correct, "logprob": right.logprob, "tokens": right.tokens},
                "variants": [{k: val for k, val in v.items() if k != "text"} for v in variants],
            })

    # -- the figure -------------------------------------------------------------------------
    def result(self, request, records: list[dict]) -> EvalResult:
        scored = [r for r in records if "variants" in r]
        skipped = {r["item_id"]: r["skipped"] for r in records if "skipped" in r}
        metrics: dict[str, Any] = {"chance": 0.5, "videos": len(scored), "skipped": skipped, "blind": self.options.blind,
                                   "identical_skipped": sum(1 for r in scored for v in r["variants"] if v["identical"])}
        headline = None
        for kind, key in (("length_normalised", "win_mean"), ("sum", "win_sum")):
            cells: dict[str, dict[str, Any]] = {}
            for spec in self.options.perturbations:
                for r in self.options.difficulties:
                    outcomes = [v[key] for rec in scored for v in rec["variants"]
                                if v["perturbation"] == spec.name and v["difficulty"] == r and not v["identical"]]
                    cells.setdefault(spec.name, {})[str(r)] = cell(outcomes, request.seed)
                # Pooled over r: several outcomes per video, so the videos are resampled.
                cells[spec.name]["all"] = _pooled(scored, key, request.seed, lambda v, name=spec.name: v["perturbation"] == name)
            overall = _pooled(scored, key, request.seed, lambda v: True)
            metrics[kind] = {"overall": overall, "cells": cells}
            if kind == "length_normalised":
                headline = overall
        return EvalResult(
            score=headline["accuracy"], interval=headline["interval"], n=headline["n"], metrics=metrics,
            metric="length-normalised accuracy over every perturbation x r (correct order more likely; chance 0.5)",
        )


def _pooled(records: list[dict], key: str, seed: int, keep) -> dict[str, Any]:
    """Accuracy over every kept, non-identical outcome, with a video-clustered interval."""
    sums, counts = [], []
    for record in records:
        outcomes = [v[key] for v in record["variants"] if keep(v) and not v["identical"]]
        sums.append(sum(outcomes))
        counts.append(len(outcomes))
    total = sum(counts)
    return {"accuracy": sum(sums) / total if total else None, "interval": clustered_interval(sums, counts, seed), "n": total}


def _win(correct: float, other: float) -> float:
    return 1.0 if correct > other else 0.5 if correct == other else 0.0


@hookimpl
def register_evaluators(register):
    register("temporal_order", TemporalOrder)
