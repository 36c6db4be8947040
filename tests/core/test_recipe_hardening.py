"""Recipes that would fail later are refused by `temple validate`: one line, exit 2, no traceback.

Each case is one finding of a hostile-but-realistic probe of temple (issue 16): numbers out of
range (numpy's seed range, infinities, sizes that allocate), empty lists, duplicate keys
(a duplicated section included), alias bombs, bytes that are not UTF-8, a UTF-16 file,
20,000 levels of nesting, an empty run_dir. Every case runs through the real command line.
"""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

from temple_core.cli import main
from temple_core.errors import RecipeError

BASE = """\
run_dir: {run_dir}
seed: 0
videos:
  samples: [synthetic]
select:
  shot_detector: {{name: pyscenedetect}}
  encoder: {{name: colorhist}}
generate:
  captioner: {{name: heuristic}}
  perturbations: [{{name: drop}}, {{name: shuffle}}, {{name: reverse}}]
  difficulties: [16, 8, 4, 2]
train:
  backend: {{name: qwen2_vl, preset: tiny-random}}
  stages:
    - {{trainer: dpo, difficulty: 16, epochs: 1.0}}
"""


def base(tmp_path) -> str:
    return BASE.format(run_dir=tmp_path / "run")


def validate_text(tmp_path, capsys, text: str | bytes):
    path = tmp_path / "recipe.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    code = main(["validate", str(path)])
    captured = capsys.readouterr()
    return code, captured.err


def refused(code, err, where: str, *words: str):
    assert code == 2, err
    assert err.startswith(f"temple: error: {where}"), err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for word in words:
        assert word in err, err


def test_the_base_recipe_is_valid(tmp_path, capsys):
    code, err = validate_text(tmp_path, capsys, base(tmp_path))
    assert code == 0, err


@pytest.mark.parametrize(
    "old, new, where, words",
    [
        # numpy's seeds are 0 .. 2**32 - 1 (np.random.seed refuses the rest, after select and generate ran)
        ("seed: 0", "seed: -1", "seed", [">= 0"]),
        ("seed: 0", "seed: 4294967296", "seed", ["4294967295"]),
        ("seed: 0", "seed: 100000000000000000000", "seed", ["out of range"]),
        ("epochs: 1.0", "epochs: .inf", "train.stages[0].epochs", ["finite"]),
        ("epochs: 1.0", "epochs: .nan", "train.stages[0].epochs", ["finite"]),
        ("epochs: 1.0", "epochs: 1e400", "train.stages[0].epochs", []),
        ("epochs: 1.0", f"epochs: {10**400}", "train.stages[0].epochs", []),
        ("epochs: 1.0", "lr: -.inf", "train.stages[0].lr", []),
        ("epochs: 1.0", "max_steps: 0", "train.stages[0].max_steps", ["-1"]),
        ("epochs: 1.0", "lora_r: 100000000", "train.stages[0].lora_r", ["<="]),
        ("epochs: 1.0", "num_workers: 100000", "train.stages[0].num_workers", ["<="]),
        ("perturbations: [{name: drop}, {name: shuffle}, {name: reverse}]", "perturbations: []",
         "generate.perturbations", ["at least one"]),
        ("difficulties: [16, 8, 4, 2]", "difficulties: [16, 8, 4, 2]\n  prompts: []", "generate.prompts", ["at least one prompt"]),
        ("encoder: {name: colorhist}", "encoder: {name: colorhist}\n  keyframes_per_segment: 100000000",
         "select.keyframes_per_segment", ["<="]),
        ("backend: {name: qwen2_vl, preset: tiny-random}",
         "backend: {name: qwen2_vl, preset: tiny-random, min_pixels: 1000000000000}",
         "train.backend", ["min_pixels"]),
        ("samples: [synthetic]", "samples: [synthetic]\n  extensions: []", "videos.extensions", ["at least one"]),
    ],
)
def test_numbers_and_lists_that_would_fail_later(tmp_path, capsys, old, new, where, words):
    text = base(tmp_path)
    assert old in text
    code, err = validate_text(tmp_path, capsys, text.replace(old, new, 1))
    refused(code, err, where, *words)


def test_the_seed_range_is_numpys(tmp_path, capsys):
    """The bound is numpy's own: np.random.seed takes 2**32 - 1 and refuses 2**32 and -1 --
    and the recipe accepts exactly the seeds numpy takes (0 and 2**32 - 1 validate)."""
    np.random.seed(2**32 - 1)
    for bad in (2**32, -1):
        with pytest.raises(ValueError):
            np.random.seed(bad)
    for good in ("0", str(2**32 - 1)):
        code, err = validate_text(tmp_path, capsys, base(tmp_path).replace("seed: 0", f"seed: {good}", 1))
        assert code == 0, err


