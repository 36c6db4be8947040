"""Evaluation: what the ``eval`` stage hands an evaluator and what it gets back.

An evaluator (plugin kind ``evaluators``) receives one :class:`EvalRequest` per checkpoint --
the checkpoint, its backend loaded with the evaluation frame settings, a per-item store that
survives interruptions, a seed -- and returns an :class:`EvalResult` (a score with its 95%
interval, per-cell metrics). The stage writes ``eval/<checkpoint>/<evaluator>.json`` from it,
with the settings next to the score, so that every number can be traced to how it was made.
:mod:`.stats` has the bootstrap intervals, :mod:`.results` reads results back for
``temple compare`` and the report, :mod:`.compare` draws them side by side.
"""

from temple_core.evaluation.request import EvalRequest, EvaluatorOptions, FrameSettings, ItemStore, RunInfo
from temple_core.evaluation.results import EvalResult

__all__ = ["EvalRequest", "EvalResult", "EvaluatorOptions", "FrameSettings", "ItemStore", "RunInfo"]
