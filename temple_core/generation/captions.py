"""Post-processing of a contextual clip caption (SPEC §2.1): keep the final caption only.

The model is asked to reason about clip 2 against clip 1 and end with "Caption: ...". What
is kept: the last non-empty line, without a "Caption:"-style prefix, markdown emphasis or
surrounding quotes, with "clip 2" / "clip 1" renamed to "this clip" / "the previous clip"
(the caption must read on its own, as a description of one clip, in the summary prompt).
"""

from __future__ import annotations

import re

# "Caption:", "**Final caption:**", "Detailed caption of clip 2 -", "Answer:" ...
# "Caption 2:", "Caption for this clip:", "Caption (clip 2):" ...
_PREFIX = re.compile(
    r"^\s*(?:[-*#>]+\s*)*(?:\*\*|__)?\s*(?:final\s+|detailed\s+)?(?:caption|description|answer)(?:\s*\d+)?"
    r"(?:\s+(?:of|for)\s+(?:the\s+|this\s+)?(?:second\s+clip|clip(?:\s*\d+)?))?(?:\s*\([^)]*\))?"
    # The separator: a colon, or a dash with a space on either side ("Caption - ...", not the
    # hyphen of "Caption 2-year-old").
    r"\s*(?:\*\*|__)?\s*(?::|(?<=\s)[\-–—]|[\-–—](?=\s))\s*(?:\*\*|__)?\s*",
    re.IGNORECASE,
)
_MARKDOWN = re.compile(r"(\*\*|__|\*|`|^#+\s*)")
# A caption wrapped in a pair of quotes loses that pair only: an opening quote at the start,
# its closing one at the end (a final . ! ? after it is kept), and for the double quotes none
# in between -- a quoted word inside or at either end ('"OPEN" is painted', "the players'")
# stays as written.
# Single quotes double as apostrophes: inside, one counts only between two letters (dog's).
_WRAPPED = re.compile(
    r'^(?:"(?P<d>[^"]*)"|“(?P<c>[^“”]*)”|‘(?P<s>(?:[^‘’]|(?<=\w)’(?=\w))*)’|«(?P<a>[^«»]*)»'
    r"|'(?P<q>(?:[^']|(?<=\w)'(?=\w))*)')(?P<end>[.!?]?)$",
    re.DOTALL,
)
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
    wrapped = _WRAPPED.match(line)
    if wrapped:
        inner = next(v for k, v in wrapped.groupdict().items() if k != "end" and v is not None)
        line = (inner.strip() + wrapped["end"]).strip()
    for pattern, replacement in _RENAMES:
        line = pattern.sub(replacement, line)
    # A sentence that now starts with "this clip" is capitalised again.
    return line[:1].upper() + line[1:] if line else ""
