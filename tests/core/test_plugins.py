"""The plugin manager: built-ins and entry points loaded alike, duplicates, failures, limits."""

import json
import os
import subprocess
import sys
import types

import pytest
import yaml

from temple_core.errors import PluginError
from temple_core.hookspecs import KINDS, hookimpl
from temple_core.plugins import BUILTIN, PluginManager, read_registry


def temple(*args, env=None, cwd=None):
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "temple_core", *args], capture_output=True, text=True, env=full_env, cwd=cwd
    )


def test_list_json_names_every_builtin_and_the_third_party_plugin():
    result = temple("plugins", "list", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    listed = {(r["kind"], r["name"]): r for r in rows}
    for entry in read_registry():
        row = listed[(entry["kind"], entry["name"])]
        assert row["source"] == BUILTIN and row["status"] == "ok", row
        assert row["module"] == entry["module"]
    swap = listed[("perturbations", "swap-halves")]
    assert swap["source"].startswith("temple-swap-halves ")
    assert swap["status"] == "ok" and swap["summary"]
    llava = listed[("backends", "llava_onevision")]  # the example third-party backbone package
    assert llava["source"].startswith("temple-llava-onevision ") and llava["status"] == "ok"


def test_list_by_kind_and_text_output():
    result = temple("plugins", "list", "--kind", "perturbations")
    assert result.returncode == 0
    table, _, keys = result.stdout.strip().partition("\n\nwhere a recipe names them:\n")
    lines = table.splitlines()
    assert lines and all(line.startswith("perturbations") for line in lines)
    assert any("swap-halves" in line and "temple-swap-halves" in line for line in lines)
    assert keys.split() == ["perturbations", "generate.perturbations[]"]  # the recipe key of the kind listed
    # Every kind, with the keys a recipe writes it under (a plugin named under another key is an error).
    every = temple("plugins", "list").stdout.split("where a recipe names them:\n")[1]
    for kind, where in [("caption_generators", "generate.captioner"), ("backends", "generate.backend, train.backend, eval.backend"),
                        ("trainers", "train.stages[].trainer"), ("evaluators", "eval.evaluators[]"), ("shot_detectors", "select.shot_detector"),
                        ("similarity_encoders", "select.encoder"), ("exporters", "generate.exporters[]")]:
        assert f"  {kind}" in every and where in every.split(f"  {kind}", 1)[1].splitlines()[0], (kind, every)
    assert set(KINDS) <= {line.split()[0] for line in every.splitlines()}


def test_registry_names_real_kinds():
    for entry in read_registry():
        assert entry["kind"] in KINDS


def _module(name, kind, component_name):
    module = types.ModuleType(name)

    class Thing:
        """A thing (a perturbation that keeps the order)."""

        def __call__(self, items, difficulty, rng):
            return items

    def register(register):
        register(component_name, Thing)

    register.__name__ = f"register_{kind}"
    setattr(module, f"register_{kind}", hookimpl(register))
    return module


def test_duplicate_names_error_names_both_sources():
    pm = PluginManager(load=False)
    pm.add_module(_module("first_plugin", "perturbations", "twist"), "first-dist 1.0")
    with pytest.raises(PluginError) as info:
        pm.add_module(_module("second_plugin", "perturbations", "twist"), "second-dist 2.0")
    message = str(info.value)
    assert "twist" in message
    assert "first-dist 1.0" in message and "first_plugin" in message
    assert "second-dist 2.0" in message and "second_plugin" in message


def test_unknown_name_lists_what_exists():
    pm = PluginManager()
    with pytest.raises(PluginError) as info:
        pm.get("perturbations", "shufle")
    assert "did you mean 'shuffle'" in str(info.value)
    assert "drop" in str(info.value) and "reverse" in str(info.value)


@pytest.fixture
def broken_dist(tmp_path):
    """A real installed-looking distribution whose plugin module fails to import."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "broken_temple_plugin.py").write_text("raise ImportError('needs libfoo, which is not installed')\n")
    info = site / "broken_temple_plugin-0.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-temple-plugin\nVersion: 0.3\n")
    (info / "entry_points.txt").write_text("[temple]\nbroken = broken_temple_plugin\n")
    return site


def test_failed_plugin_is_reported_and_others_still_load(broken_dist):
    env = {"PYTHONPATH": str(broken_dist) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    result = temple("plugins", "list", "--json", env=env)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    failed = [r for r in rows if r["status"] != "ok"]
    assert len(failed) == 1
    assert failed[0]["source"] == "broken-temple-plugin 0.3"
    assert "needs libfoo" in failed[0]["status"] and failed[0]["module"] == "broken_temple_plugin"
    assert any(r["name"] == "swap-halves" and r["status"] == "ok" for r in rows)
    assert any(r["name"] == "drop" and r["status"] == "ok" for r in rows)


def test_a_recipe_asking_for_a_broken_plugins_component_gets_the_import_error(broken_dist, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {"run_dir": str(tmp_path / "run"), "generate": {"captioner": {"name": "heuristic"}, "perturbations": [{"name": "broken"}]}}
        )
    )
    env = {"PYTHONPATH": str(broken_dist) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    result = temple("validate", str(recipe), env=env)
    assert result.returncode == 2
    assert "generate.perturbations[0].name" in result.stderr
    assert "broken_temple_plugin" in result.stderr and "needs libfoo" in result.stderr
    assert "Traceback" not in result.stderr


def test_load_limit_environment_variable():
    only_builtin = json.loads(temple("plugins", "list", "--json", env={"TEMPLE_LOAD_PLUGINS": "builtin"}).stdout)
    assert not any(r["name"] == "swap-halves" for r in only_builtin)
    assert any(r["name"] == "drop" for r in only_builtin)
    only_two = json.loads(temple("plugins", "list", "--json", env={"TEMPLE_LOAD_PLUGINS": "drop,swap_halves"}).stdout)
    assert {r["name"] for r in only_two} == {"drop", "swap-halves"}
    nothing = temple("plugins", "list", env={"TEMPLE_LOAD_PLUGINS": ""})
    assert nothing.stdout.strip() == "no plugins loaded"


def _registering(kind, name, factory):
    module = types.ModuleType(f"plugin_{name}")

    def register(register):
        register(name, factory)

    register.__name__ = f"register_{kind}"
    setattr(module, f"register_{kind}", hookimpl(register))
    return module


def test_a_factory_is_checked_against_its_kinds_contract():
    from temple_core.contracts import CaptionGenerator

    class NoGenerate(CaptionGenerator):
        """Inherits only the contract's abstract generate."""

    class WrongCapability:
        needs_backend = "yes"

        def generate(self, *args, **kwargs):
            return []

    pm = PluginManager(load=False)
    with pytest.raises(PluginError, match="plugin_broken: .*lacks generate of CaptionGenerator"):
        pm.add_module(_registering("caption_generators", "broken", NoGenerate), "x 1.0")
    with pytest.raises(PluginError, match="capability needs_backend = 'yes' has the wrong type"):
        pm.add_module(_registering("caption_generators", "wrong", WrongCapability), "x 1.0")


def test_capabilities_are_declared_or_take_the_contracts_default():
    class DuckTyped:  # not a subclass: declares nothing, gets CaptionGenerator's default
        def generate(self, *args, **kwargs):
            return []

    class NoModel:
        needs_backend = False

        def generate(self, *args, **kwargs):
            return []

    pm = PluginManager(load=False)
    pm.add_module(_registering("caption_generators", "duck", DuckTyped), "x 1.0")
    pm.add_module(_registering("caption_generators", "nomodel", NoModel), "x 1.0")
    assert pm.get("caption_generators", "duck").capability("needs_backend") is True
    assert pm.get("caption_generators", "nomodel").capability("needs_backend") is False
    builtins = PluginManager()
    assert builtins.get("trainers", "dpo").capability("data_kind") == "pairs"
    assert builtins.get("trainers", "sft").capability("data_kind") == "sft"
    assert builtins.get("caption_generators", "heuristic").capability("needs_backend") is False
    assert builtins.get("perturbations", "swap-halves").capabilities == {}, "a duck-typed third-party plugin loads"


def test_a_function_factory_is_checked_when_it_builds():
    def make():
        return object()  # not a perturbation: nothing to call

    pm = PluginManager(load=False)
    pm.add_module(_registering("perturbations", "nothing", make), "x 1.0")
    with pytest.raises(PluginError, match="built a object without __call__"):
        pm.build("perturbations", "nothing")
