"""The pair filters of SPEC §4: which (chosen, rejected) pairs are kept, and why the others are not."""

from __future__ import annotations

#: Reasons a pair is dropped by the filters, in the order they are checked. (Before them, a
#: pair whose response a backend's clean-up found unusable is dropped with the clean-up's reason,
#: e.g. ``no_opening`` for MiMo-VL, SPEC §2.5.)
REASONS = ("empty", "contained", "not_longer", "length_ratio")


def drop_reason(chosen: str, rejected: str, perturbation: str, filters) -> str | None:
    """Why this pair is dropped (one of :data:`REASONS`), or ``None`` to keep it.

    ``filters`` is the recipe's ``generate.filters`` (``PairFilters``). Lengths are in
    characters of the stripped texts, as in the released pipeline.
    """
    chosen, rejected = (chosen or "").strip(), (rejected or "").strip()
    if not chosen or not rejected:
        return "empty"
    if filters.drop_contained and chosen in rejected:
        return "contained"
    if perturbation in filters.longer_chosen and not len(chosen) > len(rejected):
        return "not_longer"
    if perturbation in filters.length_ratio:
        longer, shorter = max(len(chosen), len(rejected)), min(len(chosen), len(rejected))
        if longer > filters.max_length_ratio * shorter:
            return "length_ratio"
    return None
