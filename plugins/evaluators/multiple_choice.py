"""``multiple_choice``: questions about videos with lettered options, from a local JSONL file.

One question per line::

    {"id": "q1", "video": "videos/a.mp4", "question": "What happens first?",
     "options": ["the door opens", "the man sits"], "answer": "B", "group": "pair-3"}

``answer`` is the right option's letter (``"B"``), its 0-based index, or its text; ``video`` is
relative to the file's folder unless absolute; ``id`` defaults to the line number; ``group``
(optional) ties questions that only count together (Vinoground's text score: both videos of
a pair right) and adds ``group_accuracy``. This is the shape of Video-MME, MLVU, TempCompass's
multi-choice task and Vinoground once converted (``examples/eval/convert_*.py``).

``mode: likelihood`` (default) scores each option as the answer (``"B. the man sits"``) and
picks the most likely (length-normalised by default; both choices are recorded);
``mode: generate`` lets the model answer greedily and reads the letter: ``B``, ``(B)``,
``B. text``, ``B) text``, ``Answer: B``, ``The answer is B``; an answer with no letter (or
several) is *unparseable*, counted separately and scored wrong.
"""

from __future__ import annotations

import json
import re
import string
from pathlib import Path
from typing import Any, Literal

import attrs

from temple_core.config import path_field
from temple_core.contracts import Evaluator
from temple_core.errors import TempleError
from temple_core.evaluation import EvalResult, EvaluatorOptions
from temple_core.evaluation.stats import cell, mean_interval
from temple_core.evaluation.videos import video_item
from temple_core.hookspecs import hookimpl

LETTERS = string.ascii_uppercase
DEFAULT_TEMPLATE = "{question}\n{options}\nAnswer with the option's letter from the given choices directly."


def parse_letter(answer: str, count: int) -> int | None:
    """The option index an answer names (``None``: no single letter among the first ``count``).

    Accepted: ``B``, ``(B)``, ``B.``, ``B. text``, ``B) text``, ``B: text``, ``**B**``,
    ``Answer: B``, ``The answer is (B).``; a bare letter must stand alone (the ``A`` of
    "A man walks" is not an answer)."""
    text = (answer or "").strip().replace("*", "")
    valid = LETTERS[:count]
    patterns = [
        rf"^\(?([{valid}])\)?\s*(?:[.):\]]|$)",          # B / (B) / B. text / B) text / B: text
        rf"^\(?([{valid}])\)?\s*$",
        rf"\b(?:answer|option|choice)\s*(?:is|:)?\s*\(?([{valid}])\)?(?:[.):\s]|$)",  # Answer: B / the answer is (B)
    ]
    for pattern in patterns:
        match = re.search(pattern, text, flags=re.IGNORECASE if pattern is patterns[2] else 0)
        if match:
            return valid.index(match.group(1).upper())
    return None


def _answer_index(item: dict, where: str) -> int:
    answer, options = item["answer"], item["options"]
    if isinstance(answer, bool):
        raise TempleError(f"{where}: answer must be a letter, an index or an option's text, got {answer!r}")
    if isinstance(answer, int):
        index = answer
    elif isinstance(answer, str) and answer.strip() in options:
        index = options.index(answer.strip())
    elif isinstance(answer, str) and (found := parse_letter(answer, len(options))) is not None:
        index = found
    else:
        raise TempleError(f"{where}: answer {answer!r} is not a letter, an index or one of the options")
    if not 0 <= index < len(options):
        raise TempleError(f"{where}: answer {answer!r} is out of range for {len(options)} options")
    return index


def read_questions(path: Path) -> list[dict[str, Any]]:
    """Every question of a multiple-choice JSONL, validated (``TempleError`` naming file:line)."""
    items = []
    seen = set()
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            item = json.loads(line)
        except ValueError as exc:
            raise TempleError(f"{where}: not a JSON line ({exc})") from None
        missing = [k for k in ("video", "question", "options", "answer") if k not in item]
        if missing:
            raise TempleError(f"{where}: missing {', '.join(missing)} (a line is {{video, question, options, answer}})")
        options = item["options"]
        if not isinstance(options, list) or not 2 <= len(options) <= len(LETTERS) or not all(isinstance(o, str) for o in options):
            raise TempleError(f"{where}: options must be a list of 2 to 26 strings")
        video = Path(item["video"]).expanduser()
        if not video.is_absolute():
            video = path.parent / video
        item_id = str(item.get("id", f"line-{number}"))
        if item_id in seen:
            raise TempleError(f"{where}: id {item_id!r} repeats")
        seen.add(item_id)
        items.append({**item, "item_id": item_id, "video": str(video), "answer_index": _answer_index(item, where), "line": number})
    if not items:
        raise TempleError(f"{path}: no questions")
    return items


