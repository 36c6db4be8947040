"""Recipe mutations for the property "every recipe is refused by `temple validate`, or runs".

A mutation starts from a valid recipe that runs select, generate and train on two tiny
synthetic videos, and changes it the way a hostile-but-realistic user would: a value
replaced by a nasty one (boundaries, huge or negative numbers, infinities, wrong types,
empty lists...), a key deleted, a known option added with such a value, an unknown key
added; or the text itself changed (a line duplicated, a section repeated, bytes that are
not UTF-8, a UTF-16 file, deep nesting, an alias bomb). :func:`check` runs the real command
line in-process: ``temple validate`` must exit 0, or exit 2 with exactly one line on stderr;
a valid recipe whose train section is untouched must then really run select and generate
(exit 0, or, where selection kept none of the videos, exit 1 with one line saying so); a valid train section must give TRL's config class no reason to refuse it.

``tests/core/test_recipe_fuzz.py`` runs a bounded number of mutations in CI;
``benchmarks/recipe_fuzz.py`` runs many more (``TEMPLE_FUZZ_EXAMPLES``) and also trains the
valid train mutations for one step (``TEMPLE_FUZZ_TRAIN=1``).
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import tempfile
import traceback
from pathlib import Path
from typing import Any

import attrs
import yaml
from hypothesis import strategies as st

from temple_core.samples.synthetic import Shot, write_video

#: Fields a mutation may add (known options, so that their values get tried, not only
#: "unknown key"), per section path.
def known_keys() -> dict[tuple, list[str]]:
    from temple_core.plugins import get_plugin_manager
    from temple_core.recipe import Recipe, VideosConfig
    from temple_core.stages import generate, select

    plugins = get_plugin_manager()

    def names(cls) -> list[str]:
        return [f.name for f in attrs.fields(cls) if f.name != "source"]

    return {
        (): names(Recipe),
        ("videos",): names(VideosConfig),
        ("select",): names(select.Config),
        ("select", "shot_detector"): names(plugins.get("shot_detectors", "pyscenedetect").options),
        ("select", "encoder"): names(plugins.get("similarity_encoders", "colorhist").options),
        ("generate",): names(generate.Config),
        ("generate", "sampling"): names(generate.Sampling),
        ("generate", "filters"): names(generate.PairFilters),
        ("generate", "captioner"): names(plugins.get("caption_generators", "heuristic").options),
        ("train", "backend"): names(plugins.get("backends", "qwen2_vl").options),
        ("train", "stages", 0): names(plugins.get("trainers", "dpo").options) + ["name", "difficulty", "perturbations"],
    }


def write_inputs(folder: Path) -> list[Path]:
    """Two tiny videos (64x48, 10 fps, four or five distinct shots each)."""
    folder.mkdir(parents=True, exist_ok=True)
    videos = [
        write_video(folder / "a.mp4", [Shot(1, 12), Shot(2, 12), Shot(3, 12), Shot(4, 12)], fps=10, width=64, height=48, gop=10),
        write_video(folder / "b.mp4", [Shot(5, 12), Shot(6, 12), Shot(7, 12), Shot(5, 12), Shot(8, 12)], fps=10, width=64, height=48, gop=10),
    ]
    return videos


def base_recipe(videos: list[Path]) -> dict[str, Any]:
    return {
        "run_dir": "run",
        "seed": 0,
        "videos": {"paths": [str(v) for v in videos]},
        "select": {
            "shot_detector": {"name": "pyscenedetect", "min_scene_len": 4},
            "encoder": {"name": "colorhist"},
            "min_shot_frames": 4,
            "min_shot_seconds": 0.2,
            "min_shots": 3,
            "min_segments": 3,
            "decode_worker": False,
        },
        "generate": {
            "captioner": {"name": "heuristic"},
            "perturbations": [{"name": "drop"}, {"name": "shuffle"}, {"name": "reverse"}],
            "difficulties": [4, 2],
            "filters": {"max_length_ratio": 1.5},
            "sampling": {"temperature": 0.7},
        },
        "train": {
            "backend": {"name": "qwen2_vl", "preset": "tiny-random", "fps": 1.0, "max_frames": 4, "max_pixels": 12544},
            "stages": [{"trainer": "dpo", "difficulty": 4, "batch_size": 2, "epochs": 1.0, "max_length": 1024,
                        "gradient_checkpointing": False}],
        },
    }


# -- values ---------------------------------------------------------------------------

nasty_numbers = st.sampled_from([
    -1, 0, 1, 2, 3, 7, 64, 65, 255, 256, 4096, 2**31, 2**32 - 1, 2**32, 2**53 + 1, 2**63 - 1, 2**63, 2**64, 10**30,
    -(2**63), -(10**30), 0.0, -0.0, 0.5, 1.0, 1.5, 1e-300, 1e300, -1e300, float("inf"), float("-inf"), float("nan"),
])
nasty_strings = st.sampled_from([
    "", " ", "x", "..", "../..", "x/../../y", "a\\b", "drop", "shuffle", "heuristic", "dpo", "sft", "auto",
    "tiny-random", "1e400", "nan", "inf", "5e-6", "-1", "~", "/", "runs/x", "é", "\t",
])
#: Values a careful user might write: most of them valid somewhere, so that mutations also
#: reach the stages instead of only the validator.
plausible = st.sampled_from([0, 1, 2, 3, 4, 5, 8, 16, 32, 100, 0.05, 0.1, 0.3, 0.5, 0.9, 1.0, 1.5, 2.0, 10.0, True, False,
                             "drop", "shuffle", "reverse", "content", "adaptive", "released", "paper", "fp32", "auto"])
scalars = st.one_of(plausible, plausible, st.none(), st.booleans(), nasty_numbers, nasty_strings,
                    st.integers(-5, 40), st.floats(allow_nan=True))
values = st.one_of(plausible, st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(["name", "x", "drop", "0"]), inner, max_size=3)),
    max_leaves=5,
))


def key_paths(node, prefix=()):
    """Every path (tuple of keys and list indexes) into a parsed recipe, the root first."""
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from key_paths(value, prefix + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from key_paths(value, prefix + (i,))


def _node(data, path):
    for key in path:
        data = data[key]
    return data


@st.composite
def data_mutations(draw, base: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A mutated copy of ``base`` and what was done (for the report)."""
    data = copy.deepcopy(base)
    done = []
    keys = known_keys()
    for _ in range(draw(st.integers(1, 2))):
        action = draw(st.sampled_from(["replace", "replace", "delete", "known", "known", "unknown", "append"]))
        if action == "known":
            section = draw(st.sampled_from(sorted(keys, key=str)))
            try:
                parent = _node(data, section)
            except (KeyError, IndexError, TypeError):
                continue
            if not isinstance(parent, dict):
                continue
            key = draw(st.sampled_from(keys[section]))
            parent[key] = draw(values)
            done.append(f"set {'.'.join(map(str, section + (key,)))} = {parent[key]!r}")
            continue
        paths = [p for p in key_paths(data) if p]
        if not paths:
            break
        target = draw(st.sampled_from(paths))
        parent = _node(data, target[:-1])
        if action == "replace":
            parent[target[-1]] = draw(values)
            done.append(f"replace {'.'.join(map(str, target))} = {parent[target[-1]]!r}")
        elif action == "delete":
            del parent[target[-1]]
            done.append(f"delete {'.'.join(map(str, target))}")
        elif action == "unknown" and isinstance(parent, dict):
            key = draw(st.text(max_size=8))
            parent[key] = draw(values)
            done.append(f"add {'.'.join(map(str, target[:-1] + (key,)))}")
        elif action == "append" and isinstance(parent, list):
            parent.append(draw(values))
            done.append(f"append to {'.'.join(map(str, target[:-1]))}")
    return data, done


