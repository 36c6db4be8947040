"""``event_recall``: does the checkpoint still say *what* happens -- and in which order?

Temporal training must not cost a model its sight: a model that learns to prefer well-ordered
descriptions by forgetting what is in the video would still win ``temporal_order`` items it
can no longer describe. This evaluator asks for descriptions and checks them against the
ground truth of held-out videos (sidecar ``<video>.json``, ``temple_core.evaluation.truth``):

* ``unit: video`` -- the checkpoint describes each whole video (greedy, ``prompt``); the
  score is **event recall**: the share of the video's events whose phrase the description
  contains (whole words, case and punctuation ignored), pooled over videos. Also recorded:
  **precision** (the share of the description's sentences that name an event of the video)
  and **pairwise order** -- over every two mentioned events, the share mentioned in their
  true order (chance 0.5): order measured on generated text, not on likelihoods.
* ``unit: clips`` -- the run's clip captioner (``captioner``, default the paper's
  ``contextual``) captions the video's *true* clips (one per event, keyframes by the
  release's rule), exactly as the generate stage would; the score is the share of clip
  captions that name their event (``metrics.exact``: the share that are exactly the phrase).
  The captioner's summary of those captions is scored like a ``video`` description
  (``metrics.summary``). This is how well the generator captions single events.

Intervals: percentile bootstrap over videos (a video's events are not independent).
"""

from __future__ import annotations

import re
from typing import Any, Literal

import attrs

from temple_core.config import ComponentSpec, component_field
from temple_core.contracts import Evaluator
from temple_core.errors import RecipeError
from temple_core.evaluation import EvalResult, EvaluatorOptions
from temple_core.evaluation.heldout import check_heldout
from temple_core.evaluation.stats import clustered_interval
from temple_core.evaluation.truth import ground_truth_record, mentions, normalise, read_sidecar, sidecar_of
from temple_core.evaluation.videos import video_item
from temple_core.hookspecs import hookimpl
from temple_core.recipe import VideosConfig, resolve_videos, video_ids

DEFAULT_PROMPT = "Describe what happens in this video, in the order it happens."
#: Words that open a sentence of a chronological description, ignored when matching sentences.
_CONNECTIVES = re.compile(r"^(?:first|then|next|after that|afterwards|finally|and)\b[\s,]*")


def description_scores(text: str, phrases: list[str]) -> dict[str, Any]:
    """How a description covers a video's event ``phrases``: found, sentences, sentences that
    name an event, and the mentioned pairs in the true order."""
    positions = mentions(text, phrases)
    found = [p is not None for p in positions]
    sentences = [s for s in (_CONNECTIVES.sub("", normalise(part)) for part in re.split(r"[.;!?\n]+", text)) if s]
    named = sum(1 for s in sentences if any(f" {normalise(p)} " in f" {s} " for p in phrases))
    seen = [(i, at) for i, at in enumerate(positions) if at is not None]
    pairs = [(a, b) for k, a in enumerate(seen) for b in seen[k + 1:]]
    ordered = sum(1 for (i, at), (j, bt) in pairs if (i < j) == (at < bt))
    return {"found": sum(found), "events": len(phrases), "sentences": len(sentences), "named_sentences": named,
            "pairs": len(pairs), "ordered_pairs": ordered, "missing": [p for p, f in zip(phrases, found) if not f]}


def _pooled(records: list[dict], num: str, den: str, seed: int) -> dict[str, Any]:
    sums = [r[num] for r in records]
    counts = [r[den] for r in records]
    total = sum(counts)
    return {"value": sum(sums) / total if total else None, "interval": clustered_interval(sums, counts, seed), "n": total}