class MultipleChoice(Evaluator):
    """Lettered questions on videos from a local JSONL: by option likelihood or by generation."""

    needs_backend = True
    shards_items = True

    @attrs.define(kw_only=True, frozen=True)
    class Options(EvaluatorOptions):
        #: The questions: JSONL of {video, question, options, answer[, id, group]}.
        file: str = path_field("", kind="file")
        #: ``likelihood``: the most likely option; ``generate``: the letter the model writes.
        mode: Literal["likelihood", "generate"] = "likelihood"
        #: The prompt; ``{question}`` and ``{options}`` (one "A. text" line each) are filled in.
        template: str = DEFAULT_TEMPLATE
        #: Likelihood mode: the answer scored for each option (``{letter}``, ``{text}``).
        answer_format: str = "{letter}. {text}"
        #: Likelihood mode: pick by per-token mean log-likelihood (true) or by the sum (false).
        length_normalised: bool = True
        #: Generate mode: longest answer.
        max_new_tokens: int = attrs.field(default=16, validator=attrs.validators.ge(1))
        #: Score at most this many questions (the first ones); null: all.
        limit: int | None = None
        #: A blind baseline: black frames (same count, size and rate) instead of the video; a model
        #: must then be at chance, or the texts leak the answer.
        blind: bool = False

        def __attrs_post_init__(self):
            if not self.file:
                raise ValueError("file: the questions (JSONL) are required")
            for key in ("{question}", "{options}"):
                if key not in self.template:
                    raise ValueError(f"template must contain {key}")

    def __init__(self, options: "MultipleChoice.Options"):
        self.options = options

    def questions(self) -> list[dict[str, Any]]:
        items = read_questions(Path(self.options.file).expanduser())
        return items[: self.options.limit] if self.options.limit is not None else items

    def prompt(self, item: dict) -> str:
        options = "\n".join(f"{LETTERS[i]}. {text}" for i, text in enumerate(item["options"]))
        return self.options.template.replace("{question}", item["question"]).replace("{options}", options)

    def conversation(self, item: dict, frames=None) -> list[dict]:
        from temple_core.evaluation.request import FrameSettings

        shown = video_item(item["video"], frames or FrameSettings(), self.options.blind)
        return [{"role": "user", "content": [shown, {"type": "text", "text": self.prompt(item)}]}]

    def score(self, request) -> None:
        done = request.items.done_keys()
        todo = [q for q in request.share(self.questions()) if q["item_id"] not in done]
        if self.options.mode == "generate":
            for start in range(0, len(todo), request.batch_size):
                batch = todo[start : start + request.batch_size]
                answers = request.backend.chat([self.conversation(q, request.frames) for q in batch], max_new_tokens=self.options.max_new_tokens, do_sample=False)
                for q, answer in zip(batch, answers):
                    chosen = parse_letter(answer, len(q["options"]))
                    request.items.add(self._record(q, chosen, answer=answer))
            return
        for q in todo:
            texts = [self.options.answer_format.replace("{letter}", LETTERS[i]).replace("{text}", t) for i, t in enumerate(q["options"])]
            scores = request.backend.score_texts(self.conversation(q, request.frames), texts, batch_size=request.batch_size)
            by_mean = max(range(len(scores)), key=lambda i: (scores[i].mean, -i))
            by_sum = max(range(len(scores)), key=lambda i: (scores[i].logprob, -i))
            chosen = by_mean if self.options.length_normalised else by_sum
            record = self._record(q, chosen, logprobs=[s.logprob for s in scores], tokens=[s.tokens for s in scores])
            record.update(correct_mean=by_mean == q["answer_index"], correct_sum=by_sum == q["answer_index"])
            request.items.add(record)

    @staticmethod
    def _record(q: dict, chosen: int | None, **extra) -> dict:
        return {"item_id": q["item_id"], "video": q["video"], "answer": q["answer_index"], "chosen": chosen,
                "correct": chosen == q["answer_index"], "parsed": chosen is not None, "group": q.get("group"),
                "options": len(q["options"]), **extra}

    def result(self, request, records: list[dict]) -> EvalResult:
        outcomes = [1.0 if r["correct"] else 0.0 for r in records]
        overall = cell(outcomes, request.seed)
        chance = sum(1.0 / r["options"] for r in records) / len(records) if records else None
        metrics: dict[str, Any] = {"chance": chance, "questions": len(records), "mode": self.options.mode, "blind": self.options.blind}
        if self.options.mode == "generate":
            unparseable = sum(1 for r in records if not r["parsed"])
            parsed = [1.0 if r["correct"] else 0.0 for r in records if r["parsed"]]
            metrics.update(unparseable=unparseable, unparseable_share=unparseable / len(records) if records else None,
                           accuracy_parsed=cell(parsed, request.seed))
        else:
            metrics["accuracy_length_normalised"] = cell([1.0 if r["correct_mean"] else 0.0 for r in records], request.seed)
            metrics["accuracy_sum"] = cell([1.0 if r["correct_sum"] else 0.0 for r in records], request.seed)
        groups: dict[str, list[bool]] = {}
        for r in records:
            if r.get("group") is not None:
                groups.setdefault(str(r["group"]), []).append(bool(r["correct"]))
        if groups:
            wins = [1.0 if all(v) else 0.0 for v in groups.values()]
            metrics["group_accuracy"] = {"accuracy": sum(wins) / len(wins), "interval": mean_interval(wins, request.seed), "n": len(wins)}
        how = "most likely option" if self.options.mode == "likelihood" else "letter the model writes (unparseable = wrong)"
        return EvalResult(score=overall["accuracy"], interval=overall["interval"], n=overall["n"], metrics=metrics,
                          metric=f"accuracy: {how}")


@hookimpl
def register_evaluators(register):
    register("multiple_choice", MultipleChoice)
