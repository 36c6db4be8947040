"""Run the select stage of a recipe file with the selection plugins (used by the stage tests
as a child process: under ``accelerate launch``, and as a run that gets killed)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers import selection_plugins  # noqa: E402

from temple_core.recipe import load_recipe  # noqa: E402
from temple_core.stages import run_stages  # noqa: E402

if __name__ == "__main__":
    import os

    # Each process leaves its rank behind, so a launch test can tell that 2 processes ran.
    ranks = Path(sys.argv[1]).with_suffix(".ranks")
    with open(ranks, "a") as handle:
        handle.write(f"{os.environ.get('RANK', '0')}/{os.environ.get('WORLD_SIZE', '1')}\n")
    plugins = selection_plugins()
    recipe = load_recipe(sys.argv[1], plugins=plugins)
    run_stages(recipe, plugins, stages=["select"], progress=False, log=lambda *a: None)
