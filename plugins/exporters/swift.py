"""``swift``: pairs in ms-swift's standard RLHF format (``messages`` + ``rejected_response`` + ``videos``).

ms-swift's standard dataset keys are ``messages`` (required; the chosen answer is the last
assistant turn), ``rejected_response`` (for DPO and the other RLHF methods) and media
columns such as ``videos`` (paths), referenced from the text by ``<video>`` tags.
Train with ``swift rlhf --rlhf_type dpo --dataset <file>``.
"""

from __future__ import annotations

from pathlib import Path

from temple_core.contracts import Exporter
from temple_core.generation.export import write_export
from temple_core.hookspecs import hookimpl


def swift_row(pair) -> dict:
    return {
        "messages": [
            {"role": "user", "content": f"<video>{pair.prompt}"},
            {"role": "assistant", "content": pair.chosen},
        ],
        "rejected_response": pair.rejected,
        "videos": [pair.video_path],
    }


class SwiftExporter(Exporter):
    """ms-swift RLHF format: messages (chosen as the assistant turn), rejected_response, videos."""

    suffix = "jsonl"

    def export(self, pairs, out_path: Path) -> int:
        return write_export(out_path, (swift_row(p) for p in pairs), "swift")


@hookimpl
def register_exporters(register):
    register("swift", SwiftExporter)