TEXT_MUTATIONS = ["none"] * 12 + ["duplicate_line", "repeat_section", "latin1", "utf16", "nul", "deep", "alias_bomb",
                  "truncate", "tab_indent", "huge_int"]


@st.composite
def recipe_texts(draw, base: dict[str, Any]) -> tuple[bytes, list[str], bool]:
    """``(file bytes, what was done, whether the train section was touched)``."""
    data, done = draw(data_mutations(base))
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    kind = draw(st.sampled_from(TEXT_MUTATIONS))
    lines = text.splitlines(keepends=True)
    if kind == "duplicate_line" and lines:
        i = draw(st.integers(0, len(lines) - 1))
        lines.insert(i, lines[i])
        text = "".join(lines)
    elif kind == "repeat_section":
        text += draw(st.sampled_from(["select:\n  min_shots: 3\n", "generate: {}\n", "seed: 1\n"]))
    elif kind == "deep":
        text = "x: " + "[" * 5000 + "]" * 5000 + "\n" + text
    elif kind == "alias_bomb":
        bomb = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
            f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]\n" for i in range(1, 8))
        text = "x-bomb:\n" + "".join("  " + line + "\n" for line in bomb.splitlines()) + text
    elif kind == "truncate" and len(text) > 2:
        text = text[: draw(st.integers(1, len(text) - 1))]
    elif kind == "tab_indent":
        text = text.replace("  ", "\t", 1)
    elif kind == "huge_int":
        text = text.replace("seed: 0", "seed: " + "9" * 5000, 1)
    if kind != "none":
        done.append(f"text: {kind}")
    raw = text.encode("utf-8")
    if kind == "latin1":
        raw = raw.replace(b"seed:", b"seed: # caf\xe9\n", 1) if b"seed:" in raw else raw + b"\xe9\n"
    elif kind == "utf16":
        raw = text.encode("utf-16")
    elif kind == "nul":
        raw = raw + b"\x00\n"
    train_touched = any("train" in d for d in done) or kind in ("truncate", "duplicate_line", "tab_indent")
    return raw, done, train_touched


