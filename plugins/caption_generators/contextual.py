"""``contextual``: the paper's captioner (SPEC §2) -- contextual clip captions, then summaries.

Clip 0 is captioned alone from its two keyframes; clip i > 0 from clip i-1 (context) and
clip i, in that order, and the final caption is cut out of the answer
(``temple_core.generation.captions``). The chosen response summarises the clip captions in
order; each rejected response summarises the caption list of one (perturbation, difficulty).

How a clip is shown (``clip_input``): by default as the release does, its two keyframes as
**one 2-frame video** through the backend's video path (for Qwen models one temporal patch
group: ``video_grid_thw`` t = 1), at most ``clip_max_pixels`` per frame; ``images`` shows them
as two images instead. Each keyframe is first resized as the release's qwen-vl-utils hands a
frame list on (``clip_presize``), so the backend resizes it a second time, as the release's
processor did: the frame sizes the release's captioner saw, not one resize closer to the
source. Clip captions are decoded with the checkpoint's own generation settings
(``generation_config.json``) and up to 2,048 new tokens (the backend's ``default_max_new_tokens``:
MiMo-VL 8,192), as in the release; ``clip_generation`` overrides any of them. The effective
settings of the clip captions and of the summaries are written into every captions record
(``generation``) and the stage summary: a checkpoint whose config sets ``top_k: 1`` makes
"sampled" summaries greedy, and it shows there.

Summaries go through the backend's ``clean_description`` (MiMo-VL's clean-up, SPEC §2.5): a
response it finds unusable is kept in the record with its reason (``unusable``), and its pairs
are dropped with that reason.

``level: caption`` (the released default) perturbs the caption list: clip captions are
computed once. ``level: frames`` perturbs the clips themselves and captions the perturbed
sequence (each clip in the context of the clip now before it), then summarises that; clip
pairs that occur in the original order too are captioned once.

Batching: with greedy clip captions the requests of every video in the call go to the backend
together; when they sample, each video's go together with the video's own seed. The summaries
of one video (chosen + every perturbation x difficulty) go together, sampled with the video's
seed, so a video's texts never depend on the other videos of its batch.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import attrs
import numpy as np

from temple_core.config import path_field
from temple_core.contracts import CaptionGenerator
from temple_core.generation import prompts
from temple_core.generation.captions import extract_caption
from temple_core.generation.plan import keyframes_of, per_video_rngs, plan_variants
from temple_core.hookspecs import hookimpl
from temple_core.records import CaptionRecord, Rejected

log = logging.getLogger(__name__)

# A clip-caption request: (index of the context clip or None, index of the clip).
Request = tuple[int | None, int]
#: The rate a 2-frame clip video is given (Qwen2.5-VL's ``second_per_grid_ts`` = 2 / 2.0 = 1 s):
#: the release's qwen-vl-utils + processor default for a video given as a list of frames.
CLIP_FPS = 2.0


@attrs.define(kw_only=True, frozen=True)
class ClipGeneration:
    """Decoding of the clip captions; each unset key is the checkpoint's (SPEC §2.1)."""

    #: Sample (true) or decode greedily; null: the checkpoint's.
    do_sample: bool | None = None
    #: Softmax temperature when sampling; null: the checkpoint's.
    temperature: float | None = attrs.field(default=None, validator=attrs.validators.optional(attrs.validators.gt(0.0)))
    #: Nucleus sampling mass; null: the checkpoint's.
    top_p: float | None = attrs.field(
        default=None, validator=attrs.validators.optional([attrs.validators.gt(0.0), attrs.validators.le(1.0)])
    )
    #: Sample among the k likeliest tokens (0: off); null: the checkpoint's.
    top_k: int | None = attrs.field(default=None, validator=attrs.validators.optional(attrs.validators.ge(0)))
    #: Penalty on repeated tokens; null: the checkpoint's.
    repetition_penalty: float | None = attrs.field(default=None, validator=attrs.validators.optional(attrs.validators.gt(0.0)))


