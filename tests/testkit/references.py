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


def wpgma_greedy(similarity, threshold: float = 0.8) -> list[int]:
    """SPEC section 1's grouping, written out in similarity space: repeatedly merge the most
    similar pair of clusters while its similarity is strictly above ``threshold``; the merged
    row is the plain mean of the two (WPGMA). Labels 0, 1, ... by first appearance."""
    n = len(similarity)
    s = [[float(similarity[i][j]) for j in range(n)] for i in range(n)]
    members = {i: [i] for i in range(n)}
    while len(members) > 1:
        best, pair = None, None
        keys = sorted(members)
        for x, i in enumerate(keys):
            for j in keys[x + 1 :]:
                if best is None or s[i][j] > best:
                    best, pair = s[i][j], (i, j)
        if not best > threshold:
            break
        a, b = pair
        for k in keys:
            if k not in (a, b):
                s[a][k] = s[k][a] = 0.5 * (s[a][k] + s[b][k])
        members[a].extend(members.pop(b))
    root_of = {item: root for root, items in members.items() for item in items}
    names: dict[int, int] = {}
    return [names.setdefault(root_of[i], len(names)) for i in range(n)]
