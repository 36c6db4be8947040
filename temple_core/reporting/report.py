"""``temple report RUN_DIR`` -> ``RUN_DIR/report.html``: one self-contained page of what a run did.

Sections, each present when its stage has run: the selection funnel (the paper's Table 4
for this run) with the rejection reasons; per kept video its keyframes in order, grouped by
segment; the preference pairs, chosen beside rejected, with the perturbed clip order shown
on the thumbnails; pair counts per difficulty and perturbation; the training curves; the
evaluation scores per checkpoint with their intervals and frame settings (and, for
``temporal_order``, accuracy per perturbation x r), with a chart.
Images are embedded (base64), so the file can be mailed or archived alone.
"""

from __future__ import annotations

import base64
import html
from collections import Counter, defaultdict
from pathlib import Path

import cv2
import numpy as np

from temple_core.errors import RunError, TempleError
from temple_core.records import VideoRecord
from temple_core.store import RunLayout, read_jsonl, read_records
from temple_core.store.files import write_text_atomic

#: What the report reads of each pair.
PAIR_KEYS = ("pair_id", "video_id", "prompt", "chosen", "rejected", "perturbation", "difficulty", "kept_indices")
#: Rejection reasons decided on shots (before grouping) vs on segments (after grouping).
SHOT_RULES = ("long_scene", "few_shots", "many_shots")
THUMB_WIDTH = 128
MAX_VIDEOS = 12  # videos shown in detail; the tables count all of them
MAX_PAIRS_PER_VIDEO = 6
GROUP_COLOURS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45",
                 "#469990", "#9a6324", "#800000", "#808000", "#000075", "#a9a9a9"]


def _e(text) -> str:
    return html.escape(str(text))


def _img_tag(jpeg: bytes, title: str = "", extra: str = "") -> str:
    data = base64.b64encode(jpeg).decode()
    return f'<img src="data:image/jpeg;base64,{data}" title="{_e(title)}" {extra}>'


