"""``temple compare RUN_DIR...``: evaluation scores of several runs side by side.

One table, rows run x checkpoint, columns the evaluators (score [95% interval]) -- the shape
of the paper's Table 3 (transfers: one row per trained model) -- and one chart, a panel per
evaluator with a bar per row and its interval -- the shape of the paper's Figure 5 (tuning
orders compared on each benchmark). With ``baseline`` (``RUN_DIR:CHECKPOINT``), the chart
shows each row's difference from that row instead, as Figure 5 does against the base model.
"""

from __future__ import annotations

import base64
import html as htmllib
from pathlib import Path
from typing import Any

from temple_core.errors import TempleError
from temple_core.evaluation.results import format_score, run_results


def run_labels(run_dirs: list[Path]) -> list[str]:
    """Short, distinct labels: the folder name, or more of the path when names clash
    (``.`` and ``..`` are named by the folders they are)."""
    run_dirs = [p if p.name not in ("", ".", "..") else p.resolve() for p in map(Path, run_dirs)]
    labels = [p.name for p in run_dirs]
    if len(set(labels)) != len(labels):
        labels = [f"{p.parent.name}/{p.name}" for p in run_dirs]
    if len(set(labels)) != len(labels):
        labels = [str(p) for p in run_dirs]
    return labels


def collect(run_dirs: list[str | Path]) -> tuple[list[str], list[dict[str, Any]]]:
    """``(evaluators, rows)``: every (run, checkpoint) with its results by evaluator label."""
    paths = [Path(p) for p in run_dirs]
    missing = [str(p) for p in paths if not p.is_dir()]
    if missing:
        raise TempleError(f"run directory not found: {missing[0]}")
    columns: list[str] = []
    rows: list[dict[str, Any]] = []
    for path, label in zip(paths, run_labels(paths)):
        results = run_results(path)
        by_checkpoint: dict[str, dict[str, Any]] = {}
        for result in results:
            row = by_checkpoint.setdefault(result["checkpoint"], {"run": label, "run_dir": str(path), "checkpoint": result["checkpoint"], "results": {}})
            row["results"][result["evaluator"]] = result
            if result["evaluator"] not in columns:
                columns.append(result["evaluator"])
        rows.extend(by_checkpoint.values())
    if not rows:
        raise TempleError(f"no evaluation results in {', '.join(map(str, paths))} (run the eval stage: temple run RECIPE --stages eval)")
    return columns, rows


def format_table(columns: list[str], rows: list[dict[str, Any]]) -> str:
    head = ["run", "checkpoint", *columns]
    body = [[row["run"], row["checkpoint"], *(format_score(row["results"][c]["score"], row["results"][c].get("interval"))
                                               if c in row["results"] else "-" for c in columns)] for row in rows]
    widths = [max(len(str(line[i])) for line in [head, *body]) for i in range(len(head))]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(line, widths)).rstrip() for line in [head, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    notes = {c: next(r["results"][c]["metric"] for r in rows if c in r["results"]) for c in columns}
    lines.append("")
    with_interval = {c for c in columns for r in rows if r["results"].get(c, {}).get("interval")}
    lines += [f"{c}: {m}" + ("; [low, high] = its 95% interval" if c in with_interval else "") for c, m in notes.items()]
    return "\n".join(lines)


def plot(columns: list[str], rows: list[dict[str, Any]], out: str | Path, baseline: dict[str, Any] | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, len(columns), figsize=(max(4.0, 1.2 + 0.55 * len(rows)) * len(columns), 4.2), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    names = [f"{r['run']}:{r['checkpoint']}" for r in rows]
    for ax, column in zip(axes[0], columns):
        values, low, high = [], [], []
        for row in rows:
            result = row["results"].get(column)
            score = result["score"] if result and result["score"] is not None else float("nan")
            interval = (result or {}).get("interval") or [score, score]
            if baseline is not None:
                base = (baseline["results"].get(column) or {}).get("score")
                score = score - base if base is not None else float("nan")
                interval = [score, score]
            values.append(score)
            low.append(max(0.0, score - interval[0]) if interval[0] == interval[0] else 0.0)
            high.append(max(0.0, interval[1] - score) if interval[1] == interval[1] else 0.0)
        x = range(len(rows))
        ax.bar(x, values, yerr=[low, high] if baseline is None else None, capsize=3,
               color=[colours[i % len(colours)] for i in x])
        chance = next((r["results"][column]["metrics"].get("chance") for r in rows if column in r["results"]
                       and isinstance(r["results"][column].get("metrics"), dict)), None)
        if baseline is None and isinstance(chance, (int, float)):
            ax.axhline(chance, color="grey", linestyle="--", linewidth=1, label="chance")
            ax.legend(loc="lower right", fontsize=8)
        if baseline is not None:
            ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set_title(column)
        ax.set_xticks(list(x))
        ax.set_xticklabels(names, rotation=35, ha="right", fontsize=8)
        ax.set_ylabel("score" if baseline is None else f"score - {baseline['run']}:{baseline['checkpoint']}")
    fig.suptitle("temple compare" + ("" if baseline is None else " (difference from the baseline)"))
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def page(columns: list[str], rows: list[dict[str, Any]], chart: Path) -> str:
    e = htmllib.escape
    head = "".join(f"<th>{e(c)}</th>" for c in columns)
    body = "".join(
        f"<tr><td>{e(r['run'])}</td><td>{e(r['checkpoint'])}</td>"
        + "".join(f"<td>{e(format_score(r['results'][c]['score'], r['results'][c].get('interval')) if c in r['results'] else '-')}</td>" for c in columns)
        + "</tr>" for r in rows)
    data = base64.b64encode(Path(chart).read_bytes()).decode()
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>temple compare</title>'
            f"<style>body{{font-family:system-ui,sans-serif;margin:2em}}table{{border-collapse:collapse}}"
            f"td,th{{border:1px solid #ccc;padding:.25em .6em}}img{{max-width:100%}}</style></head><body>"
            f"<h1>temple compare</h1><table><tr><th>run</th><th>checkpoint</th>{head}</tr>{body}</table>"
            f"<p>score [95% bootstrap interval]</p><img src=\"data:image/png;base64,{data}\" alt=\"comparison chart\"></body></html>")


def compare_runs(run_dirs, chart="temple-compare.png", html=None, baseline: str | None = None):
    """Print-ready table, the chart's path and the HTML page's path (or None)."""
    columns, rows = collect(run_dirs)
    shown = {row["run_dir"] for row in rows}
    unevaluated = [str(p) for p in run_dirs if str(Path(p)) not in shown]
    base_row = None
    if baseline:
        run, _, checkpoint = baseline.rpartition(":")
        matches = [r for r in rows if checkpoint == r["checkpoint"] and (run in (r["run"], r["run_dir"]) or Path(run) == Path(r["run_dir"]))]
        if not matches:
            known = ", ".join(f"{r['run']}:{r['checkpoint']}" for r in rows)
            raise TempleError(f"--baseline {baseline}: no such run:checkpoint among {known}")
        base_row = matches[0]
    chart_path = plot(columns, rows, chart, base_row)
    page_path = None
    if html:
        page_path = Path(html)
        page_path.parent.mkdir(parents=True, exist_ok=True)
        page_path.write_text(page(columns, rows, chart_path), encoding="utf-8")
    table = format_table(columns, rows)
    if unevaluated:  # said, not silently left out of the table
        table += "\n" + "\n".join(f"not shown: {p} (no evaluation results; run its eval stage)" for p in unevaluated)
    return table, chart_path, page_path
