"""The micro world: a synthetic temporal world whose videos are sequences of known events.

Why: to watch TEMPLE work on a CPU, a model must see, and what it sees must have an order that
only the pixels tell. Each video here is 4-10 *events*; an event is one second (24 frames at
24 fps, 32 x 32 px) of one object -- a colour, a shape -- moving in one direction over a dark
background of its own. Its ground truth is a short phrase ("a red circle moves left"), written
per event and per video into a sidecar ``<video>.json``::

    {"events": [{"description": "a red circle moves left", "start": 0.0, "end": 1.0, ...}, ...],
     "description": "First, a red circle moves left. Then, ... Finally, ...", "seed": 0, "split": "heldout"}

which is what the ``temporal_order`` evaluator reads (``captions: ground_truth``).

**Order only through content.** The events of a video are drawn at random, independently of
their position: an event type (colour x shape x direction, 6 x 4 x 4 = 96) and a background
appear at most once per video, and nothing else ties one event to the next. So every
permutation of a video's event phrases is as plausible a text as the true one: a text-only
model cannot tell a shuffled, reversed or dropped description from the right one, and only a
model that looks at the frames, in order, can. (The distinctness rule is the same for every
order, so it leaks nothing; it keeps every perturbation a different text, and keeps shot
detection and similarity grouping -- SPEC §1 -- seeing one segment per event.)

**Splits by seed.** A video is fully determined by ``(seed, split, index)``: its random stream
is ``random.Random("micro-world:<seed>:<split>:<index>")``. The splits -- ``pretrain`` (the
micro model's own pre-training), ``unlabeled`` (videos TEMPLE makes its own preference pairs
from), ``sft`` (a small labeled set), ``heldout`` (evaluation) -- are different streams, so
their videos are disjoint; the 96 event types are shared (the world's vocabulary).
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import attrs
import cv2
import numpy as np

from temple_core.samples import write_h264
from temple_core.store.files import write_text_atomic

#: Frame size (square), frames per second, frames per event. 32 x 32: small, simple inputs
#: are what a CPU-sized model learns fastest (a 64 x 64 version learned colour and shape but
#: not motion in the issue's probe); 4 x 4 patches of 8 px, 4 tokens per temporal patch.
SIZE, FPS, EVENT_FRAMES = 32, 24, 24
#: Events per video (inclusive).
MIN_EVENTS, MAX_EVENTS = 4, 10

#: Object colours (RGB), 60 degrees apart on the hue circle, fully saturated and bright.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (235, 35, 35), "yellow": (235, 225, 30), "green": (40, 215, 50),
    "cyan": (30, 220, 230), "blue": (60, 100, 255), "magenta": (230, 45, 220),
}
SHAPES = ("circle", "square", "triangle", "cross")
#: Direction name -> unit step (x, y) in image coordinates (y grows downwards).
DIRECTIONS: dict[str, tuple[int, int]] = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
#: Dark backgrounds (OpenCV HSV), one per event of a video: hues 36 degrees apart, saturation
#: and brightness varied so that consecutive events always differ in all three channels that
#: PySceneDetect's content detector compares; all darker than every object (grayscale contrast,
#: which selection's monochrome filter needs).
BACKGROUNDS = ((0, 255, 50), (18, 140, 75), (36, 200, 40), (54, 255, 65), (72, 150, 45),
               (90, 220, 75), (108, 255, 55), (126, 130, 70), (144, 230, 40), (162, 180, 60))
#: Object half size (px) and speed (px per frame: 11-14 px over an event, 6-7 px between a
#: clip's two keyframes) ranges. 13-px objects: at half-sizes 4-5 the micro model learned
#: colour and direction but never told the shapes apart (20% held out, chance 25%);
#: docs/science.md, "Changes to the design".
RADIUS = (6, 6)
SPEED = (0.5, 0.6)
SPLITS = ("pretrain", "unlabeled", "sft", "heldout")


@attrs.define(frozen=True)
class Event:
    colour: str
    shape: str
    direction: str
    background: int  # index into BACKGROUNDS
    radius: int
    speed: float
    x: float  # centre at the event's first frame
    y: float

    @property
    def description(self) -> str:
        return describe(self.colour, self.shape, self.direction)

    @property
    def kind(self) -> tuple[str, str, str]:
        return (self.colour, self.shape, self.direction)


def describe(colour: str, shape: str, direction: str) -> str:
    """The ground-truth phrase of an event."""
    return f"a {colour} {shape} moves {direction}"


def event_kinds() -> list[tuple[str, str, str]]:
    """Every (colour, shape, direction), in a fixed order."""
    return [(c, s, d) for c in COLOURS for s in SHAPES for d in DIRECTIONS]


def stream(seed: int, split: str, index: int) -> random.Random:
    """The random stream of one video (see the module doc)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; splits: {', '.join(SPLITS)}")
    return random.Random(f"micro-world:{seed}:{split}:{index}")


