"""Training curves: one figure per stage, one across the stages of a run, and the paper's
Figure 4 (the SFT stage's loss and gradient norm with vs without DPO first).

Written with matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from temple_core.training.metrics import KEY_METRICS, read_metrics


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _series(records: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for r in records:
        if r.get(key) is not None:
            xs.append(r["step"])
            ys.append(r[key])
    return xs, ys


def plot_stage(stage_dir: Path, title: str | None = None) -> Path | None:
    """``<stage_dir>/curves.png`` from its ``metrics.jsonl``: one panel per key metric."""
    stage_dir = Path(stage_dir)
    records = read_metrics(stage_dir)
    if not records:
        return None
    keys = [k for k in KEY_METRICS if any(r.get(k) is not None for r in records)]
    plt = _pyplot()
    cols = min(4, len(keys))
    rows = (len(keys) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        xs, ys = _series(records, key)
        ax.plot(xs, ys, lw=1.2, marker="." if len(xs) < 30 else None)
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.suptitle(title or stage_dir.name)
    fig.tight_layout()
    out = stage_dir / "curves.png"
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def plot_run(train_dir: Path, stage_dirs: list[Path]) -> Path | None:
    """``<train_dir>/curves.png``: loss and grad norm of every stage on one step axis."""
    stages = [(d.name, read_metrics(d)) for d in stage_dirs]
    stages = [(name, recs) for name, recs in stages if recs]
    if not stages:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.6))
    offset = 0
    for name, records in stages:
        for ax, key in zip(axes, ("loss", "grad_norm")):
            xs, ys = _series(records, key)
            # Markers keep a stage of one or a few steps visible.
            ax.plot([x + offset for x in xs], ys, lw=1.2, label=name, marker="." if len(xs) < 30 else None)
        last = max(r["step"] for r in records)
        for ax in axes:
            ax.axvline(offset + last, color="grey", lw=0.5, ls=":")
        offset += last
    for ax, key in zip(axes, ("loss", "grad_norm")):
        ax.set_title(f"{key} across stages")
        ax.set_xlabel("step (cumulative)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    out = Path(train_dir) / "curves.png"
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def last_stage_of(train_dir: Path, trainer: str = "sft") -> Path | None:
    """The last ``<k>-<name>`` folder of a run's train dir whose metrics are an SFT stage's."""
    candidates = []
    for d in Path(train_dir).iterdir() if Path(train_dir).is_dir() else []:
        head, _, name = d.name.partition("-")
        if d.is_dir() and head.isdigit() and (d / "metrics.jsonl").is_file():
            records = read_metrics(d)
            if records and records[0].get("trainer", name) == trainer:
                candidates.append((int(head), d))
    return max(candidates)[1] if candidates else None


def plot_comparison(out: Path, runs: list[tuple[str, Path]]) -> Path | None:
    """Figure 4: SFT loss and grad norm of several runs' SFT stages, overlaid.

    ``runs`` is ``[(label, stage_dir)]``, e.g. ``[("DPO -> SFT", a), ("SFT only", b)]``.
    """
    series = [(label, read_metrics(d)) for label, d in runs]
    series = [(label, recs) for label, recs in series if recs]
    if len(series) < 2:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    for label, records in series:
        for ax, key in zip(axes, ("loss", "grad_norm")):
            ax.plot(*_series(records, key), lw=1.2, label=label)
    for ax, key in zip(axes, ("SFT loss", "SFT grad norm")):
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out
