"""``trl``: pairs as TRL's conversational preference dataset (prompt / chosen / rejected) + videos.

TRL's DPO datasets are ``prompt``, ``chosen``, ``rejected`` columns; in the conversational
form each is a list of messages with structured content, and a visual input is a
placeholder block (``{"type": "image"}``) filled from a media column (``images``). TRL
1.16's own collator knows images only, so the video rides in a ``videos`` column of paths
with a ``{"type": "video"}`` placeholder, which video-aware collators (this project's
``dpo`` trainer, Qwen-VL processors) read. ``load_dataset("json", data_files=...)`` loads it.
"""

from __future__ import annotations

from pathlib import Path

import attrs

from temple_core.contracts import Exporter
from temple_core.generation.export import write_export
from temple_core.hookspecs import hookimpl


def trl_row(pair, conversational: bool = True) -> dict:
    if not conversational:
        return {"prompt": pair.prompt, "chosen": pair.chosen, "rejected": pair.rejected, "videos": [pair.video_path]}
    return {
        "prompt": [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": pair.prompt}]}],
        "chosen": [{"role": "assistant", "content": [{"type": "text", "text": pair.chosen}]}],
        "rejected": [{"role": "assistant", "content": [{"type": "text", "text": pair.rejected}]}],
        "videos": [pair.video_path],
    }


class TrlExporter(Exporter):
    """TRL preference format: conversational prompt/chosen/rejected and a videos column."""

    suffix = "jsonl"

    @attrs.define(kw_only=True, frozen=True)
    class Options:
        #: Messages with structured content (true) or plain strings (TRL's "standard" format).
        conversational: bool = True

    def __init__(self, options: "TrlExporter.Options | None" = None):
        self.options = options or TrlExporter.Options()

    def export(self, pairs, out_path: Path) -> int:
        return write_export(out_path, (trl_row(p, self.options.conversational) for p in pairs), "trl")


@hookimpl
def register_exporters(register):
    register("trl", TrlExporter)
