"""The micro-TEMPLE study, end to end through the real pipeline (docs/science.md).

    python benchmarks/micro_temple.py --seeds 3        # the study; results into docs/science*
    python benchmarks/micro_temple.py --quick --out /tmp/m   # the plumbing only (CI), never the effect

Per seed ``s``: the world's data of seed ``s`` (``python -m temple_core.samples.world``), then
``temple run`` on each recipe of ``examples/recipes/micro/`` -- ``generate`` first (selection, the
``contextual`` captioner run by the micro model on the unlabeled split, pairs; the base model's
scores), then every condition, whose DPO stages read that run's pairs. Each recipe is copied into
``<out>/seed<s>/recipes/`` with its ``runs/micro/seed0`` paths pointed at ``<out>/seed<s>`` and
its ``seed`` set to ``s``; nothing else changes. Runs are resumable (temple's ledger): a second
invocation skips what is done.

Then the scores are read back from each run's ``eval/`` (per-item records, not re-scored) and
aggregated as docs/science.md fixes them: per seed a video-clustered bootstrap interval, over
seeds a Student-t interval, TEMPLE vs every other condition as paired per-seed differences. Out:
``--results`` (JSON), ``--figure`` (SVG, the paper's Figure 5 shape: each condition's change
from the base model, per metric) and the results section of ``--doc``, between its markers.
Time per run and the peak resident memory of any run are recorded in the results.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "examples" / "recipes" / "micro"
CONDITIONS = ["sft", "temple", "sft_dpo", "mixed", "drop_only", "shuffle_only", "reverse_only"]
LABELS = {"base": "base", "sft": "SFT only", "temple": "TEMPLE (DPO 16-8-4-2, SFT)", "sft_dpo": "SFT, DPO 16-8-4-2",
          "mixed": "DPO all r, SFT", "drop_only": "drop only", "shuffle_only": "shuffle only", "reverse_only": "reverse only"}
ORDER_PERTURBATIONS = ("shuffle", "reverse")
DIFFICULTIES = (16, 8, 4, 2)
MARK_START, MARK_END = "<!-- micro-temple results: start -->", "<!-- micro-temple results: end -->"
#: ``--quick``: a few videos, one step per training stage, short texts, a reduced micro build.
QUICK_COUNTS = {"unlabeled": 3, "sft": 2, "heldout": 3}
QUICK_MICRO = {"steps": 3, "videos": 4, "checks": 2}


# -- running ---------------------------------------------------------------------------------
def rewrite(recipe: Path, seed_dir: Path, seed: int, quick: bool) -> dict:
    """The recipe for one seed: its ``runs/micro/seed0`` paths moved to ``seed_dir``, its seed
    set; ``quick``: every training stage capped at one step and every text kept short."""
    import yaml

    def move(value):
        if isinstance(value, str) and "runs/micro/seed0" in value:
            return str(seed_dir / value.split("runs/micro/seed0", 1)[1].lstrip("/"))
        if isinstance(value, list):
            return [move(v) for v in value]
        if isinstance(value, dict):
            return {k: move(v) for k, v in value.items()}
        return value

    data = move(yaml.safe_load(recipe.read_text()))
    data["seed"] = seed
    if quick:
        for stage in (data.get("train") or {}).get("stages", []):
            stage["max_steps"] = 1
            stage["batch_size"] = 2
        if "generate" in data:
            data["generate"]["captioner"]["clip_max_new_tokens"] = 8
            data["generate"]["sampling"]["max_new_tokens"] = 24
        for spec in data["eval"]["evaluators"]:
            if spec["name"] == "event_recall":
                spec["max_new_tokens"] = 16
                if spec.get("unit") == "clips":
                    spec["captioner"]["clip_max_new_tokens"] = 8
    return data


def run_recipe(data: dict, path: Path, log) -> dict:
    import yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    started = time.time()
    with open(path.with_suffix(".log"), "a") as out:
        proc = subprocess.run([sys.executable, "-m", "temple_core", "run", str(path), "--no-progress"], stdout=out,
                              stderr=subprocess.STDOUT, cwd=ROOT)
    seconds = time.time() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # MiB, the largest child so far
    log(f"  {path.stem}: rc {proc.returncode}, {seconds:.0f} s (peak child RSS so far {peak:.0f} MiB)")
    if proc.returncode:
        raise SystemExit(f"temple run {path} failed (rc {proc.returncode}); its log: {path.with_suffix('.log')}")
    return {"seconds": round(seconds, 1), "peak_rss_mib_so_far": round(peak, 1)}


def run_seed(seed: int, out: Path, conditions: list[str], quick: bool, log) -> dict:
    from temple_core.samples import world

    seed_dir = out / f"seed{seed}"
    started = time.time()
    world.write_study_data(seed_dir / "data", seed, QUICK_COUNTS if quick else None)
    data_seconds = time.time() - started
    timing = {"data": round(data_seconds, 1)}
    for name in ["generate", *conditions]:
        recipe = rewrite(RECIPES / f"{name}.yaml", seed_dir, seed, quick)
        timing[name] = run_recipe(recipe, seed_dir / "recipes" / f"{name}.yaml", log)
    timing["total"] = round(time.time() - started, 1)
    timing["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)
    (seed_dir / "timing.json").write_text(json.dumps(timing, indent=1) + "\n")
    return timing


# -- reading the scores back -----------------------------------------------------------------
def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def order_outcomes(path: Path, perturbations=ORDER_PERTURBATIONS, difficulty=None) -> dict[str, list[float]]:
    """Per held-out video, its length-normalised wins (true order more likely) over the given
    perturbations (and r), from ``temporal_order``'s per-item records."""
    out = {}
    for record in read_jsonl(path):
        if "variants" not in record:
            continue
        out[record["item_id"]] = [v["win_mean"] for v in record["variants"] if not v["identical"]
                                  and v["perturbation"] in perturbations and (difficulty is None or v["difficulty"] == difficulty)]
    return out


