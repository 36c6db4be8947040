"""``contextual``: the paper's captioner (SPEC §2) -- contextual clip captions, then summaries.

Clip 0 is captioned alone from its two keyframes; clip i > 0 from clip i-1 (context) and
clip i, four frames in that order, and the final caption is cut out of the answer
(``temple_core.generation.captions``). The chosen response summarises the clip captions in
order; each rejected response summarises the caption list of one (perturbation, difficulty).

``level: caption`` (the released default) perturbs the caption list: clip captions are
computed once. ``level: frames`` perturbs the clips themselves and captions the perturbed
sequence (each clip in the context of the clip now before it), then summarises that; clip
pairs that occur in the original order too are captioned once.

Batching: the clip-caption requests of every video in the call go to the backend together
(greedy); then the summaries of one video (chosen + every perturbation x difficulty) go
together, sampled with the video's own seed, so a video's texts do not depend on the other
videos of its batch.
"""

from __future__ import annotations

from typing import Any

import attrs

from temple_core.contracts import CaptionGenerator
from temple_core.generation import prompts
from temple_core.generation.captions import extract_caption
from temple_core.generation.plan import keyframes_of, per_video_rngs, plan_variants
from temple_core.hookspecs import hookimpl
from temple_core.records import CaptionRecord, Rejected

# A clip-caption request: (index of the context clip or None, index of the clip).
Request = tuple[int | None, int]


def _has_captions(instance, attribute, value):
    if value is not None and "{captions}" not in value:
        raise ValueError("must contain '{captions}' where the clip captions go")


class Contextual(CaptionGenerator):
    """The paper's captioner: contextual clip captions (4 frames), then ordered / perturbed summaries."""

    needs_backend = True

    @attrs.define(kw_only=True, frozen=True)
    class Options:
        #: ``caption``: perturb the clip captions (released); ``frames``: perturb the clips and re-caption. (SPEC §2)
        level: str = attrs.field(default="caption", validator=attrs.validators.in_(["caption", "frames"]))
        #: Prompt for clip 0 (its two keyframes); null: the project's built-in prompt.
        first_clip_prompt: str | None = None
        #: Prompt for clip i > 0 (clip i-1's and clip i's keyframes); null: built-in.
        next_clip_prompt: str | None = None
        #: Summary prompt with ``{captions}``; null: built-in.
        summary_prompt: str | None = attrs.field(default=None, validator=_has_captions)
        #: Longest clip-caption answer (clip captions are decoded greedily).
        clip_max_new_tokens: int = attrs.field(default=1024, validator=attrs.validators.ge(1))

    def __init__(self, options: "Contextual.Options | None" = None):
        self.options = options or Contextual.Options()

    # -- conversations ---------------------------------------------------------------------
    def clip_conversation(self, clips: list[list], request: Request) -> list[dict[str, Any]]:
        context, index = request
        o = self.options
        if context is None:
            frames, text = clips[index], o.first_clip_prompt or prompts.FIRST_CLIP_PROMPT
        else:
            frames, text = [*clips[context], *clips[index]], o.next_clip_prompt or prompts.NEXT_CLIP_PROMPT
        content = [{"type": "image", "image": f} for f in frames] + [{"type": "text", "text": text}]
        return [{"role": "user", "content": content}]

    def summary_conversation(self, captions: list[str]) -> list[dict[str, Any]]:
        text = prompts.summary_prompt(captions, self.options.summary_prompt or prompts.SUMMARY_PROMPT)
        return [{"role": "user", "content": [{"type": "text", "text": text}]}]

    @staticmethod
    def requests_for(order: list[int]) -> list[Request]:
        """The caption requests of a clip sequence: the first alone, each next after its predecessor."""
        return [(None if j == 0 else order[j - 1], i) for j, i in enumerate(order)]

    # -- generation ------------------------------------------------------------------------
    def generate(self, videos, backend, perturbations, difficulties, rng, *, sampling=None, seeds=None) -> list[CaptionRecord]:
        if backend is None:
            from temple_core.errors import RecipeError

            raise RecipeError("generate.backend", "the contextual captioner needs a backend")
        from temple_core.video.source import VideoSource

        rngs = per_video_rngs(rng, len(videos))
        seeds = list(seeds) if seeds is not None else [None] * len(videos)
        jobs = []
        for video, video_rng in zip(videos, rngs):
            keyframes = keyframes_of(video)
            frames = VideoSource(video.path).read_frames([i for pair in keyframes for i in pair])
            clips, at = [], 0
            for pair in keyframes:
                clips.append(frames[at : at + len(pair)])
                at += len(pair)
            variants = plan_variants(len(clips), perturbations, difficulties, video_rng)
            requests = list(self.requests_for(list(range(len(clips)))))
            if self.options.level == "frames":
                for v in variants:
                    requests += [r for r in self.requests_for(v.kept_indices) if r not in requests]
            jobs.append({"video": video, "clips": clips, "variants": variants, "requests": requests})

        # Every clip caption of every video in one batched call (greedy: batching cannot change them).
        conversations = [self.clip_conversation(job["clips"], r) for job in jobs for r in job["requests"]]
        answers = backend.chat(conversations, max_new_tokens=self.options.clip_max_new_tokens, do_sample=False)
        if len(answers) != len(conversations):
            from temple_core.errors import TempleError

            raise TempleError(f"backend {backend.describe()} returned {len(answers)} answers for {len(conversations)} conversations")
        at = 0
        for job in jobs:
            n = len(job["requests"])
            job["answers"] = dict(zip(job["requests"], answers[at : at + n]))
            at += n

        return [self._summarise(job, backend, sampling, seed) for job, seed in zip(jobs, seeds)]

    def _summarise(self, job, backend, sampling, seed) -> CaptionRecord:
        video, variants, answers = job["video"], job["variants"], job["answers"]
        caption_of = {r: extract_caption(a) for r, a in answers.items()}
        captions = [caption_of[r] for r in self.requests_for(list(range(len(job["clips"]))))]
        if self.options.level == "frames":
            lists = [[caption_of[r] for r in self.requests_for(v.kept_indices)] for v in variants]
        else:
            lists = [[captions[i] for i in v.kept_indices] for v in variants]
        conversations = [self.summary_conversation(captions)] + [self.summary_conversation(c) for c in lists]
        kwargs = {}
        if sampling is not None:
            kwargs = {
                "max_new_tokens": sampling.max_new_tokens, "do_sample": sampling.do_sample,
                "temperature": sampling.temperature, "top_p": sampling.top_p,
                "repetition_penalty": sampling.repetition_penalty,
            }
        texts = backend.chat(conversations, seed=seed, **kwargs)
        rejected = []
        for variant, caption_list, text in zip(variants, lists, texts[1:]):
            row = Rejected(variant.perturbation, variant.difficulty, variant.kept_indices, text.strip()).to_dict()
            if self.options.level == "frames":
                row["clip_captions"] = caption_list  # the re-captioned perturbed sequence
            rejected.append(row)
        return CaptionRecord(
            video_id=video.video_id, video_path=video.path, generator=backend.describe(),
            clip_captions=captions, chosen=texts[0].strip(), rejected=rejected,
            extra={
                "captioner": "contextual", "level": self.options.level,
                "clip_answers": [answers[r] for r in self.requests_for(list(range(len(job["clips"]))))],
            },
        )


@hookimpl
def register_caption_generators(register):
    register("contextual", Contextual)
