"""Post-processing of a contextual clip caption (SPEC §2.1): keep the final caption only.

The model is asked to reason about clip 2 against clip 1 and end with "Caption: ...". What
is kept: the last non-empty line, without a "Caption:"-style prefix, markdown emphasis or
surrounding quotes, with "clip 2" / "clip 1" renamed to "this clip" / "the previous clip"
(the caption must read on its own, as a description of one clip, in the summary prompt).
"""

from __future__ import annotations

import re

# "Caption:", "**Final caption:**", "Detailed caption of clip 2 -", "Answer:" ...
_PREFIX = re.compile(
    r"^\s*(?:[-*#>]+\s*)*(?:\*\*|__)?\s*(?:final\s+|detailed\s+)?(?:caption|description|answer)"
    r"(?:\s+(?:of|for)\s+(?:the\s+)?(?:second\s+clip|clip\s*2))?\s*(?:\*\*|__)?\s*[:\-–—]\s*(?:\*\*|__)?\s*",
    re.IGNORECASE,
)
_MARKDOWN = re.compile(r"(\*\*|__|\*|`|^#+\s*)")
_QUOTES = "\"'“”‘’«»"
_RENAMES = (
    (re.compile(r"\b(?:the\s+)?(?:clip\s*2|second\s+clip)\b", re.IGNORECASE), "this clip"),
    (re.compile(r"\b(?:the\s+)?(?:clip\s*1|first\s+clip)\b", re.IGNORECASE), "the previous clip"),
)


def extract_caption(text: str) -> str:
    """The final caption of a contextual answer ("" when there is none)."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    if not lines:
        return ""
    line = lines[-1]
    line = _PREFIX.sub("", line, count=1)
    line = _MARKDOWN.sub("", line).strip()
    line = line.strip(_QUOTES).strip()
    for pattern, replacement in _RENAMES:
        line = pattern.sub(replacement, line)
    # A sentence that now starts with "this clip" is capitalised again.
    return line[:1].upper() + line[1:] if line else ""