def pooled(per_video: dict[str, list[float]], seed: int) -> dict:
    from temple_core.evaluation.stats import clustered_interval

    sums = [sum(v) for v in per_video.values()]
    counts = [len(v) for v in per_video.values()]
    total = sum(counts)
    return {"value": sum(sums) / total if total else None, "interval": clustered_interval(sums, counts, seed), "n": total}


def run_metrics(run: Path, checkpoint: str, seed: int) -> dict:
    """One run's scores (docs/science.md's metrics)."""
    folder = run / "eval" / checkpoint
    m: dict = {}
    if not (folder / "recall.json").is_file():  # the run has not finished its evaluation
        return m
    for label in ("order", "order_blind"):
        m[label] = pooled(order_outcomes(folder / f"{label}.jsonl"), seed)
        m[f"{label}_cells"] = {p: {str(r): pooled(order_outcomes(folder / f"{label}.jsonl", (p,), r), seed)["value"]
                                   for r in DIFFICULTIES} for p in ("drop", "shuffle", "reverse")}
        m[f"{label}_drop"] = pooled(order_outcomes(folder / f"{label}.jsonl", ("drop",)), seed)
    for label in ("first", "first_blind", "first_text", "first_text_blind", "recall", "clip_captions"):
        path = folder / f"{label}.json"
        if path.is_file():
            result = json.loads(path.read_text())
            m[label] = {"value": result.get("score"), "interval": result.get("interval"), "n": result.get("n")}
            if label == "clip_captions":
                m["clip_captions_exact"] = result.get("metrics", {}).get("exact")
    for label in ("first", "first_text"):  # how many questions were answered with the second option
        path = folder / f"{label}.jsonl"
        if path.is_file():
            records = [r for r in read_jsonl(path) if "chosen" in r]
            m[f"{label}_second"] = {"second": sum(1 for r in records if r["chosen"] == 1), "questions": len(records)}
    return m


def t_interval(values: list[float]) -> list[float] | None:
    from scipy import stats

    if len(values) < 2:
        return None
    mean = sum(values) / len(values)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    half = stats.t.ppf(0.975, len(values) - 1) * sd / math.sqrt(len(values))
    return [mean - half, mean + half]


def paired_video_interval(a: dict[str, list[float]], b: dict[str, list[float]], seed: int) -> list[float] | None:
    """One seed: bootstrap over held-out videos of the difference in per-video accuracy."""
    from temple_core.evaluation.stats import mean_interval

    diffs = [sum(a[k]) / len(a[k]) - sum(b[k]) / len(b[k]) for k in a if k in b and a[k] and b[k]]
    return mean_interval(diffs, seed)