def test_a_duplicate_key_is_refused_with_both_lines(tmp_path, capsys):
    text = base(tmp_path).replace("seed: 0", "seed: 0\nseed: 1")
    code, err = validate_text(tmp_path, capsys, text)
    refused(code, err, "", "duplicate key 'seed'", "line 3", "line 2")


def test_a_duplicate_key_inside_a_component_is_refused(tmp_path, capsys):
    text = base(tmp_path).replace("{name: pyscenedetect}", "{name: pyscenedetect, threshold: 20, threshold: 30}")
    code, err = validate_text(tmp_path, capsys, text)
    refused(code, err, "", "duplicate key 'threshold'")


def test_a_duplicated_section_is_refused(tmp_path, capsys):
    text = base(tmp_path) + "select:\n  shot_detector: {name: transnetv2}\n"
    code, err = validate_text(tmp_path, capsys, text)
    refused(code, err, "", "duplicate key 'select'", "line 5")


def test_merge_keys_and_small_aliases_still_work(tmp_path, capsys):
    """YAML's merge key overrides merged keys by design: that is not a duplicate."""
    text = base(tmp_path).replace(
        "    - {trainer: dpo, difficulty: 16, epochs: 1.0}\n",
        "    - &common {trainer: dpo, difficulty: 16, epochs: 1.0}\n    - {<<: *common, difficulty: 8, name: second}\n",
    )
    code, err = validate_text(tmp_path, capsys, text)
    assert code == 0, err


def test_an_alias_bomb_is_refused_quickly(tmp_path, capsys):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    bomb = "\n".join(lines)
    text = base(tmp_path).replace(
        "epochs: 1.0}", "epochs: 1.0, args: {model_init_kwargs: {bomb: *a8}}}"
    )
    text = "x-bomb:\n" + "\n".join("  " + line for line in bomb.splitlines()) + "\n" + text
    started = time.time()
    code, err = validate_text(tmp_path, capsys, text)
    refused(code, err, "", "alias")
    assert time.time() - started < 10


def test_a_recursive_alias_is_refused(tmp_path, capsys):
    text = base(tmp_path).replace("epochs: 1.0}", "epochs: 1.0, args: {model_init_kwargs: &loop {self: *loop}}}")
    code, err = validate_text(tmp_path, capsys, text)
    refused(code, err, "", "recursive alias")


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda t: t.replace("seed: 0", "seed: 0 # caf\xe9").encode("latin-1"), ["UTF-8", "line 2"]),
        (lambda t: t.encode("utf-16"), ["UTF-16"]),
        (lambda t: t.encode("utf-32"), ["UTF-32"]),
        (lambda t: t.replace("seed: 0", "seed: 0\x00").encode(), ["line 2"]),
    ],
)
def test_encoding_errors_are_one_line(tmp_path, capsys, make, words):
    code, err = validate_text(tmp_path, capsys, make(base(tmp_path)))
    refused(code, err, "", *words)


def test_a_utf8_bom_is_fine(tmp_path, capsys):
    code, err = validate_text(tmp_path, capsys, b"\xef\xbb\xbf" + base(tmp_path).encode())
    assert code == 0, err


@pytest.mark.parametrize("kind", ["flow", "block"])
def test_deep_nesting_is_one_line(tmp_path, capsys, kind):
    if kind == "flow":
        deep = "x-deep: " + "[" * 20000 + "]" * 20000 + "\n"
    else:
        deep = "x-deep:\n" + "".join(" " * (i + 1) + f"k{i}:\n" for i in range(3000))
    code, err = validate_text(tmp_path, capsys, deep + base(tmp_path))
    refused(code, err, "", "nest")


def test_a_huge_integer_literal_is_one_line(tmp_path, capsys):
    code, err = validate_text(tmp_path, capsys, base(tmp_path).replace("seed: 0", "seed: " + "9" * 5000))
    refused(code, err, "")


@pytest.mark.parametrize("value", ['""', "'  '"])
def test_an_empty_run_dir_is_refused(tmp_path, capsys, value):
    text = base(tmp_path).replace(f"run_dir: {tmp_path / 'run'}", f"run_dir: {value}")
    code, err = validate_text(tmp_path, capsys, text)
    refused(code, err, "run_dir", "empty")


def test_an_empty_run_dir_option_is_refused(tmp_path, capsys):
    path = tmp_path / "recipe.yaml"
    path.write_text(base(tmp_path))
    code = main(["validate", str(path), "--run-dir", ""])
    refused(code, capsys.readouterr().err, "--run-dir", "empty")