def random_event(rng: random.Random, kind: tuple[str, str, str], background: int) -> Event:
    colour, shape, direction = kind
    radius = rng.randint(*RADIUS)
    speed = rng.uniform(*SPEED)
    dx, dy = DIRECTIONS[direction]
    travel = speed * (EVENT_FRAMES - 1)
    margin = radius + 2
    # Along the motion: a start that keeps the object inside the frame for the whole event.
    low, high = margin, SIZE - margin - travel
    along = rng.uniform(low, high)
    across = rng.uniform(margin, SIZE - margin)
    if dx:
        x = along if dx > 0 else SIZE - along
        y = across
    else:
        y = along if dy > 0 else SIZE - along
        x = across
    return Event(colour, shape, direction, background, radius, round(speed, 3), round(x, 3), round(y, 3))


def video_events(seed: int, split: str, index: int, events: int | None = None) -> list[Event]:
    """The events of video ``index`` of ``split`` (``events``: force their number)."""
    rng = stream(seed, split, index)
    count = events if events is not None else rng.randint(MIN_EVENTS, MAX_EVENTS)
    kinds = rng.sample(event_kinds(), count)
    backgrounds = rng.sample(range(len(BACKGROUNDS)), count)
    return [random_event(rng, kind, bg) for kind, bg in zip(kinds, backgrounds)]


def background_rgb(index: int) -> tuple[int, int, int]:
    hsv = np.uint8([[list(BACKGROUNDS[index])]])
    return tuple(int(v) for v in cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0])


def _draw(frame: np.ndarray, shape: str, x: float, y: float, r: int, colour) -> None:
    shift = 4  # sub-pixel positions (cv2's fixed-point coordinates), so motion is smooth
    scale = 1 << shift
    cx, cy = int(round(x * scale)), int(round(y * scale))
    rr = r * scale
    if shape == "circle":
        cv2.circle(frame, (cx, cy), rr, colour, -1, cv2.LINE_AA, shift)
    elif shape == "square":
        pts = np.array([[cx - rr, cy - rr], [cx + rr, cy - rr], [cx + rr, cy + rr], [cx - rr, cy + rr]], np.int32)
        cv2.fillPoly(frame, [pts], colour, cv2.LINE_AA, shift)
    elif shape == "triangle":
        pts = np.array([[cx, cy - rr], [cx + rr, cy + rr], [cx - rr, cy + rr]], np.int32)
        cv2.fillPoly(frame, [pts], colour, cv2.LINE_AA, shift)
    elif shape == "cross":
        t = rr // 3
        for pts in ([[cx - rr, cy - t], [cx + rr, cy - t], [cx + rr, cy + t], [cx - rr, cy + t]],
                    [[cx - t, cy - rr], [cx + t, cy - rr], [cx + t, cy + rr], [cx - t, cy + rr]]):
            cv2.fillPoly(frame, [np.array(pts, np.int32)], colour, cv2.LINE_AA, shift)
    else:
        raise ValueError(f"unknown shape {shape!r}")


def event_frames(event: Event) -> list[np.ndarray]:
    """The event's ``EVENT_FRAMES`` RGB frames."""
    dx, dy = DIRECTIONS[event.direction]
    background = background_rgb(event.background)
    out = []
    for t in range(EVENT_FRAMES):
        frame = np.empty((SIZE, SIZE, 3), np.uint8)
        frame[:] = background
        _draw(frame, event.shape, event.x + dx * event.speed * t, event.y + dy * event.speed * t, event.radius, COLOURS[event.colour])
        out.append(frame)
    return out


def sidecar(events: list[Event], seed: int, split: str, index: int) -> dict:
    from temple_core.evaluation.texts import ordered_description

    rows, at = [], 0.0
    for e in events:
        span = EVENT_FRAMES / FPS
        rows.append({"description": e.description, "start": round(at, 3), "end": round(at + span, 3), **attrs.asdict(e)})
        at += span
    return {"events": rows, "description": ordered_description([e.description for e in events]),
            "seed": seed, "split": split, "index": index, "fps": FPS, "frames_per_event": EVENT_FRAMES}


def encode(path: Path, frames: list[np.ndarray]) -> None:
    """H.264 (yuv420p, near-lossless) into ``path``, atomically, through the samples' one writer
    (:func:`temple_core.samples.write_h264`: one encoder thread, no macroblock-tree rate control,
    so a video's bytes are the same on every write and every host -- with libx264's defaults a
    world video could differ in a few bytes between writes on a VM that moves between hosts,
    and two builds of the micro preset with one seed then differed in the last bits)."""
    write_h264(path, frames, FPS, SIZE, SIZE, crf=16, options={"g": str(FPS * 2), "bf": "0"})


