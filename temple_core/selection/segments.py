"""Segments: consecutive clips (in time order) of the same group form one segment."""

from __future__ import annotations


def segments_of(labels: list[int]) -> list[list[int]]:
    """Runs of equal labels: ``[0, 0, 1, 0] -> [[0, 1], [2], [3]]`` (lists of clip indices)."""
    segments: list[list[int]] = []
    for i, label in enumerate(labels):
        if segments and labels[segments[-1][-1]] == label:
            segments[-1].append(i)
        else:
            segments.append([i])
    return segments
