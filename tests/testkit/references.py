"""Published rules written out again for tests to compare temple against (never temple's code)."""

from __future__ import annotations

import math


def smart_resize(h, w, factor, min_pixels, max_pixels):
    """Qwen2-VL's smart_resize, as published (qwen-vl-utils): sides rounded to ``factor``,
    scaled down to ``max_pixels`` or up to ``min_pixels`` keeping the aspect ratio."""
    hb, wb = max(factor, round(h / factor) * factor), max(factor, round(w / factor) * factor)
    if hb * wb > max_pixels:
        beta = math.sqrt(h * w / max_pixels)
        hb, wb = max(factor, math.floor(h / beta / factor) * factor), max(factor, math.floor(w / beta / factor) * factor)
    elif hb * wb < min_pixels:
        beta = math.sqrt(min_pixels / (h * w))
        hb, wb = math.ceil(h * beta / factor) * factor, math.ceil(w * beta / factor) * factor
    return hb, wb
