"""Every instruction the generate stage sends to a model, in one place (SPEC §2, §4).

The project's own words. A recipe overrides them: ``generate.prompts`` replaces the pair
prompts, and the ``contextual`` captioner's options replace the captioning prompts.
"""

from __future__ import annotations

#: The training prompts of the preference pairs; one is drawn per pair with the video's rng.
PAIR_PROMPTS: tuple[str, ...] = (
    "Describe this video in detail.",
    "Describe what happens in this video, in the order it happens.",
    "Give a detailed, chronological description of the video.",
    "Watch the video and describe its events one after another, in detail.",
    "What happens in this video? Describe it from beginning to end.",
    "Write a detailed caption of the video that follows the order of its scenes.",
    "Narrate the content of the video in chronological order.",
    "Provide a thorough description of the video, keeping the sequence of events.",
)

#: Clip 0, alone: its two keyframes.
FIRST_CLIP_PROMPT = (
    "These two frames come from one clip of a video. Describe in detail what is visible in the clip: "
    "the setting, the people or objects, and what they do. Answer with the caption only."
)

#: Clip i > 0: clip i-1 (the first two frames, context) then clip i (the last two frames).
NEXT_CLIP_PROMPT = (
    "The first two frames are clip 1 of a video and the last two frames are clip 2, which comes right after it. "
    "Describe what is visible in clip 2 and how it relates to clip 1 (same place or a new one, the same people "
    "or objects, what changed). Then end your answer with one line of the form "
    '"Caption: <a detailed caption of clip 2>".'
)

#: The chosen (ordered captions) and rejected (perturbed captions) responses. ``{captions}``
#: becomes "Caption 1: ...\nCaption 2: ..." in the list's order.
SUMMARY_PROMPT = (
    "Here are captions of consecutive clips of one video, in the order they appear:\n"
    "{captions}\n"
    "Write one fluent, detailed caption of the whole video as a single paragraph that tells what happens "
    "in chronological order, following the captions' order. Do not mention clips or captions; describe the video."
)


def numbered_captions(captions: list[str]) -> str:
    """``Caption 1: ...`` lines, in the order given (the order is what the summary must follow)."""
    return "\n".join(f"Caption {i}: {c}" for i, c in enumerate(captions, 1))


def summary_prompt(captions: list[str], template: str = SUMMARY_PROMPT) -> str:
    if "{captions}" not in template:
        raise ValueError("a summary prompt must contain '{captions}' where the clip captions go")
    return template.replace("{captions}", numbered_captions(captions))
