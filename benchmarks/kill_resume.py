"""kill -9 at random points of a whole run, then resume: are the outputs an uninterrupted run's?

    python benchmarks/kill_resume.py --trials 18 [--seed 0] [--out kill_resume.json]

One small recipe runs every stage on the CPU: select (PySceneDetect on the three synthetic
sample videos, written once into a shared folder so every run reads the same bytes),
generate (heuristic captions, drop/shuffle/reverse at r = 4, 2), train (two DPO stages and
an SFT stage on the tiny random Qwen2-VL, a checkpoint every step). First it runs
uninterrupted (the reference, time T). Then each trial starts the same recipe in a fresh run
directory, sends SIGKILL to the whole process group (the run and its decode worker), runs it
again to the end, and compares with the reference. The kill lands, in turn, inside each
target -- ``select``, ``generate``, every training stage, a merge (``merged.tmp`` being
written) -- a random moment shortly after the target began (0-0.5 s for select and
generate, 0-50 ms for a merge, 0-1.5 s for a training stage), and every third trial at a random
moment in (0.03 T, 0.97 T) of the whole run:

* ``select/videos.jsonl``, ``generate/captions.jsonl``, ``generate/pairs.jsonl``: equal
  records (paths inside the run directory compared relative to it);
* every training stage: the same logged losses step by step, and merged weights equal
  tensor for tensor (bit for bit).

The unit of the ledger that was running when the kill landed is reported per trial, so the
spread of kill points over select / generate / each training stage / merging is visible.
Exit code 1 if any trial differs. Results go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def recipe(run_dir: Path, videos: Path, sft: Path) -> dict:
    video = {"fps": 1.0, "max_frames": 4, "max_pixels": 12544}
    common = {"batch_size": 2, "max_length": 1024, "gradient_checkpointing": False, "save_steps": 1, **video}
    return {
        "run_dir": str(run_dir),
        "seed": 0,
        "videos": {"paths": [str(videos)]},
        "select": {"shot_detector": {"name": "pyscenedetect"}, "encoder": {"name": "colorhist"}},
        "generate": {"captioner": {"name": "heuristic"}, "difficulties": [4, 2]},
        "train": {
            "backend": {"name": "qwen2_vl", "preset": "tiny-random", **video},
            "stages": [
                {"trainer": "dpo", "difficulty": 4, "lr": 5.0e-4, **common},
                {"trainer": "dpo", "difficulty": 2, "lr": 5.0e-4, **common},
                {"trainer": "sft", "data": str(sft), "lr": 1.0e-3, **common},
            ],
        },
    }


def start(recipe_path: Path) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "temple_core", "run", str(recipe_path), "--no-progress"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True,
    )


def run_to_end(recipe_path: Path) -> None:
    child = start(recipe_path)
    _, err = child.communicate()
    if child.returncode != 0:
        raise SystemExit(f"run failed ({recipe_path}):\n{err[-3000:]}")


def running_unit(run_dir: Path) -> str:
    from temple_core.store import Ledger

    states = Ledger(run_dir).states()
    started = [unit for unit, entry in states.items() if entry.event == "started"]
    if (run_dir / "train").is_dir():
        merging = [p for p in (run_dir / "train").glob("*/merged.tmp")]
        if merging:
            return f"train/{merging[0].parent.name} (merging: merged.tmp being written)"
        for unit in started:
            folder = run_dir / unit
            if unit.startswith("train/") and (folder / "merged").is_dir():
                return f"{unit} (merged, checkpoints or ledger record not yet done)"
    if started:
        return started[-1]
    return "(after the last stage)" if states else "(before the first stage)"


def reached(run_dir: Path, target: str) -> bool:
    """Whether the run has begun ``target`` (a ledger unit, or ``merge``)."""
    from temple_core.store import Ledger

    if target == "merge":
        return any((run_dir / "train").glob("*/merged.tmp")) if (run_dir / "train").is_dir() else False
    entry = Ledger(run_dir).state(target)
    return entry is not None


def outputs(run_dir: Path) -> dict:
    """Everything compared, with the run directory's own paths made relative."""
    from safetensors.torch import load_file

    from temple_core.store import RunLayout, read_jsonl

    layout = RunLayout(run_dir)
    prefix = str(run_dir) + "/"

    def rel(records):
        return json.loads(json.dumps(records).replace(prefix, "<run>/"))

    result = {
        "videos": rel(read_jsonl(layout.videos)),
        "captions": rel(read_jsonl(layout.captions)),
        "pairs": rel(read_jsonl(layout.pairs)),
        "stages": {},
    }
    for folder in layout.train_stages():
        losses = [m["loss"] for m in read_jsonl(folder / "metrics.jsonl") if "loss" in m]
        weights = {}
        for file in sorted((folder / "merged").glob("*.safetensors")):
            weights.update(load_file(str(file)))
        result["stages"][folder.name] = {"losses": losses, "weights": weights}
    return result


