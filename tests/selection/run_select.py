"""Run the select stage of a recipe file with the selection plugins (used by the stage tests
as a child process: under ``accelerate launch``, and as a run that gets killed)."""

import os
import sys
from pathlib import Path

# Only the selection plugins (fast start-up), through temple's own plugin filter.
os.environ.setdefault("TEMPLE_LOAD_PLUGINS", "transnetv2,pyscenedetect,colorhist,siglip,openclip")

from temple_core.plugins import get_plugin_manager  # noqa: E402
from temple_core.recipe import load_recipe  # noqa: E402
from temple_core.stages.runner import run_stages  # noqa: E402

if __name__ == "__main__":
    # Each process leaves its rank behind, so a launch test can tell that 2 processes ran.
    ranks = Path(sys.argv[1]).with_suffix(".ranks")
    with open(ranks, "a") as handle:
        handle.write(f"{os.environ.get('RANK', '0')}/{os.environ.get('WORLD_SIZE', '1')}\n")
    plugins = get_plugin_manager()
    recipe = load_recipe(sys.argv[1], plugins=plugins)
    run_stages(recipe, plugins, stages=["select"], progress=False, log=lambda *a: None)
