"""Every instruction the generate stage sends to a model, in one place (SPEC §2, §4), and the
checks of the ones a recipe puts in their place.

The project's own words. A recipe replaces any of them, inline or from a file (SPEC §2.6):
``generate.prompts`` / ``generate.prompts_file`` the pair prompts, the ``contextual``
captioner's ``first_clip_prompt``, ``next_clip_prompt``, ``summary_prompt`` (each also as
``..._file``) and ``caption_line`` the captioning ones. Placeholders, each written ``{name}``:

* ``{clip}`` (clip prompts) and ``{previous}`` (the next-clip prompt): where the clip's and the
  previous clip's frames go; without them the frames come first, then the text;
* ``{captions}`` (summary prompt, required): the ordered caption list, one ``caption_line`` each;
* ``{index}`` and ``{caption}`` (``caption_line``, ``{caption}`` required): a caption's number
  (from 1) and text.

Any other braces are text. A replacement is checked when the recipe is validated: a required
placeholder missing, or one that does not belong to that prompt, is an error naming the key.
"""

from __future__ import annotations

import re
from pathlib import Path

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

#: Clip 0, alone: its two keyframes (one 2-frame video by default, or two images).
FIRST_CLIP_PROMPT = (
    "This is one clip of a video, shown by two of its frames. Describe in detail what is visible in the clip: "
    "the setting, the people or objects, and what they do. Answer with the caption only."
)

#: Clip i > 0: clip i-1 (context) then clip i, two frames each.
NEXT_CLIP_PROMPT = (
    "These are two consecutive clips of a video, two frames each: first clip 1, then clip 2, which comes right "
    "after it. Describe what is visible in clip 2 and how it relates to clip 1 (same place or a new one, the same "
    "people or objects, what changed). Then end your answer with one line of the form "
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


#: One entry of the summary prompt's caption list.
CAPTION_LINE = "Caption {index}: {caption}"

_PLACEHOLDER = re.compile(r"\{(clip|previous|captions|index|caption)\}")

#: Per prompt: (placeholders it must have, placeholders it may have).
PLACEHOLDERS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "first_clip": ((), ("clip",)),
    "next_clip": ((), ("previous", "clip")),
    "summary": (("captions",), ("captions",)),
    "caption_line": (("caption",), ("index", "caption")),
    "pair": ((), ()),
}


def placeholders(text: str) -> list[str]:
    """The placeholders of ``text``, in order."""
    return _PLACEHOLDER.findall(text)


def template_problem(text: str, kind: str) -> str | None:
    """Why ``text`` cannot be the ``kind`` prompt (see :data:`PLACEHOLDERS`), or ``None``."""
    if not isinstance(text, str) or not text.strip():
        return "must be a non-empty text"
    required, allowed = PLACEHOLDERS[kind]
    found = placeholders(text)
    stray = sorted({p for p in found if p not in allowed})
    if stray:
        where = f"may only use {', '.join('{' + a + '}' for a in allowed)}" if allowed else "takes no placeholders"
        return f"{', '.join('{' + p + '}' for p in stray)} does not belong here (this prompt {where})"
    missing = [p for p in required if p not in found]
    if missing:
        return f"must contain {', '.join('{' + p + '}' for p in missing)}"
    if kind == "next_clip" and found and sorted(found) != ["clip", "previous"]:
        return "must contain both {previous} and {clip} once each, or neither (frames first)"
    if kind == "first_clip" and len(found) > 1:
        return "may contain {clip} once"
    return None


def read_prompt(path: str | Path) -> str:
    """A prompt file's text (UTF-8), without the final newline an editor adds."""
    text = Path(path).expanduser().read_text(encoding="utf-8")
    return text[:-1] if text.endswith("\n") else text


def read_prompt_lines(path: str | Path) -> list[str]:
    """A prompt-list file: one prompt per non-empty line."""
    return [line.strip() for line in Path(path).expanduser().read_text(encoding="utf-8").splitlines() if line.strip()]


def numbered_captions(captions: list[str], line: str = CAPTION_LINE) -> str:
    """One ``line`` per caption (``Caption 1: ...``), in the order given (the order is what the
    summary must follow)."""
    return "\n".join(line.replace("{index}", str(i)).replace("{caption}", c) for i, c in enumerate(captions, 1))


def summary_prompt(captions: list[str], template: str = SUMMARY_PROMPT, line: str = CAPTION_LINE) -> str:
    if "{captions}" not in template:
        raise ValueError("a summary prompt must contain '{captions}' where the clip captions go")
    return template.replace("{captions}", numbered_captions(captions, line))


def split_visuals(text: str) -> list[str]:
    """``text`` cut at its ``{previous}`` / ``{clip}`` placeholders: text, name, text, name, text..."""
    return re.split(r"\{(previous|clip)\}", text)


def prompt_validator(kind: str):
    """attrs validator of an inline prompt option (``None``: the built-in prompt)."""

    def validate(instance, attribute, value):
        if value is not None and (problem := template_problem(value, kind)):
            raise ValueError(problem)

    return validate


def prompt_list_validator(instance, attribute, value):
    """attrs validator of a list of pair prompts (``None``: the built-in list)."""
    if value is None:
        return
    if not value:
        raise ValueError("needs at least one prompt (or leave it out for the built-in ones)")
    for i, text in enumerate(value):
        if problem := template_problem(text, "pair"):
            raise ValueError(f"prompt {i}: {problem}")


def prompt_file_validator(kind: str, lines: bool = False):
    """attrs validator of a prompt file option: the file's prompt(s) checked as the inline
    option would be. A file that does not exist is left to the path check (which names it)."""

    def validate(instance, attribute, value):
        if value is None or not Path(value).expanduser().is_file():
            return
        try:
            texts = read_prompt_lines(value) if lines else [read_prompt(value)]
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"{value}: cannot be read as UTF-8 text ({exc})") from None
        if lines and not texts:
            raise ValueError(f"{value}: no prompt in it (one per line)")
        for i, text in enumerate(texts):
            if problem := template_problem(text, kind):
                raise ValueError(f"{value}{f' line {i + 1}' if lines else ''}: {problem}")

    return validate


def one_of(inline: str | None, file: str | None, default, read=read_prompt):
    """The prompt an option pair (inline, file) gives, or ``default``."""
    if inline is not None:
        return inline
    if file is not None:
        return read(file)
    return default