def aggregate(out: Path, seeds: list[int], conditions: list[str]) -> dict:
    runs = {"base": ("generate", "base"), **{c: (c, "final") for c in conditions}}
    per_seed = {s: {c: run_metrics(out / f"seed{s}" / run, ckpt, s) for c, (run, ckpt) in runs.items()} for s in seeds}
    metrics = ["order", "order_drop", "first", "recall", "order_blind", "order_blind_drop", "first_blind", "clip_captions",
               "first_text", "first_text_blind"]
    summary: dict = {}
    for c in runs:
        summary[c] = {}
        for m in metrics:
            values = [per_seed[s][c][m]["value"] for s in seeds if m in per_seed[s][c] and per_seed[s][c][m]["value"] is not None]
            if not values:
                continue
            interval = t_interval(values) if len(values) > 1 else next(per_seed[s][c][m]["interval"] for s in seeds if m in per_seed[s][c])
            summary[c][m] = {"mean": sum(values) / len(values), "interval": interval, "per_seed": values,
                             "interval_kind": "t over seeds" if len(values) > 1 else "bootstrap over videos (one seed)"}
        done = [s for s in seeds if per_seed[s][c]]
        summary[c]["seeds"] = done
        for label in ("first", "first_text"):
            if any(f"{label}_second" in per_seed[s][c] for s in done):
                summary[c][f"{label}_second"] = [per_seed[s][c].get(f"{label}_second") for s in done]
        summary[c]["cells"] = {p: {str(r): _mean([per_seed[s][c]["order_cells"][p][str(r)] for s in done]) for r in DIFFICULTIES}
                               for p in ("drop", "shuffle", "reverse")}
    # TEMPLE vs every other condition: paired per seed (order, the primary metric; and the
    # which-first questions scored by option text, run 3's secondary reading).
    versus: dict = {}
    versus_first_text: dict = {}
    if "temple" in conditions:
        for c in runs:
            if c == "temple":
                continue
            both = [s for s in seeds if per_seed[s]["temple"] and per_seed[s][c]]
            if not both:
                continue
            diffs = [per_seed[s]["temple"]["order"]["value"] - per_seed[s][c]["order"]["value"] for s in both]
            if len(both) > 1:
                interval, kind = t_interval(diffs), "paired t over seeds"
            else:
                s = both[0]
                a = order_outcomes(out / f"seed{s}" / "temple" / "eval" / "final" / "order.jsonl")
                run, ckpt = runs[c]
                b = order_outcomes(out / f"seed{s}" / run / "eval" / ckpt / "order.jsonl")
                interval, kind = paired_video_interval(a, b, s), "paired bootstrap over videos (one seed)"
            versus[c] = paired_entry(diffs, both, interval, kind)
            text = [s for s in both if "first_text" in per_seed[s]["temple"] and "first_text" in per_seed[s][c]]
            if len(text) > 1:
                diffs = [per_seed[s]["temple"]["first_text"]["value"] - per_seed[s][c]["first_text"]["value"] for s in text]
                versus_first_text[c] = paired_entry(diffs, text, t_interval(diffs), "paired t over seeds")
    return {"seeds": seeds, "per_seed": {str(s): v for s, v in per_seed.items()}, "summary": summary, "temple_vs": versus,
            "temple_vs_first_text": versus_first_text}


def paired_entry(diffs: list[float], seeds: list[int], interval, kind: str) -> dict:
    """TEMPLE minus a condition over ``seeds``, and whether it is an effect by the design's rule
    (3 seeds or more, the 95% interval excludes 0)."""
    return {"mean": sum(diffs) / len(diffs), "interval": interval, "per_seed": diffs, "seeds": seeds, "interval_kind": kind,
            "effect": bool(len(seeds) >= 3 and interval and (interval[0] > 0 or interval[1] < 0))}


def _mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


# -- writing ---------------------------------------------------------------------------------
def fmt(entry) -> str:
    if not entry or entry.get("mean", entry.get("value")) is None:
        return "--"
    value = entry.get("mean", entry.get("value"))
    interval = entry.get("interval")
    return f"{value:.3f} [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else f"{value:.3f}"


