"""TempCompass (multi-choice task) -> temple's multiple-choice JSONL.

TempCompass (Liu et al., 2024; github.com/llyx97/TempCompass) asks lettered questions about
speed, direction, action order, attribute change... of short videos, some of them reversed
(``<id>_reverse``). Two published layouts are read:

* the original ``questions/multi-choice.json``: ``{video_id: {dimension: [{"question":
  "What is the man doing?\\nA. dunking a basketball\\nB. ...", "answer": "A. dunking a basketball"}]}}``;
* the lmms-eval dataset's ``multi-choice`` rows (huggingface.co/datasets/lmms-eval/TempCompass,
  exported to JSON lines): ``{"video_id", "question", "answer", "dim"}`` with the same
  question and answer strings.

Videos are ``<videos>/<video_id>.mp4``. The options are the question's ``A. ...`` lines; the
answer is its letter.

    python examples/eval/convert_tempcompass.py --questions multi-choice.json --videos /path/to/videos --out tempcompass_mc.jsonl
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

OPTION = re.compile(r"^\s*\(?([A-Z])[.)]\s*(.*\S)\s*$")


def split_question(text: str) -> tuple[str, list[str]]:
    """``"stem\\nA. x\\nB. y"`` -> ``("stem", ["x", "y"])`` (options must run A, B, C... in order)."""
    stem, options = [], []
    for line in text.splitlines():
        match = OPTION.match(line)
        if match and match.group(1) == chr(ord("A") + len(options)):
            options.append(match.group(2))
        elif options:
            raise ValueError(f"text after the options: {line!r}")
        else:
            stem.append(line)
    if len(options) < 2:
        raise ValueError(f"fewer than two lettered options in {text!r}")
    return "\n".join(stem).strip(), options


def _rows(questions: Path):
    text = questions.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):  # the original layout
        for video_id, dims in data.items():
            for dim, items in dims.items():
                for k, item in enumerate(items):
                    yield {"video_id": video_id, "dim": dim, "k": k, **item}
        return
    rows = data if isinstance(data, list) else [json.loads(line) for line in text.splitlines() if line.strip()]
    counts: dict = {}
    for row in rows:
        key = (row["video_id"], row.get("dim", "?"))
        counts[key] = counts.get(key, -1) + 1
        yield {**row, "dim": row.get("dim", "?"), "k": counts[key]}


def convert(questions: Path, videos: Path, out: Path, check_videos: bool = True) -> int:
    lines = []
    for row in _rows(Path(questions)):
        where = f"{questions}: {row['video_id']} {row['dim']} #{row['k']}"
        try:
            stem, options = split_question(row["question"])
        except ValueError as exc:
            raise SystemExit(f"{where}: {exc}") from None
        answer = OPTION.match(row["answer"].strip().splitlines()[0])
        if answer is None or not "A" <= answer.group(1) < chr(ord("A") + len(options)):
            raise SystemExit(f"{where}: answer {row['answer']!r} is not one of the lettered options")
        video = Path(videos) / f"{row['video_id']}.mp4"
        if check_videos and not video.is_file():
            raise SystemExit(f"{video} not found (--videos is the folder of <video_id>.mp4 files)")
        lines.append({"id": f"{row['video_id']}-{row['dim']}-{row['k']}", "video": str(video.resolve()), "question": stem,
                      "options": options, "answer": answer.group(1), "dimension": row["dim"]})
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in lines), encoding="utf-8")
    return len(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", required=True, type=Path, help="multi-choice.json (original) or the lmms-eval rows (JSON lines)")
    parser.add_argument("--videos", required=True, type=Path, help="the folder of <video_id>.mp4")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    print(f"{convert(args.questions, args.videos, args.out)} questions written to {args.out}")


if __name__ == "__main__":
    main()
