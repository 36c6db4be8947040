"""Descriptions built from clip captions, for likelihood evaluation of clip order.

A perturbed description must differ from the correct one only in which clips it tells and in
what order: the same sentences, the same connectives. :func:`ordered_description` joins the
captions as "First, A. Then, B. Finally, C." in the order given, so ``drop`` makes it shorter
(fewer clips) and ``shuffle``/``reverse`` reorder the same sentences.
"""

from __future__ import annotations


def _sentence(caption: str) -> str:
    text = caption.strip().rstrip(".")
    if len(text) > 1 and text[0].isupper() and text[1].isupper():
        return text  # an acronym ("TV on")
    return text[:1].lower() + text[1:]


def ordered_description(captions: list[str]) -> str:
    """The captions as one chronological paragraph, in the order given."""
    parts = [_sentence(c) for c in captions if c and c.strip()]
    if not parts:
        return ""
    if len(parts) == 1:
        return f"{parts[0][:1].upper()}{parts[0][1:]}."
    lines = [f"First, {parts[0]}."] + [f"Then, {p}." for p in parts[1:-1]] + [f"Finally, {parts[-1]}."]
    return " ".join(lines)
