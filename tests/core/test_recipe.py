"""Recipe validation: every user mistake gives one message naming the recipe path, exit code 2."""

import copy
import subprocess
import sys

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from temple_core.cli import main
from temple_core.errors import RecipeError
from temple_core.plugins import get_plugin_manager
from temple_core.recipe import recipe_from_data
from testkit.fuzz import key_paths

VALID = {
    "run_dir": "runs/test",
    "seed": 3,
    "select": {},  # generate reads select's output: without the section it must exist already
    "generate": {
        "captioner": {"name": "heuristic"},
        "perturbations": [{"name": "drop"}, {"name": "shuffle", "variant": "paper"}, {"name": "swap-halves"}],
        "difficulties": [16, 8, 4, 2],
        "filters": {"max_length_ratio": 1.5},
    },
}


def validate(tmp_path, capsys, data=None, text=None):
    path = tmp_path / "recipe.yaml"
    path.write_text(text if text is not None else yaml.safe_dump(data))
    code = main(["validate", str(path)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def mutated(**changes):
    data = copy.deepcopy(VALID)
    for dotted, value in changes.items():
        node = data
        *parents, last = dotted.split("/")
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return data


def test_valid_recipe(tmp_path, capsys):
    code, out, err = validate(tmp_path, capsys, VALID)
    assert code == 0, err
    assert "ok" in out and "generate" in out
    recipe = recipe_from_data(VALID)
    assert recipe.generate.perturbations[1].options.variant == "paper"
    assert recipe.generate.sampling.temperature == 0.7  # SPEC default when not given


@pytest.mark.parametrize(
    "changes, path, words",
    [
        ({"generate/difficultes": [4]}, "generate.difficultes", ["did you mean 'difficulties'"]),
        ({"seed": "zero"}, "seed", ["expected an integer"]),
        ({"generate/filters/max_length_ratio": 0.5}, "generate.filters.max_length_ratio", [">= 1.0"]),
        ({"generate/difficulties": [16, 0]}, "generate.difficulties", [">= 1"]),
        ({"generate/perturbations/1": {"name": "shufle"}}, "generate.perturbations[1].name", ["did you mean 'shuffle'", "drop", "reverse"]),
        ({"generate/perturbations/0": {"name": "drop", "variantt": "paper"}}, "generate.perturbations[0].variantt", ["did you mean 'variant'"]),
        ({"generate/perturbations/0": {"name": "drop", "variant": "prose"}}, "generate.perturbations[0].variant", ["released", "paper"]),
        ({"videos": {"paths": ["no/such/video.mp4"]}}, "videos.paths[0]", ["no such file"]),
        ({"videos": {"paths": ["no/such/*.mp4"]}}, "videos.paths[0]", ["no file matches"]),
        ({"generate/sampling": {"temperature": "hot"}}, "generate.sampling.temperature", ["expected a number"]),
        ({"generate/captioner": 5}, "generate.captioner", ["expected {name"]),
    ],
)
def test_each_mistake_names_its_path(tmp_path, capsys, changes, path, words):
    code, out, err = validate(tmp_path, capsys, mutated(**changes))
    assert code == 2
    assert err.startswith(f"temple: error: {path}: "), err
    for word in words:
        assert word in err
    assert "Traceback" not in err and err.count("\n") == 1


def test_not_yaml_gives_line_and_column(tmp_path, capsys):
    code, out, err = validate(tmp_path, capsys, text="run_dir: x\ngenerate: {captioner: [oops\n")
    assert code == 2
    assert "not valid YAML at line 3" in err and "column" in err


def test_missing_recipe_and_empty_recipe(tmp_path, capsys):
    assert main(["validate", str(tmp_path / "nope.yaml")]) == 2
    assert "recipe file not found" in capsys.readouterr().err
    code, out, err = validate(tmp_path, capsys, {"run_dir": "x"})
    assert code == 2 and "no stage section" in err


def test_cli_no_traceback_but_debug_shows_it(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(mutated(seed="zero")))
    plain = subprocess.run([sys.executable, "-m", "temple_core", "validate", str(path)], capture_output=True, text=True)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr and "seed: expected an integer" in plain.stderr
    debug = subprocess.run(
        [sys.executable, "-m", "temple_core", "--debug", "validate", str(path)], capture_output=True, text=True
    )
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "RecipeError" in debug.stderr


# -- hypothesis: a mutated valid recipe gives a recipe or a RecipeError, never anything else --

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 40), st.floats(allow_nan=True), st.text(max_size=8),
    st.sampled_from(["drop", "shuffle", "heuristic", "paper", "released", "runs/x"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=6,
)


@st.composite
def mutations(draw):
    data = copy.deepcopy(VALID)
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in key_paths(data) if p]
        target = draw(st.sampled_from(paths))
        parent = data
        for key in target[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            parent[target[-1]] = draw(values)
        elif action == "delete":
            del parent[target[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.text(max_size=10))] = draw(values)
        else:
            parent.append(draw(values))
    return data


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutations())
def test_mutated_recipes_only_ever_raise_recipe_errors(data):
    try:
        recipe_from_data(data, plugins=get_plugin_manager())
    except RecipeError as exc:
        assert str(exc)


def test_paths_are_relative_to_the_recipe_file_whatever_the_working_directory(tmp_path, monkeypatch):
    """videos, data files, checkpoints and run_dir are resolved against the recipe's folder;
    --run-dir against the working directory (it is a command-line path)."""
    import json as _json

    from temple_core.recipe import load_recipe

    project = tmp_path / "project"
    (project / "recipes").mkdir(parents=True)
    (project / "clips").mkdir()
    (project / "clips" / "a.mp4").write_bytes(b"")
    (project / "data").mkdir()
    (project / "data" / "sft.jsonl").write_text(_json.dumps({"messages": [], "videos": []}) + "\n")
    (project / "ckpt").mkdir()
    recipe_path = project / "recipes" / "r.yaml"
    recipe_path.write_text(yaml.safe_dump({
        "run_dir": "../runs/r",
        "videos": {"paths": ["../clips/*.mp4"]},
        "train": {
            "backend": {"name": "qwen2_vl", "path": "../ckpt"},
            "stages": [{"trainer": "sft", "data": "../data/sft.jsonl"}],
        },
    }))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    recipe = load_recipe(recipe_path)
    assert recipe.run_dir == str(project / "runs" / "r")
    assert recipe.videos.paths == [str(project / "clips" / "*.mp4")]
    assert recipe.train.backend.options.path == str(project / "ckpt")
    assert recipe.train.stages[0].data == str(project / "data" / "sft.jsonl")
    assert load_recipe(recipe_path, run_dir="out").run_dir == str(elsewhere / "out")
    # A path that does not exist is named as the user wrote it, with what it resolved to.
    (project / "data" / "sft.jsonl").unlink()
    with pytest.raises(RecipeError, match=r"train.stages\[0\].data: no such file: ../data/sft.jsonl \(.*project/data/sft.jsonl\)"):
        load_recipe(recipe_path)


def test_writing_the_sample_videos_is_said_once(tmp_path):
    """Built-in samples are written on first use, with one line saying so (cutting
    transnetv2_test is ~10 s of silent work otherwise); once written, nothing is said."""
    from temple_core.recipe import VideosConfig, resolve_videos

    said = []
    first = resolve_videos(VideosConfig(samples=["synthetic"]), tmp_path, log=said.append)
    assert len(said) == 1 and "'synthetic'" in said[0] and str(tmp_path / "videos") in said[0], said
    assert resolve_videos(VideosConfig(samples=["synthetic"]), tmp_path, log=said.append) == first
    assert len(said) == 1
