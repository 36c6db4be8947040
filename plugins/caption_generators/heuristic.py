"""``heuristic``: clip captions and summaries from pixel statistics, no model (demos and tests).

Each clip (segment) is described from its two keyframes: its dominant colour, brightness,
the motion between the keyframes and where it starts and ends in the video. A "summary" of
a list of clip captions joins them in the list's order, so a rejected summary is exactly the
chosen one with its clips dropped or reordered: drop-rejected texts are shorter (fewer
clips), shuffle/reverse ones are as long as the chosen, and an unchanged order gives the
chosen text again -- which the SPEC §4 filters then drop. Everything is deterministic.

``timestamps: false`` leaves each clip's start and end out. Keep them out whenever the pairs
or the scores are meant to measure order: a rejected text whose "(12.0-14.5 s)" comes before
"(3.0-5.5 s)" is wrong on its face, so a model that never looks at the frames can prefer the
chosen text -- the pairs would teach reading numbers, not watching (docs/science.md).
"""

from __future__ import annotations

import attrs
import cv2
import numpy as np

from temple_core.contracts import CaptionGenerator
from temple_core.generation.plan import keyframes_of, per_video_rngs, plan_variants
from temple_core.hookspecs import hookimpl
from temple_core.records import CaptionRecord, Rejected, VideoRecord

# Hue names on OpenCV's 0..179 hue circle (bin upper bounds).
_HUES = ((8, "red"), (22, "orange"), (34, "yellow"), (78, "green"), (96, "cyan"), (130, "blue"), (150, "purple"), (170, "magenta"), (180, "red"))
_NUMBERS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight", 9: "nine", 10: "ten"}


def _hue_name(hue: float) -> str:
    for bound, name in _HUES:
        if hue < bound:
            return name
    return "red"


def describe_frames(frames: list[np.ndarray], options: "Heuristic.Options") -> dict:
    """Colour, brightness and motion of one clip's keyframes (RGB ``uint8``)."""
    hsv = np.concatenate([cv2.cvtColor(f, cv2.COLOR_RGB2HSV).reshape(-1, 3) for f in frames])
    value = float(hsv[:, 2].mean()) / 255.0
    coloured = hsv[(hsv[:, 1] >= 60) & (hsv[:, 2] >= 50)]
    if len(coloured) >= options.min_coloured * len(hsv):
        # The most common named hue among coloured pixels (not the mean hue: red wraps around 0/180).
        names = [n for _, n in _HUES]
        bins = np.searchsorted([b for b, _ in _HUES], coloured[:, 0], side="right")
        counts: dict[str, int] = {}
        for index, count in zip(*np.unique(bins, return_counts=True)):
            name = names[min(int(index), len(names) - 1)]
            counts[name] = counts.get(name, 0) + int(count)
        colour = max(sorted(counts), key=counts.get)
    else:
        colour = "black" if value < 0.2 else "white" if value > 0.85 else "grey"
    grays = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY).astype(np.int16) for f in frames]
    motion = float(np.abs(grays[-1] - grays[0]).mean()) / 255.0 if len(grays) > 1 else 0.0
    return {"colour": colour, "brightness": value, "motion": motion}


class Heuristic(CaptionGenerator):
    """Describe clips from their pixels (colour, brightness, motion, timing); no model."""

    needs_backend = False

    @attrs.define(kw_only=True, frozen=True)
    class Options:
        #: Mean brightness (0..1) below which a clip is "dark".
        dark_below: float = attrs.field(default=0.3, validator=[attrs.validators.ge(0.0), attrs.validators.le(1.0)])
        #: Mean brightness (0..1) above which a clip is "bright".
        bright_above: float = attrs.field(default=0.65, validator=[attrs.validators.ge(0.0), attrs.validators.le(1.0)])
        #: Mean absolute gray difference (0..1) between the keyframes below which a clip is "still".
        still_below: float = attrs.field(default=0.02, validator=attrs.validators.ge(0.0))
        #: ... and above which it has "a lot of motion".
        busy_above: float = attrs.field(default=0.1, validator=attrs.validators.ge(0.0))
        #: Share of saturated pixels needed to name a hue (else black / grey / white).
        min_coloured: float = attrs.field(default=0.25, validator=[attrs.validators.ge(0.0), attrs.validators.le(1.0)])
        #: Say where each clip starts and ends (seconds). Off for any study of order: in a shuffled
        #: or reversed rejected text the timestamps run backwards, which a text-only model can
        #: spot without looking at the video (a leak; docs/science.md).
        timestamps: bool = True

        def __attrs_post_init__(self):
            # Checked with the options (so `temple validate` refuses it), not when the run starts.
            if self.dark_below > self.bright_above:
                raise ValueError(f"dark_below ({self.dark_below}) must not exceed bright_above ({self.bright_above})")

    def __init__(self, options: "Heuristic.Options | None" = None):
        self.options = options or Heuristic.Options()

    def describe(self) -> str:
        return "heuristic"

    def clip_caption(self, stats: dict, start: float | None = None, end: float | None = None) -> str:
        o = self.options
        light = "dark" if stats["brightness"] < o.dark_below else "bright" if stats["brightness"] > o.bright_above else "dimly lit"
        motion = (
            "no visible motion" if stats["motion"] < o.still_below
            else "a lot of motion" if stats["motion"] > o.busy_above
            else "some motion"
        )
        text = f"a {light} {stats['colour']} scene with {motion}"
        if o.timestamps and start is not None:
            text += f", from {start:.1f} s to {end:.1f} s"
        return text

    @staticmethod
    def summarize(captions: list[str]) -> str:
        """Join clip captions in the given order into one paragraph."""
        if not captions:
            return ""
        if len(captions) == 1:
            return f"The video shows a single scene: {captions[0]}."
        count = _NUMBERS.get(len(captions), str(len(captions)))
        parts = [f"The video shows {count} scenes.", f"First, {captions[0]}."]
        parts += [f"Then, {c}." for c in captions[1:-1]]
        parts.append(f"Finally, {captions[-1]}.")
        return " ".join(parts)

    def clip_captions(self, video: VideoRecord) -> list[str]:
        from temple_core.video.source import VideoSource

        keyframes = keyframes_of(video)
        source = VideoSource(video.path)
        frames = source.read_frames([i for pair in keyframes for i in pair])
        fps = float(video.fps or source.fps)
        captions, at = [], 0
        for clip, (first, last) in zip(keyframes, video.segment_frames()):
            stats = describe_frames(frames[at : at + len(clip)], self.options)
            at += len(clip)
            captions.append(self.clip_caption(stats, first / fps, (last + 1) / fps))
        return captions

    def generate(self, videos, backend, perturbations, difficulties, rng, *, sampling=None, seeds=None) -> list[CaptionRecord]:
        out = []
        for video, video_rng in zip(videos, per_video_rngs(rng, len(videos))):
            captions = self.clip_captions(video)
            rejected = [
                Rejected(v.perturbation, v.difficulty, v.kept_indices, self.summarize([captions[i] for i in v.kept_indices])).to_dict()
                for v in plan_variants(len(captions), perturbations, difficulties, video_rng)
            ]
            out.append(
                CaptionRecord(
                    video_id=video.video_id, video_path=video.path, generator="heuristic",
                    clip_captions=captions, chosen=self.summarize(captions), rejected=rejected,
                )
            )
        return out


@hookimpl
def register_caption_generators(register):
    register("heuristic", Heuristic)