def table(results: dict) -> str:
    s = results["summary"]
    rows = ["| condition | seeds | order (shuffle+reverse) | drop | which first? | event recall | blind order | blind which first? |",
            "|---|---|---|---|---|---|---|---|"]
    for c, m in s.items():
        rows.append(f"| {LABELS.get(c, c)} | {len(m.get('seeds', []))} | {fmt(m.get('order'))} | {fmt(m.get('order_drop'))} | {fmt(m.get('first'))} | "
                    f"{fmt(m.get('recall'))} | {fmt(m.get('order_blind'))} | {fmt(m.get('first_blind'))} |")
    rows += ["", "Order accuracy per perturbation x r (mean over seeds):", "",
             "| condition | " + " | ".join(f"{p} r={r}" for p in ("drop", "shuffle", "reverse") for r in DIFFICULTIES) + " |",
             "|---|" + "---|" * 12]
    for c, m in s.items():
        cells = m["cells"]
        rows.append(f"| {LABELS.get(c, c)} | " + " | ".join(
            "--" if cells[p][str(r)] is None else f"{cells[p][str(r)]:.2f}" for p in ("drop", "shuffle", "reverse") for r in DIFFICULTIES) + " |")
    rows += paired_rows("TEMPLE minus each condition, order accuracy (shuffle+reverse), paired:", results["temple_vs"])
    if any("first_text" in m for m in s.values()):
        rows += ["", "Which happened first?, each option scored by its text alone (run 3; docs/science.md) -- accuracy, "
                 "its blind baseline, and the questions answered with the second option per seed (of each seed's questions), "
                 "with letters (`first`) and by text (`first_text`):", "",
                 "| condition | which first? (text) | blind (text) | 2nd option, letters | 2nd option, text |", "|---|---|---|---|---|"]
        for c, m in s.items():
            def seconds(key):
                return ", ".join(f"{e['second']}/{e['questions']}" if e else "--" for e in m.get(key, [])) or "--"
            rows.append(f"| {LABELS.get(c, c)} | {fmt(m.get('first_text'))} | {fmt(m.get('first_text_blind'))} | "
                        f"{seconds('first_second')} | {seconds('first_text_second')} |")
    rows += paired_rows("TEMPLE minus each condition, which-first by option text, paired:", results.get("temple_vs_first_text"))
    return "\n".join(rows)


def paired_rows(title: str, entries: dict | None) -> list[str]:
    """A table of :func:`paired_entry` results, one row per condition (none: no rows)."""
    if not entries:
        return []
    rows = ["", title, "", "| vs | seeds | difference | interval kind | effect (3 seeds, interval excludes 0) |", "|---|---|---|---|---|"]
    for c, d in entries.items():
        rows.append(f"| {LABELS.get(c, c)} | {len(d['seeds'])} | {fmt(d)} | {d['interval_kind']} | {'yes' if d['effect'] else 'no'} |")
    return rows


