"""Video selection (SPEC §1) as plain functions: scene filters, grouping, segments, keyframes.

The stage (``temple_core.stages.select``) glues them to a shot detector, a similarity
encoder and the run store; everything here is pure and testable on plain numbers.
"""

from temple_core.selection.filters import Decision, filter_shots, filter_segments
from temple_core.selection.grouping import group_wpgma, groups_of
from temple_core.selection.keyframes import clarity, pick_keyframes, keyframe_windows
from temple_core.selection.segments import segments_of

__all__ = [
    "Decision",
    "clarity",
    "filter_segments",
    "filter_shots",
    "group_wpgma",
    "groups_of",
    "keyframe_windows",
    "pick_keyframes",
    "segments_of",
]