def _settings_of(backend, **settings) -> dict[str, Any]:
    """The backend's effective decoding settings (a backend without the method: as given)."""
    effective = getattr(backend, "generation_settings", None)
    if effective is None:
        return {**settings, "greedy": not settings.get("do_sample")}
    return effective(**settings)


class Contextual(CaptionGenerator):
    """The paper's captioner: contextual clip captions (4 frames), then ordered / perturbed summaries."""

    needs_backend = True

    @attrs.define(kw_only=True, frozen=True)
    class Options:
        #: ``caption``: perturb the clip captions (released); ``frames``: perturb the clips and re-caption. (SPEC §2)
        level: str = attrs.field(default="caption", validator=attrs.validators.in_(["caption", "frames"]))
        #: How a clip's two keyframes are shown: ``video`` (one 2-frame video, the backend's video
        #: path: the release's) or ``images`` (two images). (SPEC §2.1)
        clip_input: Literal["video", "images"] = attrs.field(default="video", validator=attrs.validators.in_(["video", "images"]))
        #: Pixels per frame at most for the clips' frames (the release's processor ``max_pixels``
        #: 512 x 28 x 28; SPEC §2.1). Backends with fixed tiles (InternVL) ignore it.
        clip_max_pixels: int = attrs.field(default=401408, validator=attrs.validators.ge(784))
        #: Each keyframe before the backend sees it: ``qwen_vl_utils`` resizes it first as the
        #: release's qwen-vl-utils does for a video given as frames (multiples of 28 within its
        #: image limits, PIL bicubic), so frames over ``clip_max_pixels`` are resized twice, as
        #: there (720p: 476 x 840); ``none``: the decoded frame as it is (one resize). See docs/method.md.
        clip_presize: Literal["qwen_vl_utils", "none"] = attrs.field(
            default="qwen_vl_utils", validator=attrs.validators.in_(["qwen_vl_utils", "none"])
        )
        #: Prompt for clip 0; ``{clip}`` marks where its frames go (else before the text). Null: built-in. (SPEC §2.6)
        first_clip_prompt: str | None = attrs.field(default=None, validator=prompts.prompt_validator("first_clip"))
        #: A UTF-8 file holding ``first_clip_prompt`` (SPEC §2.6).
        first_clip_prompt_file: str | None = path_field(None, validator=prompts.prompt_file_validator("first_clip"))
        #: Prompt for clip i > 0; ``{previous}`` and ``{clip}`` mark where clip i-1's and clip i's
        #: frames go (neither: both before the text, in that order). Null: built-in. (SPEC §2.6)
        next_clip_prompt: str | None = attrs.field(default=None, validator=prompts.prompt_validator("next_clip"))
        #: A UTF-8 file holding ``next_clip_prompt`` (SPEC §2.6).
        next_clip_prompt_file: str | None = path_field(None, validator=prompts.prompt_file_validator("next_clip"))
        #: Summary prompt; must contain ``{captions}``. Null: built-in. (SPEC §2.6)
        summary_prompt: str | None = attrs.field(default=None, validator=prompts.prompt_validator("summary"))
        #: A UTF-8 file holding ``summary_prompt`` (SPEC §2.6).
        summary_prompt_file: str | None = path_field(None, validator=prompts.prompt_file_validator("summary"))
        #: One caption of the summary prompt's list: ``{index}`` (from 1) and ``{caption}`` (required). (SPEC §2.6)
        caption_line: str = attrs.field(default=prompts.CAPTION_LINE, validator=prompts.prompt_validator("caption_line"))
        #: Longest clip-caption answer; null: the backend's default (SPEC §2.1: 2,048; MiMo-VL 8,192).
        clip_max_new_tokens: int | None = attrs.field(default=None, validator=attrs.validators.optional(attrs.validators.ge(1)))
        #: Decoding of the clip captions; unset keys: the checkpoint's generation config (SPEC §2.1).
        clip_generation: ClipGeneration = attrs.Factory(ClipGeneration)

        def __attrs_post_init__(self):
            for name in ("first_clip_prompt", "next_clip_prompt", "summary_prompt"):
                if getattr(self, name) is not None and getattr(self, f"{name}_file") is not None:
                    raise ValueError(f"give {name} or {name}_file, not both")

    def __init__(self, options: "Contextual.Options | None" = None):
        self.options = o = options or Contextual.Options()
        # Prompt files are read once, here, and checked again (a file edited since validation).
        self.prompts = {
            "first_clip": prompts.one_of(o.first_clip_prompt, o.first_clip_prompt_file, prompts.FIRST_CLIP_PROMPT),
            "next_clip": prompts.one_of(o.next_clip_prompt, o.next_clip_prompt_file, prompts.NEXT_CLIP_PROMPT),
            "summary": prompts.one_of(o.summary_prompt, o.summary_prompt_file, prompts.SUMMARY_PROMPT),
        }
        for kind, text in self.prompts.items():
            if problem := prompts.template_problem(text, kind):
                from temple_core.errors import RecipeError

                raise RecipeError(f"generate.captioner.{kind}_prompt", problem)

    # -- conversations ---------------------------------------------------------------------
    def presize(self, frames: list) -> list:
        """The keyframes as the backend is given them (``clip_presize``)."""
        if self.options.clip_presize == "none":
            return list(frames)
        from temple_core.models.vision_tokens import qwen_vl_utils_frame

        return [qwen_vl_utils_frame(np.asarray(f)) for f in frames]

    def clip_items(self, frames: list) -> list[dict[str, Any]]:
        """One clip's keyframes as content items: one video of its frames, or one image each."""
        bound = self.options.clip_max_pixels
        if self.options.clip_input == "video":
            return [{"type": "video", "frames": list(frames), "fps": CLIP_FPS, "max_pixels": bound}]
        return [{"type": "image", "image": f, "max_pixels": bound} for f in frames]

    def clip_conversation(self, clips: list[list], request: Request) -> list[dict[str, Any]]:
        context, index = request
        if context is None:
            visuals, text = {"clip": self.clip_items(clips[index])}, self.prompts["first_clip"]
        else:
            visuals = {"previous": self.clip_items(clips[context]), "clip": self.clip_items(clips[index])}
            text = self.prompts["next_clip"]
        pieces = prompts.split_visuals(text)
        if len(pieces) == 1:  # no placeholders: the frames first (previous clip, then this one), then the text
            content = [item for items in visuals.values() for item in items] + [{"type": "text", "text": text}]
        else:
            content = []
            for k, piece in enumerate(pieces):
                if k % 2:
                    content += visuals[piece]
                elif piece:
                    content.append({"type": "text", "text": piece})
        return [{"role": "user", "content": content}]

    def summary_conversation(self, captions: list[str]) -> list[dict[str, Any]]:
        text = prompts.summary_prompt(captions, self.prompts["summary"], self.options.caption_line)
        return [{"role": "user", "content": [{"type": "text", "text": text}]}]

    @staticmethod
    def requests_for(order: list[int]) -> list[Request]:
        """The caption requests of a clip sequence: the first alone, each next after its predecessor."""
        return [(None if j == 0 else order[j - 1], i) for j, i in enumerate(order)]

    # -- decoding settings -----------------------------------------------------------------
    def clip_settings(self, backend) -> dict[str, Any]:
        """``chat`` keyword arguments of the clip captions (``None``: the checkpoint's)."""
        limit = self.options.clip_max_new_tokens or getattr(backend, "default_max_new_tokens", 2048)
        return {"max_new_tokens": limit, **attrs.asdict(self.options.clip_generation)}

    @staticmethod
    def summary_settings(sampling) -> dict[str, Any]:
        if sampling is None:
            return {}
        return {
            "max_new_tokens": sampling.max_new_tokens, "do_sample": sampling.do_sample, "temperature": sampling.temperature,
            "top_p": sampling.top_p, "top_k": getattr(sampling, "top_k", None), "repetition_penalty": sampling.repetition_penalty,
        }

    # -- generation ------------------------------------------------------------------------
    def generate(self, videos, backend, perturbations, difficulties, rng, *, sampling=None, seeds=None) -> list[CaptionRecord]:
        if backend is None:
            from temple_core.errors import RecipeError

            raise RecipeError("generate.backend", "the contextual captioner needs a backend")
        from temple_core.errors import TempleError
        from temple_core.video.source import VideoSource

        rngs = per_video_rngs(rng, len(videos))
        seeds = list(seeds) if seeds is not None else [None] * len(videos)
        jobs = []
        for video, video_rng in zip(videos, rngs):
            keyframes = keyframes_of(video)
            frames = self.presize(VideoSource(video.path).read_frames([i for pair in keyframes for i in pair]))
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

        clip_kwargs = self.clip_settings(backend)
        generation = {"clip": _settings_of(backend, **clip_kwargs), "summary": _settings_of(backend, **self.summary_settings(sampling))}
        if sampling is not None and sampling.do_sample and generation["summary"].get("greedy"):
            log.warning("generate.sampling asks for sampled summaries, but %s decodes them greedily (top_k=1 from its "
                        "generation config); set generate.sampling.top_k to sample", backend.describe())
        # Greedy clip captions: every clip of every video in one batched call (batching cannot
        # change them). Sampled ones: per video, with the video's own seed.
        if generation["clip"].get("greedy"):
            groups, group_seeds = [jobs], [None]
        else:
            groups, group_seeds = [[job] for job in jobs], seeds
        for group, seed in zip(groups, group_seeds):
            conversations = [self.clip_conversation(job["clips"], r) for job in group for r in job["requests"]]
            answers = backend.chat(conversations, seed=seed, **clip_kwargs)
            if len(answers) != len(conversations):
                raise TempleError(f"backend {backend.describe()} returned {len(answers)} answers for {len(conversations)} conversations")
            at = 0
            for job in group:
                n = len(job["requests"])
                job["answers"] = dict(zip(job["requests"], answers[at : at + n]))
                at += n

        return [self._summarise(job, backend, sampling, seed, generation) for job, seed in zip(jobs, seeds)]

    def _summarise(self, job, backend, sampling, seed, generation) -> CaptionRecord:
        video, variants, answers = job["video"], job["variants"], job["answers"]
        caption_of = {r: extract_caption(a) for r, a in answers.items()}
        captions = [caption_of[r] for r in self.requests_for(list(range(len(job["clips"]))))]
        if self.options.level == "frames":
            lists = [[caption_of[r] for r in self.requests_for(v.kept_indices)] for v in variants]
        else:
            lists = [[captions[i] for i in v.kept_indices] for v in variants]
        conversations = [self.summary_conversation(captions)] + [self.summary_conversation(c) for c in lists]
        texts = backend.chat(conversations, seed=seed, **self.summary_settings(sampling))
        clean = getattr(backend, "clean_description", None) or (lambda text: (text, None))
        cleaned = [clean(t.strip()) for t in texts]
        rejected = []
        for variant, caption_list, raw, (text, unusable) in zip(variants, lists, texts[1:], cleaned[1:]):
            row = Rejected(variant.perturbation, variant.difficulty, variant.kept_indices, text.strip()).to_dict()
            if self.options.level == "frames":
                row["clip_captions"] = caption_list  # the re-captioned perturbed sequence
            if text != raw.strip():
                row["raw_text"] = raw.strip()
            if unusable:
                row["unusable"] = unusable  # its pair is dropped for this reason
            rejected.append(row)
        chosen, chosen_unusable = cleaned[0]
        extra: dict[str, Any] = {
            "captioner": "contextual", "level": self.options.level, "clip_input": self.options.clip_input,
            "clip_presize": self.options.clip_presize,
            "clip_answers": [answers[r] for r in self.requests_for(list(range(len(job["clips"]))))],
            "generation": generation,
        }
        if chosen != texts[0].strip():
            extra["raw_chosen"] = texts[0].strip()
        if chosen_unusable:
            extra["chosen_unusable"] = chosen_unusable  # every pair of the video is dropped for this reason
        return CaptionRecord(
            video_id=video.video_id, video_path=video.path, generator=backend.describe(),
            clip_captions=captions, chosen=chosen.strip(), rejected=rejected, extra=extra,
        )


@hookimpl
def register_caption_generators(register):
    register("contextual", Contextual)