def _png_tag(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img class="curve" src="data:image/png;base64,{data}" alt="{_e(alt)}">'


def _thumb(frame: np.ndarray) -> bytes:
    h, w = frame.shape[:2]
    small = cv2.resize(frame, (THUMB_WIDTH, max(1, round(h * THUMB_WIDTH / w))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 80])
    return buf.tobytes()


def keyframe_thumbs(run_dir: Path, record: VideoRecord) -> dict[int, bytes]:
    """JPEG thumbnails of a video's keyframes: the select stage's files, else decoded now."""
    frames = sorted({f for pair in record.keyframes for f in pair})
    thumbs: dict[int, bytes] = {}
    layout = RunLayout(run_dir)
    for frame in frames:
        path = layout.thumbnail(record.video_id, frame)
        if path.is_file():
            image = cv2.imread(str(path))
            if image is not None:
                thumbs[frame] = _thumb(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    missing = [f for f in frames if f not in thumbs]
    if missing and Path(record.path).is_file():
        from temple_core.video.source import VideoSource

        try:
            for frame, image in zip(missing, VideoSource(record.path).read_frames(missing)):
                thumbs[frame] = _thumb(image)
        except TempleError:
            pass  # a video moved or deleted since: the report shows frame numbers instead
    return thumbs


def _clip_strip(record: VideoRecord, thumbs: dict[int, bytes], order: list[int] | None = None) -> str:
    """The video's segments (clips downstream) as thumbnail pairs, in ``order`` if given."""
    group_of = {}
    for g, members in enumerate(record.groups):
        for clip in members:
            group_of[clip] = g
    cells = []
    for position, segment_index in enumerate(order if order is not None else range(len(record.segments))):
        segment = record.segments[segment_index]
        colour = GROUP_COLOURS[group_of.get(segment[0], 0) % len(GROUP_COLOURS)]
        images = "".join(
            _img_tag(thumbs[f], f"frame {f}") if f in thumbs else f'<span class="noimg">frame {f}</span>'
            for f in record.keyframes[segment_index]
        )
        label = f"clip {segment_index}" if order is None else f"{position}: clip {segment_index}"
        cells.append(f'<div class="clip" style="border-color:{colour}"><div>{images}</div><small>{_e(label)}</small></div>')
    return f'<div class="strip">{"".join(cells)}</div>'


def _funnel(videos: list[VideoRecord]) -> str:
    total = len(videos)
    errors = [v for v in videos if v.status == "error"]
    shot_rejected = [v for v in videos if v.status == "rejected" and v.reason in SHOT_RULES]
    after_shots = total - len(errors) - len(shot_rejected)
    kept = sum(1 for v in videos if v.status == "kept")
    reasons = Counter(v.reason for v in videos if v.status == "rejected")
    rows = [
        ("input videos", total),
        ("readable", total - len(errors)),
        ("after shot filtering", after_shots),
        ("after similarity grouping (kept)", kept),
    ]
    table = "".join(f"<tr><td>{_e(a)}</td><td>{b}</td></tr>" for a, b in rows)
    reason_rows = "".join(f"<tr><td>{_e(r)}</td><td>{n}</td></tr>" for r, n in reasons.most_common())
    error_rows = "".join(f"<tr><td>{_e(v.video_id)}</td><td>{_e(v.reason)}</td></tr>" for v in errors)
    out = f'<table class="funnel"><tr><th>stage</th><th>videos</th></tr>{table}</table>'
    out += "<p>The paper (Table 4): 47,112 → 10,915 after shot filtering → 2,195 after grouping.</p>"
    if reason_rows:
        out += f"<h3>Why videos were rejected</h3><table><tr><th>rule</th><th>videos</th></tr>{reason_rows}</table>"
    if error_rows:
        out += f"<h3>Unreadable videos</h3><table><tr><th>video</th><th>error</th></tr>{error_rows}</table>"
    return out


def _pair_counts(pairs: list[dict]) -> str:
    counts: dict[int, Counter] = defaultdict(Counter)
    perturbations: list[str] = []
    for pair in pairs:
        counts[pair["difficulty"]][pair["perturbation"]] += 1
        if pair["perturbation"] not in perturbations:
            perturbations.append(pair["perturbation"])
    head = "".join(f"<th>{_e(p)}</th>" for p in perturbations)
    rows = "".join(
        f"<tr><td>r = {r}</td>{''.join(f'<td>{counts[r][p]}</td>' for p in perturbations)}<td>{sum(counts[r].values())}</td></tr>"
        for r in sorted(counts, reverse=True)
    )
    return f"<table><tr><th>difficulty</th>{head}<th>all</th></tr>{rows}</table>"


def _training(layout: RunLayout) -> str:
    train_dir = layout.train_dir
    if not train_dir.is_dir():
        return ""
    parts = []
    for image in sorted(train_dir.glob("*.png")):
        parts.append(f"<h3>{_e(image.stem)}</h3>{_png_tag(image, image.stem)}")
    for stage_dir in layout.train_stages():
        metrics = read_jsonl(stage_dir / "metrics.jsonl") if (stage_dir / "metrics.jsonl").is_file() else []
        last = metrics[-1] if metrics else {}
        shown = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in last.items())
        parts.append(f"<h3>{_e(stage_dir.name)}</h3><p>{len(metrics)} logged steps. Last: {_e(shown)}</p>")
        curves = stage_dir / "curves.png"
        if curves.is_file():
            parts.append(_png_tag(curves, f"{stage_dir.name} curves"))
    return "".join(parts)


def _evaluation(run_dir: Path) -> str:
    """Scores per checkpoint x evaluator, the frame settings beside them, per-cell tables, a chart."""
    import tempfile

    from temple_core.evaluation.compare import collect, plot
    from temple_core.evaluation.results import format_score, run_results

    results = run_results(run_dir)
    if not results:
        return ""
    columns, rows = collect([run_dir])
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = "".join(
        f"<tr><td>{_e(r['checkpoint'])}</td>"
        + "".join(f"<td>{_e(format_score(r['results'][c]['score'], r['results'][c].get('interval')) if c in r['results'] else '-')}</td>" for c in columns)
        + "</tr>" for r in rows)
    parts = [f'<table class="scores"><tr><th>checkpoint</th>{head}</tr>{body}</table><p>score [95% bootstrap interval]</p>']
    for result in results:
        frames = (result.get("settings") or {}).get("frames") or {}
        setting = ", ".join(f"{k} {v}" for k, v in frames.items())
        parts.append(f"<h3>{_e(result['checkpoint'])}: {_e(result['evaluator'])}</h3>"
                     f"<p>{_e(result.get('metric', ''))}: <b>{_e(format_score(result['score'], result.get('interval')))}</b> "
                     f"over {_e(result.get('n'))} items; model {_e(result.get('model'))}; frames: {_e(setting)}; "
                     f"{_e(result.get('seconds'))} s</p>")
        metrics = result.get("metrics") or {}
        for kind in ("length_normalised", "sum"):
            cells = (metrics.get(kind) or {}).get("cells")
            if not cells:
                continue
            keys = list(next(iter(cells.values())).keys())
            rows_html = "".join(
                f"<tr><td>{_e(p)}</td>" + "".join(f"<td>{_e(format_score(c[k]['accuracy'], c[k].get('interval')))} <small>n={c[k]['n']}</small></td>" for k in keys) + "</tr>"
                for p, c in cells.items())
            label = "per-token mean log-likelihood" if kind == "length_normalised" else "sum of log-likelihoods"
            parts.append(f"<p>Accuracy by perturbation x r ({_e(label)}; chance {_e(metrics.get('chance'))}):</p>"
                         f"<table><tr><th>perturbation</th>{''.join(f'<th>r = {_e(k)}</th>' if k != 'all' else '<th>all r</th>' for k in keys)}</tr>{rows_html}</table>")
    with tempfile.TemporaryDirectory() as tmp:
        chart = plot(columns, rows, Path(tmp) / "scores.png")
        parts.append(_png_tag(chart, "evaluation scores"))
    return "".join(parts)


CSS = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
.strip{display:flex;flex-wrap:wrap;gap:.4em;margin:.4em 0}.clip{border:3px solid;padding:2px;text-align:center}
.clip img{display:inline-block;margin:1px}.noimg{display:inline-block;width:80px;font-size:.7em}
.pair{display:grid;grid-template-columns:1fr 1fr;gap:1em;border-top:1px solid #ddd;padding:.5em 0}
.pair p{white-space:pre-wrap;font-size:.9em}.curve{max-width:100%}h2{border-bottom:2px solid #444}
"""


def build_report(run_dir: str | Path) -> str:
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise RunError(f"run directory not found: {run_dir}")
    if not run_dir.is_dir():
        raise RunError(f"not a run directory (a file): {run_dir}")
    layout = RunLayout(run_dir)
    videos_path, pairs_path, captions_path = layout.videos, layout.pairs, layout.captions
    if not any(p.exists() for p in (videos_path, pairs_path, layout.train_dir, layout.eval_dir)):
        raise RunError(f"{run_dir}: nothing to report (no select, generate, train or eval output)")
    videos = read_records(videos_path, VideoRecord.from_dict, required=("video_id", "path", "status"))
    pairs = read_records(pairs_path, required=PAIR_KEYS)
    captions = {c["video_id"]: c for c in read_records(captions_path, required=("video_id",))}
    sections = [f"<h1>temple run: {_e(run_dir)}</h1>"]
    recipe = layout.recipe
    if recipe.is_file():
        sections.append(f"<details><summary>recipe</summary><pre>{_e(recipe.read_text())}</pre></details>")
    if videos:
        sections.append(f"<h2>Selection</h2>{_funnel(videos)}")
    if pairs:
        sections.append(f"<h2>Preference pairs ({len(pairs)})</h2>{_pair_counts(pairs)}")
    pairs_by_video: dict[str, list[dict]] = defaultdict(list)
    for pair in pairs:
        pairs_by_video[pair["video_id"]].append(pair)
    kept = [v for v in videos if v.status == "kept"]
    if kept:
        sections.append(f"<h2>Kept videos ({len(kept)}; first {min(len(kept), MAX_VIDEOS)} shown)</h2>")
    for record in kept[:MAX_VIDEOS]:
        thumbs = keyframe_thumbs(run_dir, record)
        block = [
            f"<h3>{_e(record.video_id)}</h3>",
            f"<p>{record.duration} s, {len(record.shots)} shots, {len(record.clips)} clips after filters, "
            f"{len(record.groups)} groups, {len(record.segments)} segments (border colour = group)</p>",
            _clip_strip(record, thumbs),
        ]
        caption = captions.get(record.video_id)
        if caption:
            items = "".join(f"<li>{_e(c)}</li>" for c in caption.get("clip_captions", []))
            block.append(f"<details><summary>clip captions</summary><ol start=0>{items}</ol></details>")
        for pair in pairs_by_video.get(record.video_id, [])[:MAX_PAIRS_PER_VIDEO]:
            order = [i for i in pair["kept_indices"] if i < len(record.segments)]
            block.append(
                f'<div class="pair"><div><b>chosen</b> <small>({_e(pair["prompt"])})</small><p>{_e(pair["chosen"])}</p></div>'
                f'<div><b>rejected</b>: {_e(pair["perturbation"])}, r = {pair["difficulty"]}, clips '
                f'{_e(pair["kept_indices"])}{_clip_strip(record, thumbs, order)}<p>{_e(pair["rejected"])}</p></div></div>'
            )
        sections.append("".join(block))
    training = _training(layout)
    if training:
        sections.append(f"<h2>Training</h2>{training}")
    evaluation = _evaluation(run_dir)
    if evaluation:
        sections.append(f"<h2>Evaluation</h2>{evaluation}")
    body = "\n".join(sections)
    return f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>temple report: {_e(run_dir.name)}</title><style>{CSS}</style></head><body>{body}</body></html>'


def write_report(run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    page = build_report(run_dir)
    return write_text_atomic(RunLayout(run_dir).report, page)

