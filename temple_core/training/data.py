"""A training stage's data: preference pairs (this run's or another run's) or SFT samples.

Pairs are ``generate/pairs.jsonl`` lines (:class:`temple_core.records.Pair`). SFT samples are
JSONL lines in one of two forms (docs/training.md)::

    {"id": "s1", "videos": ["clips/a.mp4"],
     "messages": [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "What happens?"}]},
                  {"role": "assistant", "content": "A man opens a door, then ..."}]}

    {"id": "s2", "video": "clips/b.mp4",                       # LLaVA-Video-178K's own form
     "conversations": [{"from": "human", "value": "<image>\\nWhat happens?"}, {"from": "gpt", "value": "..."}]}

A message's ``content`` is a string (``<video>`` marks where a video goes) or a list of parts
(``{"type": "video"}`` / ``{"type": "text", "text": ...}``); the n-th video part is the n-th
entry of ``videos``. Relative video paths are relative to the JSONL file's folder. Every
sample is normalised to the list-of-parts form, with ``videos`` as absolute paths.

Videos that cannot be read are found before training (:func:`probe_videos`): their samples
are skipped, written to ``skipped.jsonl`` with the reason, and counted -- never fatal.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from temple_core.errors import TempleError, VideoError
from temple_core.records import Pair
from temple_core.store import read_jsonl

ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
# LLaVA-style data marks the visual input with <image> even for videos.
_PLACEHOLDER = re.compile(r"<video>|<image>")


class DataError(TempleError):
    """A training data file that cannot be used; the message names the file and line."""


def load_pairs(
    path: Path, difficulty: int | None = None, perturbations: list[str] | None = None
) -> list[Pair]:
    """The pairs of ``path`` at ``difficulty`` (any when ``None``), of the named perturbations."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such pairs file (has the generate stage run?)")
    pairs = []
    for number, record in enumerate(read_jsonl(path), 1):
        missing = [k for k in ("pair_id", "video_path", "prompt", "chosen", "rejected") if k not in record]
        if missing:
            kind = "an SFT sample" if ("messages" in record or "conversations" in record) else "not a pair"
            raise DataError(f"{path}:{number}: {kind} (missing {', '.join(missing)}); a dpo stage needs a pairs file")
        record.setdefault("video_id", Path(record["video_path"]).stem)
        record.setdefault("perturbation", "")
        record.setdefault("difficulty", 0)
        record.setdefault("kept_indices", [])
        record.setdefault("generator", "")
        pair = Pair.from_dict(record)
        pair.video_path = str(_resolve(pair.video_path, path.parent))
        pairs.append(pair)
    selected = [
        p
        for p in pairs
        if (difficulty is None or p.difficulty == difficulty)
        and (perturbations is None or p.perturbation in perturbations)
    ]
    if not selected:
        have = sorted({(p.difficulty, p.perturbation) for p in pairs})
        wanted = f"difficulty {difficulty}" if difficulty is not None else "any difficulty"
        if perturbations is not None:
            wanted += f" and perturbations {perturbations}"
        raise DataError(f"{path}: no pairs at {wanted} (the file has {len(pairs)} pairs; (difficulty, perturbation): {have})")
    return selected


def _resolve(path: str, base: Path) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else (base / p)


def _parts(content: Any, where: str) -> list[dict[str, Any]]:
    """A message's content as a list of ``{"type": "video"}`` / ``{"type": "text"}`` parts."""
    if isinstance(content, str):
        parts: list[dict[str, Any]] = []
        pieces = _PLACEHOLDER.split(content)
        for i, piece in enumerate(pieces):
            if i > 0:
                parts.append({"type": "video"})
            piece = piece.strip("\n") if i > 0 or len(pieces) > 1 else piece
            if piece:
                parts.append({"type": "text", "text": piece})
        return parts
    if isinstance(content, list):
        out = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") not in ("video", "text"):
                raise DataError(f"{where}: content parts must be {{type: video}} or {{type: text, text: ...}}, got {part!r}")
            if part["type"] == "text":
                if not isinstance(part.get("text"), str):
                    raise DataError(f"{where}: a text part needs a string 'text'")
                out.append({"type": "text", "text": part["text"]})
            else:
                out.append({"type": "video"})
        return out
    raise DataError(f"{where}: content must be a string or a list of parts, got {type(content).__name__}")


