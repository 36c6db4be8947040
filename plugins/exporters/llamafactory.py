"""``llamafactory``: pairs as a LLaMA-Factory sharegpt preference dataset, with its dataset_info entry.

LLaMA-Factory's sharegpt preference rows: ``conversations`` (``from``/``value`` turns, the
prompt as a ``human`` turn with a ``<video>`` tag), ``chosen`` and ``rejected`` (one ``gpt``
turn each) and ``videos`` (paths). The dataset is registered in ``dataset_info.json`` with
``"formatting": "sharegpt"``, ``"ranking": true`` and the column names; the exporter writes
that entry next to the data file as ``dataset_info.json`` (merge it into yours).
"""

from __future__ import annotations

import json
from pathlib import Path

import attrs

from temple_core.contracts import Exporter
from temple_core.generation.export import write_export
from temple_core.hookspecs import hookimpl


def llamafactory_row(pair) -> dict:
    return {
        "conversations": [{"from": "human", "value": f"<video>{pair.prompt}"}],
        "chosen": {"from": "gpt", "value": pair.chosen},
        "rejected": {"from": "gpt", "value": pair.rejected},
        "videos": [pair.video_path],
    }


def dataset_info(name: str, file_name: str) -> dict:
    return {
        name: {
            "file_name": file_name,
            "formatting": "sharegpt",
            "ranking": True,
            "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected", "videos": "videos"},
        }
    }


class LlamaFactoryExporter(Exporter):
    """LLaMA-Factory sharegpt preference rows (conversations, chosen, rejected, videos) + dataset_info.json."""

    suffix = "jsonl"

    @attrs.define(kw_only=True, frozen=True)
    class Options:
        #: The dataset's name in dataset_info.json (what ``dataset:`` names in a LLaMA-Factory config).
        dataset_name: str = "temple_pairs"

    def __init__(self, options: "LlamaFactoryExporter.Options | None" = None):
        self.options = options or LlamaFactoryExporter.Options()

    def export(self, pairs, out_path: Path) -> int:
        out_path = Path(out_path)
        count = write_export(out_path, (llamafactory_row(p) for p in pairs), "llamafactory")
        info = dataset_info(self.options.dataset_name, out_path.name)
        (out_path.parent / "dataset_info.json").write_text(json.dumps(info, indent=2) + "\n")
        return count


@hookimpl
def register_exporters(register):
    register("llamafactory", LlamaFactoryExporter)