# -- the property -----------------------------------------------------------------------

def cli(*args: str) -> tuple[int, str, str]:
    """``temple ARGS`` in this process: (exit code, stdout, stderr); any exception escaping
    ``main`` is a crash, reported with its traceback."""
    from temple_core.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse
            code = exc.code if isinstance(exc.code, int) else 2
        except BaseException:
            raise AssertionError(f"temple {' '.join(args)} crashed:\n{traceback.format_exc()}") from None
    return code, out.getvalue(), err.getvalue()


def one_line_refusal(code: int, err: str, what: str) -> None:
    assert code == 2, f"{what}: exit {code}, expected 2 or 0:\n{err[-3000:]}"
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("temple: error: ") and "Traceback" not in err, f"{what}: not one line:\n{err[-3000:]}"


def trl_accepts(recipe) -> None:
    """Each valid training stage's options make a TRL config (the real class) without error."""
    from temple_core.store import RunLayout
    from temple_core.training.context import TrainStageContext
    from temple_core.training.options import build_config

    for stage in recipe.train.stages:
        tctx = TrainStageContext(
            index=stage.index, name=stage.dir_name, trainer=stage.trainer.name, where=stage.where, backend=None,
            start="", kind="pairs", data=[], layout=RunLayout(recipe.run_dir).train_stage(stage.index, stage.name),
            seed=recipe.seed,
        )
        config_class = {"dpo": "DPOConfig", "sft": "SFTConfig"}[stage.trainer.name]
        build_config(config_class, stage.trainer.options, tctx)


def check(raw: bytes, done: list[str], train_touched: bool, run: bool, train: bool = False) -> str:
    """The property for one mutated recipe file; returns ``refused``, ``valid`` or ``ran``."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "recipe.yaml"
        path.write_bytes(raw)
        what = "; ".join(done) or "no change"
        code, _, err = cli("validate", str(path))
        if code != 0:
            one_line_refusal(code, err, what)
            return "refused"
        from temple_core.recipe import load_recipe

        recipe = load_recipe(path)
        if recipe.train is not None:
            from temple_core.errors import TempleError

            try:
                trl_accepts(recipe)
            except TempleError as exc:
                raise AssertionError(f"{what}: validate accepted what TRL refuses: {exc}") from None
        if not run or not Path(recipe.run_dir).resolve().is_relative_to(Path(folder).resolve()):
            return "valid"  # a run_dir elsewhere is valid, but this test writes only in its folder
        stages = [s for s in ("select", "generate") if s in recipe.sections()]
        if train and recipe.train is not None:
            stages.append("train")
            # One optimizer step per stage, whatever epochs or max_steps the mutation chose.
            from temple_core.recipe import decode_recipe, parse_yaml

            data = parse_yaml(decode_recipe(raw))
            for entry in data["train"]["stages"]:
                entry["max_steps"] = 1
            path.write_text(yaml.safe_dump(data))
        elif train_touched or not stages:
            return "valid"
        args = ["run", str(path), "--no-progress"]
        if stages != recipe.sections():
            args += ["--stages", ",".join(stages)]
        code, _, err = cli(*args)
        if code == 2 and "temple: error: --stages" in err:
            return "valid"
        if code == 1 and "select kept none of the" in err:
            # The videos, not the recipe: selection (stricter after the mutation, or with a video
            # removed) rejected every one, which validate cannot know. The run must stop there with
            # one line, and selection's records must really say so.
            from temple_core.store import read_jsonl

            lines = err.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("temple: error: "), f"{what}: not one line:\n{err[-3000:]}"
            records = read_jsonl(Path(recipe.run_dir) / "select" / "videos.jsonl")
            assert records and not any(r["status"] == "kept" for r in records), f"{what}: {err}"
            assert f"select kept none of the {len(records)} videos" in err, f"{what}: {err}"
            return "kept none"
        assert code == 0, f"{what}: validated, then the run failed (exit {code}):\n{err[-3000:]}"
        return "ran"


def fuzz_budget() -> tuple[int, bool, int]:
    """(examples, train, runs): bounded in CI; the benchmark sets the environment."""
    return (
        int(os.environ.get("TEMPLE_FUZZ_EXAMPLES", "60")),
        os.environ.get("TEMPLE_FUZZ_TRAIN") == "1",
        int(os.environ.get("TEMPLE_FUZZ_RUNS", "12")),
    )
