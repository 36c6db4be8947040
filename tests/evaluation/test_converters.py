"""The Vinoground and TempCompass converters (examples/eval/) on files in their published
layouts: the output is a valid multiple-choice file with the right answers."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

from testkit.training import write_video

from temple_plugins.evaluators.multiple_choice import read_questions

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "eval"


def load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_vinoground_text_score_layout(tmp_path):
    data = tmp_path / "Vinoground"
    (data / "vinoground_videos").mkdir(parents=True)
    rows = [{"index": "0", "major": "action", "minor": "", "pos_cap": "a man opens the door then sits", "neg_cap": "a man sits then opens the door"},
            {"index": "1", "major": "object", "minor": "cyclical", "pos_cap": "the light turns on then off", "neg_cap": "the light turns off then on"}]
    with open(data / "vinoground.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    for row in rows:
        for side in ("pos", "neg"):
            write_video(data / "vinoground_videos" / f"{row['index']}_{side}.mp4", [(10, 10, 10)])
    out = tmp_path / "vino.jsonl"
    assert load("convert_vinoground").convert(data, out) == 4
    questions = read_questions(out)
    assert [q["item_id"] for q in questions] == ["0_pos", "0_neg", "1_pos", "1_neg"]
    assert [q["answer_index"] for q in questions] == [0, 1, 0, 1]
    assert questions[1]["options"] == [rows[0]["pos_cap"], rows[0]["neg_cap"]]
    assert questions[1]["video"].endswith("0_neg.mp4") and Path(questions[1]["video"]).is_file()
    assert [q["group"] for q in questions] == ["0", "0", "1", "1"]


ORIGINAL = {
    "1034419625": {"action": [{"question": "What is the man doing in the video?\nA. dunking a basketball\nB. dribbling a basketball\nC. passing a basketball",
                               "answer": "A. dunking a basketball"}],
                   "direction": [{"question": "From the camera's point of view, in which direction is the man moving?\nA. away from the camera\nB. towards the camera\nC. from left to right",
                                  "answer": "C. from left to right"}]},
    "1034419625_reverse": {"direction": [{"question": "What is the direction of the man?\nA. moving towards the camera\nB. moving from right to left\nC. moving away from the camera\nD. moving from left to right",
                                          "answer": "B. moving from right to left"}]},
}


def test_tempcompass_both_layouts(tmp_path):
    videos = tmp_path / "videos"
    for video_id in ORIGINAL:
        write_video(videos / f"{video_id}.mp4", [(10, 10, 10)])
    convert = load("convert_tempcompass").convert
    original = tmp_path / "multi-choice.json"
    original.write_text(json.dumps(ORIGINAL))
    assert convert(original, videos, tmp_path / "a.jsonl") == 3
    questions = read_questions(tmp_path / "a.jsonl")
    assert [q["answer_index"] for q in questions] == [0, 2, 1]
    assert questions[0]["question"] == "What is the man doing in the video?"
    assert questions[2]["options"][1] == "moving from right to left" and len(questions[2]["options"]) == 4
    # The lmms-eval dataset's rows: same strings, one row per question.
    rows = [{"video_id": vid, "dim": dim, **item} for vid, dims in ORIGINAL.items() for dim, items in dims.items() for item in items]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert convert(tmp_path / "rows.jsonl", videos, tmp_path / "b.jsonl") == 3
    assert [(q["question"], q["options"], q["answer_index"]) for q in read_questions(tmp_path / "b.jsonl")] == \
        [(q["question"], q["options"], q["answer_index"]) for q in questions]
