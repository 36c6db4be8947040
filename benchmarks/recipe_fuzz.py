"""The long recipe fuzz: many more mutated recipes than CI runs, training included.

    python benchmarks/recipe_fuzz.py --examples 2000 --runs 300 [--train] [--seed 0]

Runs tests/core/test_recipe_fuzz.py (the property, with tests/testkit/fuzz.py's mutations:
every mutated recipe is refused by ``temple validate`` with exit 2 and one line, or is
valid, is accepted by TRL's config class and -- for up to ``--runs`` of them -- really runs
select and generate on two tiny synthetic videos) with ``--examples`` mutations. With
``--train`` the valid recipes also run their training stages (one optimizer step each, on
the tiny random Qwen2-VL), so a mutation of ``train`` must run too. Prints the outcome
counts and the time; exit code 1 when a mutation crashed or failed after validating (the
failing example is in the output). Results go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=300, help="valid mutations that really run (the rest only validate)")
    parser.add_argument("--train", action="store_true", help="also train the valid recipes (one step per stage)")
    parser.add_argument("--seed", type=int, default=0, help="hypothesis seed")
    args = parser.parse_args()
    env = {
        **os.environ,
        "TEMPLE_FUZZ_EXAMPLES": str(args.examples),
        "TEMPLE_FUZZ_RUNS": str(args.runs),
        "TEMPLE_FUZZ_TRAIN": "1" if args.train else "0",
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
    }
    started = time.time()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", str(ROOT / "tests" / "core" / "test_recipe_fuzz.py"), "-q", "-s", "-x",
         "-p", "no:cacheprovider", f"--hypothesis-seed={args.seed}"],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )
    seconds = time.time() - started
    found = re.search(r"recipe fuzz outcomes: (\{.*\})", result.stdout)
    outcomes = json.loads(found.group(1).replace("'", '"')) if found else {}
    print(json.dumps({
        "examples": args.examples, "runs": args.runs, "train": args.train, "seed": args.seed,
        "outcomes": outcomes, "passed": result.returncode == 0, "seconds": round(seconds, 1),
    }, indent=2))
    if result.returncode != 0:
        print(result.stdout[-20000:], file=sys.stderr)
    return 0 if result.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