def figure(results: dict, path: Path) -> None:
    """The paper's Figure 5 shape: per metric, each condition's change from the base model
    (mean over seeds, 95% interval of the condition's mean shifted by the base mean)."""
    s = results["summary"]
    conditions = [c for c in s if c != "base"]
    metrics = [("order", "order (shuffle+reverse)"), ("first", "which happened first?"), ("recall", "event recall")]
    colours = ["#4e79a7", "#e15759", "#f28e2b", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7"]
    width, height, left, top, bottom = 760, 360, 60, 30, 90
    deltas = []
    for m, _ in metrics:
        for c in conditions:
            if m in s[c] and m in s["base"]:
                e = s[c][m]
                lo, hi = (e["interval"] or [e["mean"], e["mean"]])
                deltas += [lo - s["base"][m]["mean"], hi - s["base"][m]["mean"]]
    span = max([0.05] + [abs(d) for d in deltas]) * 1.1
    plot_h = height - top - bottom
    y = lambda v: top + plot_h / 2 - v / span * (plot_h / 2)
    group_w = (width - left - 20) / len(metrics)
    bar_w = group_w * 0.8 / max(1, len(conditions))
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">',
           f'<text x="{width / 2}" y="16" text-anchor="middle" font-size="13">Micro-TEMPLE: change from the base model '
           f'({len(results["seeds"])} seed(s), 95% intervals)</text>',
           f'<line x1="{left}" x2="{width - 20}" y1="{y(0)}" y2="{y(0)}" stroke="#333"/>']
    for tick in (-span, -span / 2, span / 2, span):
        svg.append(f'<text x="{left - 6}" y="{y(tick) + 4}" text-anchor="end">{tick:+.2f}</text>'
                   f'<line x1="{left}" x2="{width - 20}" y1="{y(tick)}" y2="{y(tick)}" stroke="#ddd"/>')
    for g, (m, title) in enumerate(metrics):
        x0 = left + g * group_w + group_w * 0.1
        svg.append(f'<text x="{left + g * group_w + group_w / 2}" y="{height - bottom + 18}" text-anchor="middle">{title}</text>')
        for k, c in enumerate(conditions):
            if m not in s[c] or m not in s["base"]:
                continue
            e, base = s[c][m], s["base"][m]["mean"]
            d = e["mean"] - base
            x = x0 + k * bar_w
            svg.append(f'<rect x="{x:.1f}" y="{min(y(d), y(0)):.1f}" width="{bar_w * 0.9:.1f}" height="{abs(y(d) - y(0)):.1f}" '
                       f'fill="{colours[k % len(colours)]}"/>')
            if e["interval"]:
                lo, hi = e["interval"][0] - base, e["interval"][1] - base
                cx = x + bar_w * 0.45
                svg.append(f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{y(lo):.1f}" y2="{y(hi):.1f}" stroke="#000"/>')
    for k, c in enumerate(conditions):
        lx, ly = left + (k % 4) * 175, height - bottom + 40 + (k // 4) * 16
        svg.append(f'<rect x="{lx}" y="{ly - 9}" width="10" height="10" fill="{colours[k % len(colours)]}"/>'
                   f'<text x="{lx + 14}" y="{ly}">{LABELS.get(c, c)}</text>')
    svg.append("</svg>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(svg) + "\n")


def checks(results: dict) -> list[str]:
    """The design's two validity checks, stated: the base model's held-out clip captions
    (target >= 80%) and the blind baselines at chance (0.5 inside each 95% interval)."""
    s, lines = results["summary"], []
    if cc := s.get("base", {}).get("clip_captions"):
        lines += [f"Base model's clip captions naming their event, held-out clips (the design's check, target >= 80%): {fmt(cc)}; "
                  "per seed " + ", ".join(f"{v:.3f}" for v in cc["per_seed"]) + ".", ""]
    for metric, name in (("order_blind", "blind order (shuffle+reverse)"), ("first_blind", "blind which-first"),
                         ("first_text_blind", "blind which-first by option text")):
        entries = {c: m[metric] for c, m in s.items() if m.get(metric) and m[metric].get("interval")}
        if entries:
            inside = [c for c, e in entries.items() if e["interval"][0] <= 0.5 <= e["interval"][1]]
            outside = [LABELS.get(c, c) for c in entries if c not in inside]
            lines.append(f"Chance check, {name}: 0.5 inside the interval for {len(inside)} of {len(entries)} conditions"
                         + (f" (outside: {', '.join(outside)})." if outside else "."))
    return lines + [""] if lines else []


def write_doc(doc: Path, results: dict, figure_path: Path) -> None:
    text = doc.read_text() if doc.is_file() else ""
    info = results["run"]
    body = [MARK_START, "", f"Command: `{info['command']}` ({info['finished']}; machine: {info['machine']}).", "",
            f"Seeds: {', '.join(map(str, results['seeds']))}. Time per seed: "
            + ", ".join(f"seed {s}: {t['total'] / 60:.1f} min" for s, t in info["timing"].items())
            + f". Peak resident memory of any run: {info['peak_rss_mib']:.0f} MiB.", "",
            *([f"Base model: {b['parameters']:,} parameters, pre-trained in {b['train_seconds'] / 60:.1f} min; held-out checks of its "
               "build card: " + ", ".join(f"{k} {v:.2f}" for k, v in b["checks"].items()) + ".", ""] if (b := results.get("base_model")) else []),
            *checks(results), f"![Figure 5 shape]({os.path.relpath(figure_path, doc.parent)})", "", table(results), "", MARK_END]
    block = "\n".join(body)
    if MARK_START in text:
        head, rest = text.split(MARK_START, 1)
        text = head + block + rest.split(MARK_END, 1)[1]
    else:
        text = text.rstrip() + "\n\n## Results\n\n" + block + "\n"
    doc.write_text(text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3, help="study seeds 0 .. N-1 (default 3)")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "runs" / "micro"), help="where the runs go (default runs/micro)")
    parser.add_argument("--conditions", default=",".join(CONDITIONS), help="comma-separated subset of " + ",".join(CONDITIONS))
    parser.add_argument("--results", default=str(ROOT / "docs" / "science" / "micro_results.json"))
    parser.add_argument("--figure", default=str(ROOT / "docs" / "science" / "micro_fig5.svg"))
    parser.add_argument("--doc", default=str(ROOT / "docs" / "science.md"), help="doc whose results section is (re)written")
    parser.add_argument("--aggregate-only", action="store_true", help="only read the finished runs back and write the results")
    parser.add_argument("--no-write", action="store_true", help="run the seeds, write nothing but the runs (aggregate later)")
    parser.add_argument("--quick", action="store_true",
                        help="the plumbing only: a reduced micro build, a few videos, one step per stage; writes under --out only")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    conditions = [c for c in args.conditions.split(",") if c]
    unknown = sorted(set(conditions) - set(CONDITIONS))
    if unknown:
        parser.error(f"unknown conditions {unknown}; known: {CONDITIONS}")
    if args.quick:
        os.environ["TEMPLE_MICRO_SETTINGS"] = json.dumps(QUICK_MICRO)
        args.results, args.figure, args.doc = str(out / "results.json"), str(out / "fig5.svg"), str(out / "science.md")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    log = lambda message: print(message, flush=True)
    timing = {}
    started = time.time()
    if not args.aggregate_only:
        # The base model first, once (every run would otherwise wait on the build lock).
        log("building / loading the micro preset ...")
        build = time.time()
        proc = subprocess.run([sys.executable, "-m", "temple_core.models.micro"], check=True, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        timing["preset_seconds"] = round(time.time() - build, 1)
        (out / "preset.txt").parent.mkdir(parents=True, exist_ok=True)
        (out / "preset.txt").write_text(proc.stdout.strip().splitlines()[-1] + "\n")
        for s in seeds:
            log(f"seed {s}")
            timing[str(s)] = run_seed(s, out, conditions, args.quick, log)
    if args.no_write:
        return 0
    results = aggregate(out, seeds, conditions)
    # Timings from each seed's own record (seeds may run in separate processes, then --aggregate-only).
    for s in seeds:
        record = out / f"seed{s}" / "timing.json"
        if str(s) not in timing and record.is_file():
            timing[str(s)] = json.loads(record.read_text())
    previous = {}
    if Path(args.results).is_file():
        previous = json.loads(Path(args.results).read_text()).get("run", {})
    peaks = [t.get("peak_rss_mib", 0) for k, t in timing.items() if k != "preset_seconds"]
    results["run"] = {
        "command": "python benchmarks/micro_temple.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": f"{os.cpu_count()} CPU cores (shared)",
        "timing": {k: v for k, v in timing.items() if k != "preset_seconds"} or previous.get("timing", {}),
        "preset_seconds": timing.get("preset_seconds", previous.get("preset_seconds")),
        "peak_rss_mib": max(peaks + [resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024]),
        "wall_seconds": round(time.time() - started, 1),
    }
    if (out / "preset.txt").is_file():  # the base model's own card: its pre-training time and held-out checks
        card = Path((out / "preset.txt").read_text().strip()) / "micro_card.json"
        if card.is_file():
            data = json.loads(card.read_text())
            results["base_model"] = {"folder": str(card.parent), "parameters": data["parameters"], "train_seconds": data["train_seconds"],
                                     "checks": {k: v["score"] for k, v in data["checks"].items()}, "settings": data["settings"]}
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    Path(args.results).write_text(json.dumps(results, indent=1) + "\n")
    figure(results, Path(args.figure))
    write_doc(Path(args.doc), results, Path(args.figure))
    log(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
