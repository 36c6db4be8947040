"""The one summary ``temple run`` prints at the end: what each stage did and where its outputs are."""

from __future__ import annotations

from pathlib import Path


def _format_value(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {_format_value(v)}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def print_summary(recipe, results, seconds: float, out=print) -> None:
    run_dir = Path(recipe.run_dir)
    if not results:
        out("nothing to run")
        return
    if all(r.status == "up to date" for r in results):
        out(f"everything is up to date in {run_dir}; nothing was run")
    out(f"temple run: {run_dir}  ({seconds:.1f} s)")
    for result in results:
        timing = f"{result.seconds:.1f} s" if result.status == "ran" else "up to date"
        out(f"  {result.name:<9} {timing}")
        for key, value in result.summary.items():
            out(f"      {key}: {_format_value(value)}")
