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


def qwen_vl_utils_frame(frame):
    """qwen-vl-utils 0.0.11's ``fetch_image`` on one frame of a video given as a frame list, as
    published: ``image.resize((w, h))`` (PIL's default filter) to ``smart_resize`` at factor 28
    within 4 x 28 x 28 .. 16,384 x 28 x 28 pixels."""
    import numpy as np
    from PIL import Image

    h, w = smart_resize(frame.shape[0], frame.shape[1], 28, 4 * 28 * 28, 16384 * 28 * 28)
    return np.asarray(Image.fromarray(frame).resize((w, h)))
