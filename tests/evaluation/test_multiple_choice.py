"""multiple_choice: known answers on a synthetic file; a right-preferring scorer gets 100%, a
constant one the share the file's answers give it; generation parses B / (B) / B. text and
counts what it cannot parse."""

from __future__ import annotations

import json

import pytest
from testkit.evaluation import StubScorer, evaluator, request
from testkit.training import write_video

from temple_plugins.evaluators.multiple_choice import LETTERS, parse_letter

ANSWERS = ["B", 0, "C", "the blue one", "A", "D", 1, "B"]


@pytest.fixture
def mc_file(tmp_path):
    video = write_video(tmp_path / "videos" / "v.mp4", [(200, 40, 40), (40, 70, 200)])
    lines = []
    for i, answer in enumerate(ANSWERS):
        options = ["the red one", "the green one", "the blue one", "the yellow one"][: 4 if i % 2 else 3] if answer != "D" else \
            ["red", "green", "blue", "yellow"]
        lines.append({"id": f"q{i}", "video": "videos/v.mp4", "question": f"Question {i}?", "options": options,
                      "answer": answer, "group": f"g{i // 2}"})
    path = tmp_path / "mc.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path, lines, video


def right_index(line):
    a = line["answer"]
    return a if isinstance(a, int) else line["options"].index(a) if a in line["options"] else LETTERS.index(a)


def test_a_scorer_that_prefers_the_right_option_gets_everything(mc_file, tmp_path):
    path, lines, _ = mc_file
    by_question = {f"Question {i}?": right_index(line) for i, line in enumerate(lines)}

    class Oracle(StubScorer):
        def score_texts(self, conversation, texts, *, batch_size=None):
            prompt = conversation[0]["content"][-1]["text"]
            right = by_question[prompt.splitlines()[0]]
            from temple_core.models.backend import TextScore

            return [TextScore(-1.0 if i == right else -5.0, 4) for i in range(len(texts))]

    ev = evaluator("multiple_choice", file=str(path))
    req = request(Oracle(None), tmp_path)
    ev.score(req)
    result = ev.result(req, req.items.records())
    assert result.score == 1.0 and result.n == len(lines)
    assert result.metrics["group_accuracy"]["accuracy"] == 1.0 and result.metrics["group_accuracy"]["n"] == 4


def test_a_constant_scorer_gets_the_share_of_first_options(mc_file, tmp_path):
    path, lines, _ = mc_file
    ev = evaluator("multiple_choice", file=str(path))
    req = request(StubScorer(lambda video, text: -3.0), tmp_path)
    ev.score(req)
    result = ev.result(req, req.items.records())
    # Equal scores: the first option is picked (ties go to the earliest letter).
    first = sum(1 for line in lines if right_index(line) == 0)
    assert result.score == pytest.approx(first / len(lines))
    assert result.metrics["chance"] == pytest.approx(sum(1 / len(line["options"]) for line in lines) / len(lines))
    records = {r["item_id"]: r for r in req.items.records()}
    assert all(r["chosen"] == 0 for r in records.values())
    assert records["q3"]["answer"] == 2  # "the blue one" named by text


def test_length_normalisation_is_a_choice(mc_file, tmp_path):
    """Option texts of different lengths: the sum prefers the short one, the mean may not."""
    path, lines, _ = mc_file
    from temple_core.models.backend import TextScore

    class Lengthy(StubScorer):
        def score_texts(self, conversation, texts, *, batch_size=None):
            return [TextScore(-1.0 * len(t), 1 + len(t)) for t in texts]

    for normalised in (True, False):
        ev = evaluator("multiple_choice", file=str(path), length_normalised=normalised, label=f"n{normalised}")
        req = request(Lengthy(None), tmp_path / str(normalised), label=f"n{normalised}")
        ev.score(req)
        records = req.items.records()
        for r, line in zip(sorted(records, key=lambda r: int(r["item_id"][1:])), lines):
            texts = [f"{LETTERS[i]}. {t}" for i, t in enumerate(line["options"])]
            if normalised:
                expect = max(range(len(texts)), key=lambda i: (-len(texts[i]) / (1 + len(texts[i])), -i))
            else:
                expect = max(range(len(texts)), key=lambda i: (-len(texts[i]), -i))
            assert r["chosen"] == expect


@pytest.mark.parametrize("answer,expected", [
    ("B", 1), ("(B)", 1), ("B. the green one", 1), ("B) green", 1), ("Answer: C", 2), ("The answer is (A).", 0),
    ("**C**", 2), ("A man walks in", None), ("", None), ("E", None), ("A and B", None), ("b", None),
])
def test_letter_parsing(answer, expected):
    assert parse_letter(answer, 4) == expected


def test_generation_mode_counts_unparseable_answers(mc_file, tmp_path):
    path, lines, _ = mc_file
    # One canned answer per question, in file order.
    answers = ["B", "(A)", "C. the blue one", "no idea", "(A)", "D) yellow", "I would say it", "B"]
    ev = evaluator("multiple_choice", file=str(path), mode="generate")
    backend = StubScorer(None, answers=list(answers))
    req = request(backend, tmp_path, batch_size=3)
    ev.score(req)
    result = ev.result(req, req.items.records())
    parsed = [1, 0, 2, None, 0, 3, None, 1]  # the letters of those answers, read by hand
    right = [p == right_index(line) for p, line in zip(parsed, lines)]
    assert result.metrics["unparseable"] == parsed.count(None) == 2
    assert result.score == pytest.approx(sum(right) / len(lines))
    parsed_right = [r for r, p in zip(right, parsed) if p is not None]
    assert result.metrics["accuracy_parsed"]["accuracy"] == pytest.approx(sum(parsed_right) / len(parsed_right))
    assert [len(c) for c in backend.chats] == [3, 3, 2]  # batched generation


def test_bad_lines_are_named(tmp_path):
    from temple_core.errors import TempleError

    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"video": "v.mp4", "question": "q", "options": ["a", "b"], "answer": "C"}) + "\n")
    ev = evaluator("multiple_choice", file=str(path))
    with pytest.raises(TempleError, match=r"bad\.jsonl:1: answer 'C' is not a letter"):
        ev.score(request(StubScorer(None), tmp_path))
    path.write_text(json.dumps({"video": "v.mp4", "options": ["a", "b"], "answer": "A"}) + "\n")
    with pytest.raises(TempleError, match=r"bad\.jsonl:1: missing question"):
        ev.score(request(StubScorer(None), tmp_path))
