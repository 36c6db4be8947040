"""The plugin manager: built-ins and entry points loaded alike, duplicates, failures, limits."""

import json
import os
import re
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


def test_a_name_two_plugins_give_is_refused_for_both_and_nothing_else_stops():
    pm = PluginManager(load=False)
    assert pm.add_module(_module("first_plugin", "perturbations", "twist"), "first-dist 1.0") is None
    failed = pm.add_module(_module("second_plugin", "perturbations", "twist"), "second-dist 2.0")
    message = failed.error
    assert "twist" in message
    assert "first-dist 1.0" in message and "first_plugin" in message
    assert "second-dist 2.0" in message and "second_plugin" in message
    # Which of the two would run depends on install order: neither does, and the recipe is told why.
    with pytest.raises(PluginError, match=r"two perturbations components are named 'twist'.*uninstall one of them, or list the one to keep in TEMPLE_LOAD_PLUGINS \(with builtin\)"):
        pm.get("perturbations", "twist")
    assert "twist" not in pm.names("perturbations")
    # Another plugin still loads.
    assert pm.add_module(_module("third_plugin", "perturbations", "turn"), "third-dist 1.0") is None
    assert pm.get("perturbations", "turn").source == "third-dist 1.0"


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
    failed = pm.add_module(_registering("caption_generators", "broken", NoGenerate), "x 1.0")
    assert re.search("plugin_broken: .*lacks generate of CaptionGenerator", failed.error), failed
    failed = pm.add_module(_registering("caption_generators", "wrong", WrongCapability), "x 1.0")
    assert "capability needs_backend = 'yes' has the wrong type" in failed.error
    # The component is not there, and asking for it gives the plugin's error.
    with pytest.raises(PluginError, match="caption_generators 'broken' is provided by plugin plugin_broken .*which failed to load: .*lacks generate"):
        pm.get("caption_generators", "broken")
    assert pm.names("caption_generators") == []


def test_a_plugin_that_breaks_a_rule_is_all_or_nothing_and_the_others_load():
    """One module registering a good and a bad component: neither loads (half a plugin is
    worse than none); the error is recorded, not raised, so every other plugin loads."""
    module = types.ModuleType("plugin_half")

    class Good:
        def __call__(self, items, difficulty, rng):
            return items

    class NotAttrs:
        strength = 1

    def register_perturbations(register):
        register("good", Good)
        register("bad", Good, options=NotAttrs)

    module.register_perturbations = hookimpl(register_perturbations)
    pm = PluginManager(load=False)
    failed = pm.add_module(module, "half 1.0")
    assert failed.error == "plugin_half: options of perturbations 'bad' must be an attrs class"
    assert failed.declared == [("perturbations", "good"), ("perturbations", "bad")]
    assert pm.names("perturbations") == []
    with pytest.raises(PluginError, match="'good' is provided by plugin plugin_half .*must be an attrs class"):
        pm.get("perturbations", "good")
    assert pm.add_module(_module("fine_plugin", "perturbations", "fine"), "fine 1.0") is None
    # A hook function that raises is a failed plugin too.
    raising = types.ModuleType("plugin_raising")

    def register_exporters(register):
        raise RuntimeError("boom")

    raising.register_exporters = hookimpl(register_exporters)
    assert pm.add_module(raising, "r 1.0").error == "plugin_raising: RuntimeError: boom"


def test_a_misspelt_hook_or_no_hook_is_a_failed_plugin_not_silence():
    module = types.ModuleType("plugin_typo")

    def register_perturbation(register):  # singular: not a temple hook
        register("typo", object)

    module.register_perturbation = hookimpl(register_perturbation)
    pm = PluginManager(load=False)
    failed = pm.add_module(module, "typo 1.0")
    assert failed.error.startswith("plugin_typo: register_perturbation is not a temple hook (did you mean 'register_perturbations'?); hooks: ")
    empty = types.ModuleType("plugin_empty")
    assert "implements no temple hook" in pm.add_module(empty, "empty 1.0").error
    rows = pm.listing("perturbations")  # failed plugins of unknown kind are shown under any --kind
    assert {row["module"] for row in rows if row["status"].startswith("failed")} == {"plugin_typo", "plugin_empty"}


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


def test_an_option_type_no_recipe_can_give_is_found_when_the_plugin_registers():
    """Was found only when a recipe first set the field ("unsupported option type ... (a
    plugin bug)"), on the user's side."""
    import attrs

    class Turn:
        @attrs.define(kw_only=True, frozen=True)
        class Options:
            strength: int = 1
            window: tuple[int, int] = (0, 1)

        def __init__(self, options):
            self.options = options

        def __call__(self, items, difficulty, rng):
            return items

    pm = PluginManager(load=False)
    failed = pm.add_module(_registering("perturbations", "turn", Turn), "x 1.0")
    assert failed.error.startswith("plugin_turn: options of perturbations 'turn': field 'window' is typed tuple[int, int], which a recipe cannot give (supported: int, float, bool, str")
    # Every built-in options class passes the same check.
    assert not PluginManager().failed


def test_registration_edge_cases_are_failures_that_explain_themselves():
    """A hook with the wrong argument name (pluggy refuses it when it registers), a hook
    named through specname, a component offered after the one that failed its plugin, and
    the way out of a name clash with a built-in."""
    pm = PluginManager(load=False)
    wrong_arg = types.ModuleType("plugin_wrong_arg")

    def register_perturbations(reg):
        reg("x", object)

    wrong_arg.register_perturbations = hookimpl(register_perturbations)
    failed = pm.add_module(wrong_arg, "w 1.0")
    assert failed is not None and "plugin_wrong_arg" in failed.error and "reg" in failed.error, failed
    assert not pm.pm.is_registered(wrong_arg)

    named = types.ModuleType("plugin_specname")

    class Keep:
        def __call__(self, items, difficulty, rng):
            return items

    def my_perturbations(register):
        register("keep", Keep)

    named.my_perturbations = hookimpl(specname="register_perturbations")(my_perturbations)
    assert pm.add_module(named, "s 1.0") is None and pm.get("perturbations", "keep").source == "s 1.0"

    half = types.ModuleType("plugin_first_bad")

    class NotAttrs:
        pass

    def register_exporters(register):
        register("one_bad", object, options=NotAttrs)
        register("three", object)

    half.register_exporters = hookimpl(register_exporters)
    pm.add_module(half, "h 1.0")
    with pytest.raises(PluginError, match=r"unknown exporter 'three'.*note: plugin plugin_first_bad \(h 1\.0\) failed to load: .*must be an attrs class"):
        pm.get("exporters", "three")

    builtins = PluginManager()
    builtins.add_module(_module("plugin_my_drop", "perturbations", "drop"), "my-drop 1.0")
    with pytest.raises(PluginError, match=r"two perturbations components are named 'drop': one from temple \(built-in\).*uninstall my-drop to use the built-in, or keep the built-ins alone with TEMPLE_LOAD_PLUGINS=builtin"):
        builtins.get("perturbations", "drop")


def test_an_options_field_without_a_type_is_named():
    import attrs

    class Loose:
        @attrs.define(kw_only=True, frozen=True)
        class Options:
            strength = attrs.field(default=1)

        def __init__(self, options):
            self.options = options

        def __call__(self, items, difficulty, rng):
            return items

    failed = PluginManager(load=False).add_module(_registering("perturbations", "loose", Loose), "x 1.0")
    assert failed.error == ("plugin_loose: options of perturbations 'loose': field 'strength' has no type annotation, "
                            "so a recipe's value for it cannot be checked")