def normalize_sft(record: dict[str, Any], base: Path, where: str) -> dict[str, Any]:
    """One SFT line in the ``messages`` + ``videos`` form with absolute video paths."""
    if "messages" in record:
        raw_messages = record["messages"]
        videos = record.get("videos", [])
        if isinstance(videos, str):
            videos = [videos]
        role_key, text_key = "role", "content"
    elif "conversations" in record:
        raw_messages = record["conversations"]
        videos = record.get("videos", record.get("video", []))
        if isinstance(videos, str):
            videos = [videos]
        role_key, text_key = "from", "value"
    else:
        kind = "a preference pair" if "chosen" in record else "not an SFT sample"
        raise DataError(f"{where}: {kind} (needs 'messages' + 'videos', or 'conversations' + 'video'); an sft stage needs an SFT file")
    if not isinstance(raw_messages, list) or not raw_messages:
        raise DataError(f"{where}: 'messages' must be a non-empty list")
    messages = []
    for i, message in enumerate(raw_messages):
        if not isinstance(message, dict) or role_key not in message or text_key not in message:
            raise DataError(f"{where}: message {i} needs '{role_key}' and '{text_key}'")
        role = ROLES.get(message[role_key])
        if role is None:
            raise DataError(f"{where}: message {i} has unknown role {message[role_key]!r} (user, assistant, system)")
        messages.append({"role": role, "content": _parts(message[text_key], f"{where}: message {i}")})
    if messages[-1]["role"] != "assistant":
        raise DataError(f"{where}: the last message must be the assistant's answer (the text trained on)")
    slots = sum(1 for m in messages for p in m["content"] if p["type"] == "video")
    if slots == 0 and len(videos) == 1:
        # A sample that names one video but no place for it: the video goes before the first question.
        first_user = next(m for m in messages if m["role"] == "user")
        first_user["content"].insert(0, {"type": "video"})
        slots = 1
    if slots != len(videos):
        raise DataError(f"{where}: {slots} video place(s) in the messages but {len(videos)} video(s) in 'videos'")
    return {
        "id": str(record.get("id", where)),
        "messages": messages,
        "videos": [str(_resolve(v, base)) for v in videos],
    }


def load_sft(path: Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such SFT file")
    samples = []
    for number, record in enumerate(read_jsonl(path), 1):
        sample = normalize_sft(record, path.parent, f"{path}:{number}")
        if "id" not in record:
            sample["id"] = f"{path.stem}-{number}"
        samples.append(sample)
    if not samples:
        raise DataError(f"{path}: no samples")
    return samples


def probe_video(path: str) -> str | None:
    """Why ``path`` cannot be used for training, or ``None`` when it can.

    Opening the file catches missing, empty and non-video files; decoding the first and the
    last frame (by the header's count) catches truncated ones, whose headers overstate.
    """
    from temple_core.video.source import VideoSource

    try:
        source = VideoSource(path)
        last = max(0, source.num_frames - 1)
        source.read_frames(sorted({0, last}), width=16, height=16)
    except VideoError as exc:
        return str(exc)
    except Exception as exc:  # a decoder failing in an unexpected way is still one bad video
        return f"{path}: cannot be decoded ({type(exc).__name__}: {exc})"
    return None


def probe_videos(paths: Iterable[str], progress: bool = False) -> dict[str, str]:
    """``{path: reason}`` for each unusable video (each distinct path is probed once)."""
    from tqdm.auto import tqdm

    bad = {}
    for path in tqdm(sorted(set(paths)), desc="checking videos", unit="video", disable=not progress, leave=False):
        reason = probe_video(path)
        if reason is not None:
            bad[path] = reason
    return bad


def drop_unreadable(items: list, videos_of, id_of, progress: bool = False) -> tuple[list, list[dict[str, Any]]]:
    """``(usable items, skipped records)``: items with any unreadable video are skipped."""
    bad = probe_videos((v for item in items for v in videos_of(item)), progress)
    kept, skipped = [], []
    for item in items:
        reasons = [bad[v] for v in videos_of(item) if v in bad]
        if reasons:
            skipped.append({"id": id_of(item), "reason": reasons[0]})
        else:
            kept.append(item)
    return kept, skipped


def to_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)