def differences(a: dict, b: dict) -> list[str]:
    import torch

    found = [key for key in ("videos", "captions", "pairs") if a[key] != b[key]]
    if a["stages"].keys() != b["stages"].keys():
        found.append(f"training stages {sorted(a['stages'])} vs {sorted(b['stages'])}")
        return found
    for name, stage in a["stages"].items():
        other = b["stages"][name]
        if stage["losses"] != other["losses"]:
            found.append(f"{name} losses")
        if stage["weights"].keys() != other["weights"].keys() or not all(
            torch.equal(t, other["weights"][k]) for k, t in stage["weights"].items()
        ):
            found.append(f"{name} merged weights")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    os.environ.setdefault("TEMPLE_CACHE", str(Path(tempfile.gettempdir()) / "temple-kill-resume-cache"))
    from temple_core.samples import materialize

    with tempfile.TemporaryDirectory(prefix="kill-resume-") as tmp:
        tmp = Path(tmp)
        videos = tmp / "videos"
        materialize("synthetic", videos)
        sft = ROOT / "examples" / "sft" / "sample.jsonl"

        def prepare(name: str) -> tuple[Path, Path]:
            run_dir = tmp / name
            path = tmp / f"{name}.yaml"
            import yaml

            path.write_text(yaml.safe_dump(recipe(run_dir, videos, sft)))
            return run_dir, path

        ref_dir, ref_recipe = prepare("reference")
        began = time.time()
        run_to_end(ref_recipe)
        total = time.time() - began
        reference = outputs(ref_dir)
        print(f"reference run: {total:.1f} s; {len(reference['pairs'])} pairs, stages {sorted(reference['stages'])}", flush=True)
        targets = ["select", "generate", *(f"train/{name}" for name in sorted(reference["stages"])), "merge"]
        trials = []
        for i in range(args.trials):
            run_dir, path = prepare(f"trial{i}")
            target = None if i % 3 == 2 else targets[(i - i // 3) % len(targets)]
            child = start(path)
            began = time.time()
            if target is None:
                time.sleep(rng.uniform(0.03, 0.97) * total)
            else:
                while child.poll() is None and not reached(run_dir, target):
                    time.sleep(0.01)
                # select and generate take about a second here, a merge a fraction of one.
                time.sleep(rng.uniform(0.0, {"merge": 0.05, "select": 0.5, "generate": 0.5}.get(target, 1.5)))
            delay = time.time() - began
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
                where = running_unit(run_dir)
            else:
                where = "(finished before the kill)"
            run_to_end(path)
            diff = differences(reference, outputs(run_dir))
            trials.append({"trial": i, "target": target or "random", "kill_after_s": round(delay, 1), "killed_in": where,
                           "clean": not diff, "differences": diff})
            print(f"trial {i}: killed after {delay:.1f} s in {where}: {'clean' if not diff else 'DIFFERS: ' + ', '.join(diff)}", flush=True)
    clean = sum(t["clean"] for t in trials)
    print(f"{clean} of {len(trials)} resumed runs equal the uninterrupted run")
    if args.out:
        args.out.write_text(json.dumps({"reference_seconds": round(total, 1), "trials": trials}, indent=2))
    return 0 if clean == len(trials) else 1


if __name__ == "__main__":
    sys.exit(main())
