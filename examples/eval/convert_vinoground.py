"""Vinoground (text score) -> temple's multiple-choice JSONL.

Vinoground (Zhang et al., 2024; huggingface.co/datasets/HanSolo9682/Vinoground) pairs 500
captions with their temporal counterfactuals: ``vinoground.csv`` has one row per pair
(columns ``index, major, minor, pos_cap, neg_cap``, as its own evaluation scripts read them)
and the videos ``vinoground_videos/<i>_pos.mp4`` / ``<i>_neg.mp4`` (unzip
``vinoground_videos.zip``). The *text score* asks, for each video, which of the two captions
describes it; a pair counts only when both of its videos are answered right.

Each pair becomes two questions with the same two options (``pos_cap`` as A, ``neg_cap`` as B):
the positive video's answer is A, the negative's B, and both share ``group: <i>``, so
temple's ``group_accuracy`` is Vinoground's text score (a model that always says A gets 50% of
the questions and 0 pairs). ``major``/``minor`` are kept as ``category``.

    python examples/eval/convert_vinoground.py --data /path/to/Vinoground --out vinoground_text.jsonl

Then ``{name: multiple_choice, label: vinoground_text, file: vinoground_text.jsonl}`` in
``eval.evaluators``. (The video score needs the concatenated videos; lmms-eval's ``vinoground``
task runs both, through the ``lmms_eval`` evaluator.)
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

QUESTION = "Which caption best describes this video?"


def convert(data: Path, out: Path, question: str = QUESTION, check_videos: bool = True) -> int:
    data = Path(data)
    table = data / "vinoground.csv"
    if not table.is_file():
        raise SystemExit(f"{table} not found: --data is the Vinoground dataset folder (vinoground.csv, vinoground_videos/)")
    rows = []
    with open(table, newline="", encoding="utf-8") as handle:
        for number, row in enumerate(csv.DictReader(handle)):
            missing = [k for k in ("pos_cap", "neg_cap") if k not in row]
            if missing:
                raise SystemExit(f"{table}: no column {missing[0]} (columns: {', '.join(row)})")
            index = row.get("index") or str(number)
            options = [row["pos_cap"].strip(), row["neg_cap"].strip()]
            for side, answer in (("pos", "A"), ("neg", "B")):
                video = data / "vinoground_videos" / f"{index}_{side}.mp4"
                if check_videos and not video.is_file():
                    raise SystemExit(f"{video} not found (unzip vinoground_videos.zip in {data})")
                rows.append({"id": f"{index}_{side}", "video": str(video.resolve()), "question": question, "options": options,
                             "answer": answer, "group": str(index), "category": [row.get("major"), row.get("minor")]})
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return len(rows)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, type=Path, help="the Vinoground folder (vinoground.csv, vinoground_videos/)")
    parser.add_argument("--out", required=True, type=Path, help="the multiple-choice JSONL to write")
    parser.add_argument("--question", default=QUESTION)
    args = parser.parse_args(argv)
    print(f"{convert(args.data, args.out, args.question)} questions written to {args.out}")


if __name__ == "__main__":
    main()