class EventRecall(Evaluator):
    """Descriptions (or clip captions) of held-out videos vs their ground-truth events."""

    needs_backend = True
    shards_items = True

    @attrs.define(kw_only=True, frozen=True)
    class Options(EvaluatorOptions):
        #: Held-out videos with ground-truth sidecars: files, folders, globs, built-in samples.
        videos: VideosConfig = attrs.Factory(VideosConfig)
        #: ``video``: describe each whole video; ``clips``: the captioner on its true clips.
        unit: Literal["video", "clips"] = attrs.field(default="video", validator=attrs.validators.in_(["video", "clips"]))
        #: The instruction of ``unit: video``.
        prompt: str = DEFAULT_PROMPT
        #: The clip captioner of ``unit: clips`` (with this checkpoint as its backend).
        captioner: ComponentSpec = component_field("caption_generators", "contextual")
        #: Longest description (``unit: video``; the captioner has its own limits).
        max_new_tokens: int = attrs.field(default=256, validator=attrs.validators.ge(1))
        #: Score at most this many videos (the first ones); null: all.
        max_videos: int | None = None
        #: ``unit: video`` only: black frames (same count, size and rate) instead of the video.
        blind: bool = False

        def __attrs_post_init__(self):
            if self.blind and self.unit == "clips":
                raise ValueError("blind: only with unit: video (the captioner reads the clips itself)")

    def __init__(self, options: "EventRecall.Options | None" = None):
        self.options = options or EventRecall.Options()

    def videos(self, request) -> list[dict[str, Any]]:
        o = self.options
        if not (o.videos.paths or o.videos.samples):
            raise RecipeError(f"{request.where}.videos", "held-out videos with ground truth are required")
        try:
            paths = resolve_videos(o.videos, request.data_dir, materialize=True)
        except RecipeError as exc:
            raise RecipeError(f"{request.where}.{exc.path}", exc.message) from None
        out = [{"video_id": vid, "path": str(p)} for vid, p in zip(video_ids(paths), paths)]
        if o.max_videos is not None:
            out = out[: o.max_videos]
        check_heldout([v["path"] for v in out], request.run.training_videos(), f"{request.where}.videos")
        for v in out:
            if not sidecar_of(v["path"]).is_file():
                raise RecipeError(f"{request.where}.videos", f"{v['path']} has no ground truth ({sidecar_of(v['path'])})")
        return out

    def score(self, request) -> None:
        done = request.items.done_keys()
        todo = [v for v in request.share(self.videos(request)) if v["video_id"] not in done]
        if self.options.unit == "video":
            self._describe(request, todo)
        else:
            self._captions(request, todo)

    def _describe(self, request, todo) -> None:
        o = self.options
        for start in range(0, len(todo), request.batch_size):
            batch = todo[start : start + request.batch_size]
            conversations = [[{"role": "user", "content": [video_item(v["path"], request.frames, o.blind),
                                                           {"type": "text", "text": o.prompt}]}] for v in batch]
            answers = request.backend.chat(conversations, max_new_tokens=o.max_new_tokens, do_sample=False)
            for video, answer in zip(batch, answers):
                phrases = read_sidecar(sidecar_of(video["path"]))
                request.items.add({"item_id": video["video_id"], "video": video["path"], "text": answer,
                                   **description_scores(answer, phrases)})

    def _captions(self, request, todo) -> None:
        captioner = self.options.captioner.build(request.plugins)
        for video in todo:
            record = ground_truth_record(video["path"], video["video_id"])
            phrases = read_sidecar(sidecar_of(video["path"]))
            (out,) = captioner.generate([record], request.backend, [], [], [request.rng(video["video_id"], "captions")])
            captions = list(out.clip_captions)
            named = [bool(mentions(c, [p])[0] is not None) for c, p in zip(captions, phrases)]
            exact = [normalise(c) == normalise(p) for c, p in zip(captions, phrases)]
            summary = description_scores(out.chosen, phrases)
            request.items.add({"item_id": video["video_id"], "video": video["path"], "captions": captions, "truth": phrases,
                               "found": sum(named), "exact": sum(exact), "events": len(phrases), "summary_text": out.chosen,
                               **{f"summary_{k}": v for k, v in summary.items()}})

    def result(self, request, records: list[dict]) -> EvalResult:
        seed = request.seed
        metrics: dict[str, Any] = {"unit": self.options.unit, "videos": len(records), "blind": self.options.blind}
        recall = _pooled(records, "found", "events", seed)
        if self.options.unit == "video":
            metrics.update(precision=_pooled(records, "named_sentences", "sentences", seed),
                           pairwise_order=_pooled(records, "ordered_pairs", "pairs", seed))
            metric = "event recall of the generated descriptions (share of ground-truth events named)"
        else:
            metrics.update(exact=_pooled(records, "exact", "events", seed),
                           summary={"recall": _pooled(records, "summary_found", "summary_events", seed),
                                    "precision": _pooled(records, "summary_named_sentences", "summary_sentences", seed),
                                    "pairwise_order": _pooled(records, "summary_ordered_pairs", "summary_pairs", seed)})
            metric = "clip captions that name their ground-truth event (the captioner on the true clips)"
        return EvalResult(score=recall["value"], interval=recall["interval"], n=recall["n"], metrics=metrics, metric=metric)


@hookimpl
def register_evaluators(register):
    register("event_recall", EventRecall)
