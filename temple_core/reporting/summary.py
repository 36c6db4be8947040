"""The one summary ``temple run`` prints at the end: what each stage did and where its outputs are."""

from __future__ import annotations

from pathlib import Path

from temple_core.store import RunLayout

#: What each stage's summary points the user at.
OUTPUTS = {
    "select": lambda layout: [layout.videos],
    "generate": lambda layout: [layout.pairs, layout.captions, layout.generate_dir / "export"],
    "train": lambda layout: [layout.train_dir],
    "eval": lambda layout: [layout.eval_dir],
}


def _counts(mapping) -> str:
    return ", ".join(f"{k} {v}" for k, v in mapping.items()) if mapping else "none"


def _select_lines(s: dict) -> list[str]:
    lines = [f"videos {s.get('videos', 0)}: kept {s.get('kept', 0)}, rejected {s.get('rejected', 0)}, errors {s.get('error', 0)}"]
    if s.get("reasons"):
        lines.append(f"rejected because: {_counts(s['reasons'])}")
    for error in (s.get("errors") or [])[:5]:
        lines.append(f"error: {error}")
    return lines


def _generate_lines(s: dict) -> list[str]:
    lines = [f"pairs {s.get('pairs', 0)} from {s.get('videos', 0)} videos (generator: {s.get('generator', '?')})"]
    by_perturbation = s.get("pairs_by_perturbation") or {}
    difficulties = list((s.get("pairs_by_difficulty") or {}).keys())
    if by_perturbation and difficulties:
        lines.append("pairs by r:      " + "  ".join(f"r={r:>3}" for r in difficulties))
        for name, counts in by_perturbation.items():
            lines.append(f"  {name:<14}" + "  ".join(f"{counts.get(r, 0):>5}" for r in difficulties))
    if s.get("dropped"):
        lines.append(f"dropped pairs: {_counts(s['dropped'])}")
    return lines


def _train_lines(s: dict) -> list[str]:
    lines = []
    for stage in s.get("stages", []):
        loss = stage.get("train_loss")
        loss_text = f", loss {loss:.4f}" if isinstance(loss, float) else ""
        status = stage.get("status", "ran")
        steps = stage.get("steps", "?")
        lines.append(
            f"{stage.get('stage', '?'):<10} {status:<10} {stage.get('samples', '?')} samples, "
            f"{steps} step{'' if steps == 1 else 's'}{loss_text}, {stage.get('seconds', 0):.1f} s"
        )
    if s.get("final_model"):
        lines.append(f"final model: {s['final_model']}")
    return lines


def _eval_lines(s: dict) -> list[str]:
    from temple_core.evaluation.results import format_score

    rows = s.get("results") or []
    if not rows:
        return ["no scores"]
    width = max(len(str(r.get("evaluator"))) for r in rows)
    lines = []
    for row in rows:
        lines.append(f"{row.get('checkpoint', '?'):<10} {row.get('evaluator', '?'):<{width}}  "
                     f"{format_score(row.get('score'), row.get('interval'))}  ({row.get('n', '?')} items)")
    lines.append("compare runs: temple compare RUN_DIR RUN_DIR...")
    return lines


FORMATTERS = {"select": _select_lines, "generate": _generate_lines, "train": _train_lines, "eval": _eval_lines}


def _generic_lines(s: dict) -> list[str]:
    return [f"{k}: {v}" for k, v in s.items()]


def print_summary(recipe, results, seconds: float, out=print) -> None:
    run_dir = Path(recipe.run_dir)
    layout = RunLayout(run_dir)
    if not results:
        out("nothing to run")
        return
    if all(r.status == "up to date" for r in results):
        out(f"everything in {run_dir} is up to date: no work was done")
    out(f"temple run: {run_dir}  ({seconds:.1f} s)")
    for result in results:
        timing = f"{result.seconds:.1f} s" if result.status == "ran" else "up to date"
        out(f"  {result.name} ({timing})")
        summary = result.summary
        if result.status == "up to date" and summary.get("stages"):
            # The record of the run that did the work says "ran"; nothing ran now.
            summary = {**summary, "stages": [{**st, "status": "up to date"} for st in summary["stages"]]}
        for line in FORMATTERS.get(result.name, _generic_lines)(summary):
            out(f"      {line}")
        outputs = OUTPUTS.get(result.name, lambda _: [layout.stage_dir(result.name)])(layout)
        out(f"      outputs: {', '.join(map(str, outputs))}")
    out(f"  report: temple report {run_dir}")