def write_video(out_dir: Path, seed: int, split: str, index: int, events: int | None = None) -> Path:
    """Write video ``index`` of ``split`` (and its sidecar) into ``out_dir`` once; return its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"micro-{split}-s{seed}-{index:04d}.mp4"
    side = path.with_suffix(".json")
    if path.is_file() and side.is_file():
        return path
    evs = video_events(seed, split, index, events)
    encode(path, [f for e in evs for f in event_frames(e)])
    write_text_atomic(side, json.dumps(sidecar(evs, seed, split, index), indent=1))
    return path


def write_split(out_dir: Path, seed: int, split: str, count: int, start: int = 0) -> list[Path]:
    """Videos ``start .. start + count - 1`` of ``split``."""
    return [write_video(Path(out_dir), seed, split, i) for i in range(start, start + count)]


# -- reading a world video back ---------------------------------------------------------------
def read_sidecar(video: str | Path) -> dict:
    """The sidecar of a world video (``<video>.json``)."""
    return json.loads(Path(video).with_suffix(".json").read_text(encoding="utf-8"))


def ground_truth_record(video: str | Path):
    """A ``select/videos.jsonl`` record of a world video as perfect selection would make it:
    one clip and one segment per event, keyframes by the release's rule (SPEC §1) -- what the
    captioner is given, without running shot detection."""
    from temple_core.evaluation.truth import ground_truth_record as from_sidecar

    return from_sidecar(video)


# -- data files for the study -----------------------------------------------------------------
#: The order question of the multiple-choice file.
FIRST_QUESTION = "Which happened first?"


def order_questions(videos: list[Path], out: Path, seed: int, per_video: int = 2) -> Path:
    """A ``multiple_choice`` JSONL of "which happened first?" questions from the ground truth:
    per video, ``per_video`` pairs of its events (different pairs), the two phrases as options
    in random order, the earlier one the answer (so a blind model is at 0.5)."""
    out = Path(out)
    rows = []
    for video in videos:
        video = Path(video)
        events = [e["description"] for e in read_sidecar(video)["events"]]
        rng = random.Random(f"micro-questions:{seed}:{video.stem}")
        pairs = [(i, j) for i in range(len(events)) for j in range(i + 1, len(events))]
        for k, (i, j) in enumerate(rng.sample(pairs, min(per_video, len(pairs)))):
            options = [events[i], events[j]]
            if rng.random() < 0.5:
                options.reverse()
            rows.append({"id": f"{video.stem}-q{k}", "video": _relative(video, out.parent), "question": FIRST_QUESTION,
                         "options": options, "answer": options.index(events[i]), "group": video.stem})
    _write_jsonl(out, rows)
    return out


def sft_samples(videos: list[Path], out: Path, seed: int) -> Path:
    """An SFT JSONL (messages + videos, docs/training.md) of labeled videos: a pair prompt
    (SPEC §4's instructions) answered with the true-order description."""
    from temple_core.generation.prompts import PAIR_PROMPTS

    out = Path(out)
    rows = []
    for video in videos:
        video = Path(video)
        rng = random.Random(f"micro-sft:{seed}:{video.stem}")
        rows.append({"id": video.stem, "videos": [_relative(video, out.parent)], "messages": [
            {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": rng.choice(PAIR_PROMPTS)}]},
            {"role": "assistant", "content": read_sidecar(video)["description"]}]})
    _write_jsonl(out, rows)
    return out


def _relative(path: Path, base: Path) -> str:
    try:
        return os.path.relpath(Path(path).resolve(), Path(base).resolve())
    except ValueError:  # another drive (Windows)
        return str(Path(path).resolve())


def _write_jsonl(out: Path, rows: list[dict]) -> None:
    write_text_atomic(out, "".join(json.dumps(r) + "\n" for r in rows))


# -- one command for a study's data -------------------------------------------------------------
#: Videos per split of a study (``python -m temple_core.samples.world``).
STUDY_SPLITS = {"unlabeled": 64, "sft": 32, "heldout": 32}


def write_study_data(out: Path, seed: int, counts: dict[str, int] | None = None) -> dict[str, Any]:
    """The data of one seed of the micro-TEMPLE study under ``out``: ``unlabeled/``, ``sft/``,
    ``heldout/`` (videos + sidecars), ``sft.jsonl`` (the labeled set as SFT samples) and
    ``order_mc.jsonl`` (which-happened-first questions on the held-out videos)."""
    out = Path(out)
    counts = {**STUDY_SPLITS, **(counts or {})}
    paths = {split: write_split(out / split, seed, split, n) for split, n in counts.items()}
    sft_samples(paths["sft"], out / "sft.jsonl", seed)
    order_questions(paths["heldout"], out / "order_mc.jsonl", seed)
    return {"seed": seed, "videos": {k: len(v) for k, v in paths.items()}, "sft": str(out / "sft.jsonl"),
            "questions": str(out / "order_mc.jsonl")}


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Write the micro world's videos for one seed of the study.")
    parser.add_argument("--out", required=True, help="folder to write (videos are written once)")
    parser.add_argument("--seed", type=int, default=0)
    for split, n in STUDY_SPLITS.items():
        parser.add_argument(f"--{split}", type=int, default=n, help=f"videos of the {split} split (default {n})")
    args = parser.parse_args(argv)
    summary = write_study_data(Path(args.out), args.seed, {s: getattr(args, s) for s in STUDY_SPLITS})
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
