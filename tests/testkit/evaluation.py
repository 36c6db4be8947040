"""Helpers for the evaluation tests: held-out videos with ground-truth sidecars, stub scorers
with known log-likelihoods (the evaluator under test is real; only the model is replaced, as
the issue asks), and recipes/requests built as the eval stage builds them."""

from __future__ import annotations

import json
import re
from pathlib import Path

from temple_core.models.backend import TextScore
from testkit.training import PALETTE, write_video


def event_videos(folder: Path, clip_counts: list[int]) -> list[Path]:
    """One tiny real video per entry, with a sidecar naming its events ``event 0``, ``event 1``..."""
    paths = []
    for i, n in enumerate(clip_counts):
        path = write_video(folder / f"held{i}.mp4", [PALETTE[(i + k) % len(PALETTE)] for k in range(2)])
        path.with_suffix(".json").write_text(json.dumps({"events": [{"description": f"event {k}"} for k in range(n)]}))
        paths.append(path)
    return paths


def order_of(text: str) -> tuple[int, ...]:
    """The clip order a description tells (``event 3`` ... ``event 1`` -> (3, 1))."""
    return tuple(int(m) for m in re.findall(r"event (\d+)", text, flags=re.IGNORECASE))


class StubScorer:
    """A backend stand-in whose log-likelihood of a description is ``table(order)``: known numbers.

    ``tokens`` = 2 per event told + 3 (the connectives), so the per-token mean differs from
    the sum in a known way."""

    def __init__(self, table, answers=None):
        self.table = table
        self.answers = list(answers or [])
        self.calls: list[tuple[str, list[str]]] = []
        self.items: list[dict] = []
        self.chats: list = []

    def describe(self) -> str:
        return "stub"

    def score_texts(self, conversation, texts, *, batch_size=None):
        item = next(c for c in conversation[0]["content"] if c["type"] == "video")
        video = item.get("path", "blind")
        self.calls.append((video, list(texts)))
        self.items.append(item)
        return [TextScore(float(self.table(video, text)), 2 * max(1, len(order_of(text))) + 3) for text in texts]

    def chat(self, conversations, **kwargs):
        self.chats.append(conversations)
        out = [self.answers.pop(0) for _ in conversations]
        return out


def stub_tokens(order) -> int:
    return 2 * max(1, len(order)) + 3


def evaluator(name: str, **options):
    """An evaluator component as a recipe's ``eval.evaluators`` entry would build it."""
    from temple_core.config import Structurer
    from temple_core.plugins import get_plugin_manager

    plugins = get_plugin_manager()
    spec = Structurer(plugins).component("evaluators", {"name": name, **options}, "eval.evaluators[0]")
    return spec.build(plugins)


def request(backend, out: Path, label: str = "test", training: dict | None = None, seed: int = 0, batch_size: int = 8):
    """An :class:`EvalRequest` as the eval stage builds it (one process, checkpoint ``base``)."""
    from temple_core.evaluation import EvalRequest, FrameSettings, ItemStore, RunInfo
    from temple_core.evaluation.request import Checkpoint
    from temple_core.plugins import get_plugin_manager
    from temple_core.store import ShardedJsonl

    plugins = get_plugin_manager()
    out_dir = out / "eval" / "base"
    data_dir = out / "eval" / "_data" / label
    data_dir.mkdir(parents=True, exist_ok=True)

    def no_captioner():
        raise AssertionError("the test gives ground truth; no captioner may run")

    run = RunInfo(run_dir=out, recipe=None, plugins=plugins, training_videos=lambda: dict(training or {}), captioner=no_captioner)
    return EvalRequest(
        evaluator=label, where="eval.evaluators[0]", checkpoint=Checkpoint("base", None, "stub"), backend=backend,
        frames=FrameSettings(), items=ItemStore(ShardedJsonl(out_dir, label, key="item_id")), out_dir=out_dir,
        data_dir=data_dir, run=run, plugins=plugins, seed=seed, batch_size=batch_size, log=lambda *a, **k: None,
    )
