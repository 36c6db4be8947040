"""Exporters: each file reads back the way its tool reads it; 0 pairs is an empty file and a warning."""

from __future__ import annotations

import json
import shutil

import pytest
from testkit.generation import selected_run

from temple_core.plugins import get_plugin_manager
from temple_core.recipe import recipe_from_data
from temple_core.records import Pair
from temple_core.stages.runner import run_stages
from temple_core.store import read_jsonl

PAIRS = [
    Pair(
        pair_id=f"v{i}-drop-r2", video_id=f"v{i}", video_path=f"/data/v{i}.mp4", prompt="Describe this video in detail.",
        chosen=f"First a red scene, then a blue one ({i}).", rejected="A blue scene.", perturbation="drop",
        difficulty=2, kept_indices=[1], generator="heuristic",
    )
    for i in range(3)
]


def _export(name, tmp_path, pairs=PAIRS, **options):
    plugins = get_plugin_manager()
    component = plugins.get("exporters", name)
    opts = component.options(**options) if component.options is not None else None
    exporter = plugins.build("exporters", name, opts)
    out = tmp_path / f"{name}.jsonl"
    return exporter.export(pairs, out), out


def test_trl_conversational_preference_rows(tmp_path):
    from datasets import load_dataset
    from trl.data_utils import is_conversational, maybe_extract_prompt

    count, out = _export("trl", tmp_path)
    assert count == 3
    dataset = load_dataset("json", data_files=str(out), split="train")
    assert set(dataset.column_names) == {"prompt", "chosen", "rejected", "videos"}
    row = dataset[0]
    assert is_conversational(row)
    assert maybe_extract_prompt(row)["prompt"] == row["prompt"]  # an explicit prompt: nothing to extract
    assert [m["role"] for m in row["prompt"]] == ["user"]
    assert [b["type"] for b in row["prompt"][0]["content"]] == ["video", "text"]
    assert row["chosen"][0]["role"] == row["rejected"][0]["role"] == "assistant"
    assert row["chosen"][0]["content"][0]["text"] == PAIRS[0].chosen
    assert row["rejected"][0]["content"][0]["text"] == PAIRS[0].rejected
    assert row["videos"] == ["/data/v0.mp4"]
    count, out = _export("trl", tmp_path, conversational=False)
    standard = read_jsonl(out)[1]
    assert not is_conversational(standard) and standard["chosen"] == PAIRS[1].chosen


def test_swift_rlhf_rows(tmp_path):
    count, out = _export("swift", tmp_path)
    rows = read_jsonl(out)
    assert count == len(rows) == 3
    for row, pair in zip(rows, PAIRS):
        assert set(row) == {"messages", "rejected_response", "videos"}
        assert [m["role"] for m in row["messages"]] == ["user", "assistant"]
        assert row["messages"][-1]["content"] == pair.chosen  # the chosen answer is the last assistant turn
        assert row["rejected_response"] == pair.rejected
        # One <video> tag per entry of the videos column, as ms-swift matches them in order.
        assert sum(m["content"].count("<video>") for m in row["messages"]) == len(row["videos"]) == 1
        assert row["messages"][0]["content"] == "<video>" + pair.prompt


def test_llamafactory_sharegpt_ranking_rows(tmp_path):
    count, out = _export("llamafactory", tmp_path, dataset_name="my_pairs")
    info = json.loads((tmp_path / "dataset_info.json").read_text())
    entry = info["my_pairs"]
    assert entry["file_name"] == out.name and entry["formatting"] == "sharegpt" and entry["ranking"] is True
    rows = read_jsonl(tmp_path / entry["file_name"])
    assert count == len(rows) == 3
    for row, pair in zip(rows, PAIRS):
        # Every column dataset_info names exists, and nothing else is needed.
        assert set(entry["columns"].values()) == set(row)
        turns = row[entry["columns"]["messages"]]
        # A ranking sample's conversation ends with the user turn (odd length); answers are single gpt turns.
        assert len(turns) % 2 == 1 and turns[-1]["from"] == "human"
        assert row["chosen"] == {"from": "gpt", "value": pair.chosen}
        assert row["rejected"] == {"from": "gpt", "value": pair.rejected}
        assert turns[0]["value"].count("<video>") == len(row["videos"]) == 1


@pytest.mark.parametrize("name", ["trl", "swift", "llamafactory"])
def test_zero_pairs_is_an_empty_file_and_a_warning(name, tmp_path):
    with pytest.warns(UserWarning, match="no pairs"):
        count, out = _export(name, tmp_path, pairs=[])
    assert count == 0 and out.read_bytes() == b""


def test_stage_exports_its_pairs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export")
    run_dir, _ = selected_run(tmp, {"a": ["red_still", "dark_blue", "green_busy", "yellow_some"]})
    recipe = recipe_from_data(
        {"run_dir": str(run_dir), "generate": {
            "captioner": {"name": "heuristic"}, "difficulties": [2],
            "exporters": [{"name": "trl"}, {"name": "swift"}, {"name": "llamafactory"}],
        }},
        plugins=get_plugin_manager(),
    )
    run_stages(recipe, get_plugin_manager(), stages=["generate"], progress=False, log=lambda *_: None)
    pairs = read_jsonl(run_dir / "generate" / "pairs.jsonl")
    assert pairs
    for name in ("trl", "swift", "llamafactory"):
        assert len(read_jsonl(run_dir / "generate" / "export" / f"{name}.jsonl")) == len(pairs)
    assert (run_dir / "generate" / "export" / "dataset_info.json").is_file()
    shutil.rmtree(tmp)
