"""The eval stage through `temple run`: killed with SIGKILL mid-stage and run again, it
finishes without scoring a finished item twice; recipe errors name their key."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml
from testkit.evaluation import event_videos

from temple_core.errors import RecipeError
from temple_core.plugins import get_plugin_manager
from temple_core.recipe import recipe_from_data
from temple_core.store import read_jsonl

COUNT = 24


def _recipe(path, run_dir, held):
    path.write_text(yaml.safe_dump({
        "run_dir": str(run_dir), "seed": 3,
        "eval": {"backend": {"name": "qwen2_vl", "preset": "tiny-random"}, "checkpoints": ["base"],
                 "frames": {"max_frames": 4, "max_pixels": 3136}, "batch_size": 4,
                 "evaluators": [{"name": "temporal_order", "videos": {"paths": [str(held)]}, "difficulties": [4, 2]}]},
    }))
    return path


def _run(recipe):
    return subprocess.Popen([sys.executable, "-m", "temple_core", "run", str(recipe), "--stages", "eval", "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def test_killed_eval_resumes_without_rescoring(tmp_path):
    event_videos(tmp_path / "held", [3 + i % 4 for i in range(COUNT)])
    recipe = _recipe(tmp_path / "recipe.yaml", tmp_path / "run", tmp_path / "held")
    shard = tmp_path / "run" / "eval" / "base" / "temporal_order.rank0.jsonl"
    killed = _run(recipe)
    deadline = time.time() + 300
    while time.time() < deadline and (not shard.exists() or len(read_jsonl(shard)) < 3):
        time.sleep(0.01)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait()
    before = {r["item_id"]: r for r in read_jsonl(shard)}
    assert 0 < len(before) < COUNT, f"not interrupted mid-stage ({len(before)} of {COUNT} scored)"
    assert not (tmp_path / "run" / "eval" / "base" / "temporal_order.json").exists()

    again = _run(recipe)
    out, err = again.communicate(timeout=600)
    assert again.returncode == 0, err.decode()[-3000:]
    records = read_jsonl(tmp_path / "run" / "eval" / "base" / "temporal_order.jsonl")
    assert len(records) == COUNT and len({r["item_id"] for r in records}) == COUNT
    by_id = {r["item_id"]: r for r in records}
    for item, record in before.items():
        assert by_id[item] == record, f"{item} was scored again"  # same pid and time: the first run's record
    assert {r["scored"]["pid"] for r in by_id.values() if r["item_id"] not in before} == {again.pid}
    result = json.loads((tmp_path / "run" / "eval" / "base" / "temporal_order.json").read_text())
    assert result["n"] > 0 and result["settings"]["frames"]["max_frames"] == 4
    # A third run does nothing.
    third = subprocess.run([sys.executable, "-m", "temple_core", "run", str(recipe), "--no-progress"], capture_output=True, text=True)
    assert third.returncode == 0 and "up to date" in third.stdout


def _data(tmp_path, **eval_section):
    return {"run_dir": str(tmp_path / "run"), "eval": {"backend": {"name": "qwen2_vl", "preset": "tiny-random"}, **eval_section}}


@pytest.mark.parametrize("section,path,message", [
    ({"checkpoints": ["base"], "evaluators": []}, "eval.evaluators", "at least one evaluator"),
    ({"checkpoints": ["final"], "evaluators": ["temporal_order"]}, "eval.checkpoints[0]", "no train section"),
    ({"checkpoints": ["base", "/no/such/model"], "evaluators": ["temporal_order"]}, "eval.checkpoints[1]", "not base, final"),
    ({"checkpoints": ["base", "base"], "evaluators": ["temporal_order"]}, "eval.checkpoints[1]", "listed twice"),
    ({"checkpoints": ["base"], "evaluators": ["temporal_order", "temporal_order"]}, "eval.evaluators[1]", "give it a label"),
    ({"checkpoints": ["base"], "evaluators": [{"name": "multiple_choice"}]}, "eval.evaluators[0]", "file"),
    ({"checkpoints": ["base"], "evaluators": ["temporal_ordr"]}, "eval.evaluators[0]", "did you mean 'temporal_order'"),
    ({"checkpoints": ["base"], "evaluators": ["temporal_order"], "frames": {"max_frames": 0}}, "eval.frames.max_frames", ">= 1"),
])
def test_recipe_errors_name_their_key(tmp_path, section, path, message):
    with pytest.raises(RecipeError) as info:
        recipe_from_data(_data(tmp_path, **section), plugins=get_plugin_manager())
    assert info.value.path == path and message in info.value.message, str(info.value)


def test_train_stages_are_checkpoints(tmp_path):
    pm = get_plugin_manager()
    data = {"run_dir": str(tmp_path / "run"),
            "train": {"backend": {"name": "qwen2_vl", "preset": "tiny-random"},
                      "stages": [{"trainer": "dpo", "data": str(tmp_path / "p.jsonl")}, {"trainer": "dpo", "data": str(tmp_path / "p.jsonl")}]},
            "eval": {"checkpoints": ["base", "0-dpo", "final"], "evaluators": ["temporal_order"]}}
    (tmp_path / "p.jsonl").write_text("")
    recipe = recipe_from_data(data, plugins=pm)
    assert recipe.eval.checkpoints == ["base", "0-dpo", "final"]
    data["eval"]["checkpoints"] = ["dpo"]
    with pytest.raises(RecipeError, match=r"eval\.checkpoints\[0\]: 2 train stages are named 'dpo' \(0-dpo, 1-dpo\)"):
        recipe_from_data(data, plugins=pm)


def test_each_checkpoint_evaluator_pair_is_a_unit_of_the_ledger(tmp_path):
    """Changing one evaluator's options re-scores that evaluator only, its old files moved
    aside; the other's result is kept as it was."""
    from pathlib import Path

    from temple_core.store import Ledger

    sample = Path(__file__).resolve().parents[2] / "examples" / "eval" / "sample_mc.jsonl"
    event_videos(tmp_path / "held", [3, 4, 3, 5])

    def write(mode):
        path = tmp_path / "recipe.yaml"
        path.write_text(yaml.safe_dump({
            "run_dir": str(tmp_path / "run"), "seed": 3,
            "eval": {"backend": {"name": "qwen2_vl", "preset": "tiny-random"}, "checkpoints": ["base"],
                     "frames": {"max_frames": 4, "max_pixels": 3136}, "batch_size": 4,
                     "evaluators": [{"name": "temporal_order", "videos": {"paths": [str(tmp_path / "held")]}, "difficulties": [2]},
                                    {"name": "multiple_choice", "file": str(sample), "mode": mode, "limit": 2}]},
        }))
        result = subprocess.run([sys.executable, "-m", "temple_core", "run", str(path), "--no-progress"], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stdout

    write("likelihood")
    base = tmp_path / "run" / "eval" / "base"
    kept = (base / "temporal_order.jsonl").read_bytes(), (base / "temporal_order.json").read_bytes()
    out = write("generate")
    assert "temporal_order done earlier" in out
    assert ((base / "temporal_order.jsonl").read_bytes(), (base / "temporal_order.json").read_bytes()) == kept
    assert sorted(p.name.split(".stale-")[0] for p in base.glob("*.stale-*")) == ["multiple_choice.json", "multiple_choice.jsonl"]
    assert json.loads((base / "multiple_choice.json").read_text())["settings"]["options"]["mode"] == "generate"
    events = [(r["unit"], r["event"]) for r in read_jsonl(tmp_path / "run" / "ledger.jsonl") if r["unit"].startswith("eval/")]
    assert events.count(("eval/base/temporal_order", "finished")) == 1
    assert events.count(("eval/base/multiple_choice", "finished")) == 2
    assert ("eval/base/multiple_choice", "moved_aside") in events
    assert Ledger(tmp_path / "run").state("eval/base/multiple_choice").summary["evaluator"] == "multiple_choice"


def _faulty_evaluators():
    """Two third-party evaluators that get the contract wrong, as a plugin author might."""
    import types

    import attrs

    from temple_core.contracts import Evaluator
    from temple_core.evaluation import EvaluatorOptions
    from temple_core.hookspecs import hookimpl

    @attrs.define(kw_only=True, frozen=True)
    class Options(EvaluatorOptions):
        pass

    class DictResult(Evaluator):
        needs_backend = False

        def __init__(self, options):
            self.options = options

        def score(self, request):
            request.items.add({"item_id": "a", "right": 1})

        def result(self, request, records):
            return {"score": 1.0}  # not an EvalResult

    DictResult.Options = Options

    class NoItemId(DictResult):
        def score(self, request):
            request.items.add({"right": 1})

    module = types.ModuleType("plugin_faulty_evaluators")

    def register_evaluators(register):
        register("dict_result", DictResult)
        register("no_item_id", NoItemId)

    module.register_evaluators = hookimpl(register_evaluators)
    return module


@pytest.mark.parametrize("name, message", [
    ("dict_result", r"evaluator 'dict_result' \(eval\.evaluators\[0\]\): result\(\) returned dict; it returns temple_core\.evaluation\.EvalResult"),
    ("no_item_id", r"evaluator 'no_item_id' added a record without an 'item_id' \(keys \['right'\]\)"),
])
def test_an_evaluator_that_breaks_its_contract_is_named(tmp_path, name, message):
    """Was: an AttributeError / KeyError traceback from inside the stage."""
    from temple_core.errors import PluginError
    from temple_core.plugins import PluginManager
    from temple_core.stages.runner import run_stages

    pm = PluginManager()
    assert pm.add_module(_faulty_evaluators(), "faulty 1.0") is None
    recipe = recipe_from_data({"run_dir": str(tmp_path / "run"), "eval": {
        "backend": {"name": "qwen2_vl", "preset": "tiny-random"}, "checkpoints": ["base"], "evaluators": [{"name": name}]}}, plugins=pm)
    with pytest.raises(PluginError, match=message):
        run_stages(recipe, pm, stages=["eval"], progress=False, log=lambda *_: None)