def test_a_component_given_by_name_is_reported_where_the_name_is(tmp_path, capsys):
    """`perturbations: [drop, shufle]` has no `.name` key: the error names the list item."""
    text = base(tmp_path).replace("[{name: drop}, {name: shuffle}, {name: reverse}]", "[drop, shufle]")
    code, err = validate_text(tmp_path, capsys, text)
    refused(code, err, "generate.perturbations[1]: ", "did you mean 'shuffle'")


def test_an_unknown_trainer_is_reported_at_trainer(tmp_path, capsys):
    code, err = validate_text(tmp_path, capsys, base(tmp_path).replace("trainer: dpo", "trainer: dpoo"))
    refused(code, err, "train.stages[0].trainer: ", "did you mean 'dpo'")


def test_a_stage_name_that_leaves_the_run_directory_is_refused(tmp_path, capsys):
    text = base(tmp_path).replace("difficulty: 16,", "difficulty: 16, name: x/../../../escaped,")
    code, err = validate_text(tmp_path, capsys, text)
    refused(code, err, "train.stages[0].name: ", "single file name")


def test_traceback_free_in_a_fresh_process(tmp_path):
    """The encoding and nesting errors happen while reading: no traceback from the real entry point."""
    path = tmp_path / "recipe.yaml"
    path.write_bytes(base(tmp_path).encode("utf-16"))
    result = subprocess.run([sys.executable, "-m", "temple_core", "validate", str(path)], capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr and result.stderr.count("\n") == 1, result.stderr


def test_yaml_dump_of_the_base_is_plain():
    """The base recipe is ordinary YAML (a guard for the cases above, which edit its text)."""
    data = yaml.safe_load(BASE.format(run_dir="/tmp/x"))
    assert set(data) == {"run_dir", "seed", "videos", "select", "generate", "train"}


def test_a_stage_without_its_upstream_section_needs_its_outputs(tmp_path, capsys):
    """generate without select reads select/videos.jsonl of an earlier run; train on this
    run's pairs without generate reads generate/pairs.jsonl: refused when they are not there."""
    text = base(tmp_path)
    start, end = text.index("select:"), text.index("generate:")
    no_select = text[:start] + text[end:]
    code, err = validate_text(tmp_path, capsys, no_select)
    refused(code, err, "generate: ", "select/videos.jsonl")
    (tmp_path / "run" / "select").mkdir(parents=True)
    (tmp_path / "run" / "select" / "videos.jsonl").write_text("")
    code, err = validate_text(tmp_path, capsys, no_select)
    assert code == 0, err
    only_train = no_select[: no_select.index("generate:")] + no_select[no_select.index("train:"):]
    code, err = validate_text(tmp_path, capsys, only_train)
    refused(code, err, "train.stages[0].difficulty: ", "generate/pairs.jsonl")


@pytest.mark.parametrize("value", ["/", "'~'"])
def test_the_root_or_the_home_folder_is_not_a_run_directory(tmp_path, capsys, value):
    text = base(tmp_path).replace(f"run_dir: {tmp_path / 'run'}", f"run_dir: {value}")
    code, err = validate_text(tmp_path, capsys, text)
    refused(code, err, "run_dir: ", "a folder of its own")


@pytest.mark.parametrize("under", ["", "sub/run"])
def test_a_run_directory_that_is_or_is_inside_a_file_is_refused(tmp_path, capsys, under):
    """`--run-dir afile` (or `afile/sub/run`) was a FileExistsError / NotADirectoryError traceback."""
    (tmp_path / "afile").write_text("not a folder")
    path = tmp_path / "recipe.yaml"
    path.write_text(base(tmp_path))
    target = tmp_path / "afile" / under if under else tmp_path / "afile"
    code = main(["validate", str(path), "--run-dir", str(target)])
    refused(code, capsys.readouterr().err, "--run-dir: ", "file" if not under else f"inside {tmp_path / 'afile'}")
    assert (tmp_path / "afile").read_text() == "not a folder"
    text = base(tmp_path).replace(f"run_dir: {tmp_path / 'run'}", f"run_dir: {target}")
    code, err = validate_text(tmp_path, capsys, text)
    refused(code, err, "run_dir: ", "must be a folder")


def test_a_folder_given_as_the_recipe_is_named_so(tmp_path, capsys):
    code = main(["validate", str(tmp_path)])
    refused(code, capsys.readouterr().err, "", "is a folder")


def test_debug_is_accepted_after_the_command_and_empty_stages_are_refused(tmp_path, capsys):
    path = tmp_path / "recipe.yaml"
    path.write_text(base(tmp_path))
    assert main(["validate", str(path), "--debug"]) == 0
    assert main(["plugins", "list", "--kind", "perturbations", "--debug"]) == 0
    capsys.readouterr()
    code = main(["run", str(path), "--stages", " , "])
    refused(code, capsys.readouterr().err, "--stages: ", "names no stage")
    assert not (tmp_path / "run").exists()  # refused before anything ran
    with pytest.raises(RecipeError):  # --debug after the command shows the error itself
        main(["run", str(path), "--stages", "", "--debug"])


def test_output_to_a_reader_that_went_away_stops_quietly():
    """`temple plugins list --json | head`: a closed pipe ends the command with status 141 and
    no traceback (the read end is closed before the command writes, so it always meets it)."""
    import os

    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run([sys.executable, "-m", "temple_core", "plugins", "list", "--json"], stdout=write,
                              stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write)
    assert done.returncode == 141 and "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr


def test_a_broken_pipe_that_is_not_the_output_is_an_error(monkeypatch):
    """Only a closed standard output ends quietly: a broken pipe to a worker or a subprocess
    is a real failure and is not hidden (here stdout is a terminal-like capture, still open)."""
    import temple_core.cli as cli

    def broken(args):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(cli, "_validate", broken)
    with pytest.raises(BrokenPipeError):
        main(["validate", "x.yaml"])


def test_version(capsys):
    from temple_core import __version__

    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0 and capsys.readouterr().out.strip() == f"temple {__version__}"


def test_a_model_folder_that_does_not_exist_is_refused_at_validate(tmp_path, capsys):
    """`temple validate` said ok and `temple run` failed after select (hours, on real data)."""
    text = base(tmp_path).replace("{name: qwen2_vl, preset: tiny-random}", "{name: qwen2_vl, path: /path/to/Qwen2-VL-7B-Instruct}")
    code, err = validate_text(tmp_path, capsys, text)
    refused(code, err, "train.backend.path: ", "/path/to/Qwen2-VL-7B-Instruct")
    text = base(tmp_path).replace("{name: colorhist}", "{name: siglip, path: missing-siglip}")
    code, err = validate_text(tmp_path, capsys, text)
    refused(code, err, "select.encoder.path: ", "missing-siglip")
    (tmp_path / "missing-siglip").mkdir()  # relative to the recipe's folder
    code, err = validate_text(tmp_path, capsys, text)
    assert code == 0, err


def test_validate_names_every_missing_path_at_once(tmp_path, capsys):
    """A paper recipe with its /path/to placeholders: one `temple validate` lists each of them
    (the first in the usual form, then one line each), not one per attempt."""
    text = base(tmp_path).replace("{name: qwen2_vl, preset: tiny-random}", "{name: qwen2_vl, path: /path/to/Qwen2-VL-7B-Instruct}")
    text = text.replace("{name: colorhist}", "{name: siglip, path: missing-siglip}") + (
        "eval:\n  checkpoints: [base]\n  evaluators:\n    - {name: temporal_order, videos: {paths: [/path/to/heldout]}}\n")
    code, err = validate_text(tmp_path, capsys, text)
    assert code == 2 and "Traceback" not in err, err
    lines = err.splitlines()
    assert lines[0].startswith("temple: error: select.encoder.path: no such directory: missing-siglip"), err
    assert lines[1] == "  and 2 more problem(s) with the recipe's paths:", err
    assert lines[2] == "  train.backend.path: no such directory: /path/to/Qwen2-VL-7B-Instruct", err
    assert lines[3] == "  eval.evaluators[0].videos.paths[0]: no such file or folder: /path/to/heldout", err
    assert len(lines) == 4, err


@pytest.mark.parametrize("entry, words", [("/path/to/heldout", "no such file or folder"), ("empty-folder", "no video")])
def test_held_out_video_paths_are_checked_at_validate(tmp_path, capsys, entry, words):
    """An evaluator's videos were first looked at when eval ran, after all of the training."""
    (tmp_path / "empty-folder").mkdir()
    text = base(tmp_path) + (
        "eval:\n  checkpoints: [base]\n  evaluators:\n"
        f"    - {{name: temporal_order, videos: {{samples: [heldout_events]}}}}\n"
        f"    - {{name: temporal_order, label: mine, videos: {{paths: [{entry}]}}}}\n"
    )
    code, err = validate_text(tmp_path, capsys, text)
    refused(code, err, "eval.evaluators[1].videos.paths[0]: ", words)
