"""The ``temple`` command line.

    temple plugins list [--kind KIND] [--json]
    temple validate RECIPE [--run-dir DIR]
    temple run RECIPE [--stages select,generate,train,eval] [--run-dir DIR] [--wait] [--no-progress]
    temple report RUN_DIR
    temple compare RUN_DIR... [--html OUT] [--chart PNG] [--baseline RUN_DIR:CHECKPOINT]

Errors a user can cause print one line and exit non-zero (2 for a bad recipe or plugin);
``--debug`` shows the traceback instead.

A temple run never needs the network (models come from local folders or built-in presets),
so ``temple`` runs offline with telemetry off (:data:`OFFLINE_ENV`, set before any library
is imported and inherited by every process it starts) unless ``TEMPLE_ALLOW_NETWORK=1``;
a variable the user set keeps its value.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from temple_core.errors import TempleError
from temple_core.hookspecs import KINDS

#: Set for temple's own processes unless ``TEMPLE_ALLOW_NETWORK=1`` (docs/run-directory.md):
#: the Hugging Face hub offline, its telemetry off (TRL pings it from every trainer).
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
}
ALLOW_NETWORK = "TEMPLE_ALLOW_NETWORK"


def stay_offline(environ=os.environ) -> None:
    """Set :data:`OFFLINE_ENV` (what is already set is kept) unless the network is allowed."""
    if environ.get(ALLOW_NETWORK, "").lower() in ("1", "true", "yes"):
        return
    for key, value in OFFLINE_ENV.items():
        environ.setdefault(key, value)


def _parser() -> argparse.ArgumentParser:
    from temple_core import __version__

    parser = argparse.ArgumentParser(prog="temple", description="TEMPLE: temporal preference learning for Video LLMs")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("--version", action="version", version=f"temple {__version__}")
    # --debug also after the command (`temple run --debug RECIPE`); SUPPRESS keeps the top-level value.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    plugins = commands.add_parser("plugins", parents=[common], help="list installed plugins")
    plugin_commands = plugins.add_subparsers(dest="plugins_command", required=True, metavar="SUBCOMMAND")
    listing = plugin_commands.add_parser("list", parents=[common], help="every component of every kind, and plugins that failed to load")
    listing.add_argument("--kind", choices=KINDS, help="only this kind")
    listing.add_argument("--json", action="store_true", help="machine-readable output")

    validate = commands.add_parser("validate", parents=[common], help="check a recipe without running it")
    validate.add_argument("recipe")
    validate.add_argument("--run-dir", help="override the recipe's run_dir")

    run = commands.add_parser("run", parents=[common], help="run a recipe's stages in order, skipping finished ones")
    run.add_argument("recipe")
    run.add_argument("--stages", help="comma-separated subset of the recipe's stages (select,generate,train,eval)")
    run.add_argument("--run-dir", help="override the recipe's run_dir (relative to the working directory)")
    run.add_argument("--wait", action="store_true", help="wait for another run using the run directory instead of refusing")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")

    report = commands.add_parser("report", parents=[common], help="write RUN_DIR/report.html")
    report.add_argument("run_dir")

    compare = commands.add_parser("compare", parents=[common], help="evaluation scores of several runs side by side (table + chart)")
    compare.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    compare.add_argument("--html", help="also write an HTML page with the table and the chart")
    compare.add_argument("--chart", default="temple-compare.png", help="the chart (PNG) to write (default: %(default)s)")
    compare.add_argument("--baseline", metavar="RUN_DIR:CHECKPOINT", help="chart the differences from this row (the paper's Figure 5)")
    return parser


def _plugins_list(args) -> int:
    from temple_core.plugins import get_plugin_manager

    rows = get_plugin_manager().listing(args.kind)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no plugins loaded")
        return 0
    width = {key: max(len(key), *(len(r[key]) for r in rows)) for key in ("kind", "name", "source")}
    for row in rows:
        status = "" if row["status"] == "ok" else f"  [{row['status']}]"
        print(
            f"{row['kind']:<{width['kind']}}  {row['name']:<{width['name']}}  "
            f"{row['source']:<{width['source']}}  {row['summary']}{status}"
        )
    from temple_core.stages import recipe_keys

    keys = recipe_keys()
    print("\nwhere a recipe names them:")
    for kind in dict.fromkeys(r["kind"] for r in rows):
        print(f"  {kind:<{width['kind']}}  {', '.join(keys.get(kind, ['-']))}")
    return 0


def _validate(args) -> int:
    from temple_core.recipe import load_recipe

    recipe = load_recipe(args.recipe, run_dir=args.run_dir)
    print(f"{args.recipe}: ok (stages: {', '.join(recipe.sections())}; run_dir: {recipe.run_dir})")
    return 0


def _run(args) -> int:
    from temple_core.errors import RecipeError
    from temple_core.plugins import get_plugin_manager
    from temple_core.recipe import load_recipe
    from temple_core.reporting.summary import print_summary
    from temple_core.stages import STAGE_NAMES
    from temple_core.stages.runner import run_stages

    if args.no_progress:
        # transformers' own bars ("Loading weights") too: it reads this when first imported.
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
        if "transformers" in sys.modules:
            sys.modules["transformers"].utils.logging.disable_progress_bar()
    stages = None
    if args.stages is not None:
        stages = [s.strip() for s in args.stages.split(",") if s.strip()]
        if not stages:
            raise RecipeError("--stages", f"names no stage; stages: {', '.join(STAGE_NAMES)}")
        for stage in stages:
            if stage not in STAGE_NAMES:
                raise RecipeError("--stages", f"unknown stage {stage!r}; stages: {', '.join(STAGE_NAMES)}")
    plugins = get_plugin_manager()
    recipe = load_recipe(args.recipe, plugins=plugins, run_dir=args.run_dir)
    if stages:
        missing = [s for s in stages if s not in recipe.sections()]
        if missing:
            raise RecipeError(missing[0], f"--stages asks for {missing[0]!r} but the recipe has no such section")
    started = time.time()
    results = run_stages(recipe, plugins, stages=stages, progress=not args.no_progress, wait=args.wait)
    print_summary(recipe, results, time.time() - started)
    return 0


def _report(args) -> int:
    from temple_core.reporting.report import write_report

    path = write_report(args.run_dir)
    print(f"report written: {path}")
    return 0


def _compare(args) -> int:
    from temple_core.evaluation.compare import compare_runs

    table, chart, page = compare_runs(args.run_dirs, chart=args.chart, html=args.html, baseline=args.baseline)
    print(table)
    print(f"chart written: {chart}")
    if page:
        print(f"page written: {page}")
    return 0


def _stdout_reader_gone() -> bool:
    """Whether standard output is a pipe whose reading end is closed (poll reports an error
    on the writing end of such a pipe)."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):
        return False


def main(argv: list[str] | None = None) -> int:
    stay_offline()
    args = _parser().parse_args(argv)
    debug = args.debug or os.environ.get("TEMPLE_DEBUG") == "1"
    handlers = {"plugins": _plugins_list, "validate": _validate, "run": _run, "report": _report, "compare": _compare}
    try:
        code = handlers[args.command](args)
        sys.stdout.flush()  # here, so that a reader gone away is seen by the handler below
        return code
    except BrokenPipeError:
        if debug or not _stdout_reader_gone():
            raise  # another pipe (a worker's, a subprocess's) broke: that is a real error
        # The reader of the output went away (`temple plugins list --json | head`): stop quietly,
        # as other command-line tools do, and keep Python's exit flush from failing again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except TempleError as exc:
        if debug:
            raise
        print(f"temple: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:  # a refused write outside any stage (the report, the lock...)
        from temple_core.store.files import storage_error

        error = storage_error(exc)
        if error is None or debug:
            raise
        print(f"temple: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("temple: interrupted; finished items are kept, re-run to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
