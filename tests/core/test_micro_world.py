"""The micro world (temple_core/samples/world.py): what its videos show is what their ground
truth says, splits are disjoint, everything is deterministic, and its texts carry order only
through content (no text-only leak; docs/science.md).

The checks re-derive each property from the pixels or from counts, never by calling the
generator's own rule: the object's colour and direction are measured on the decoded frames.
"""

import collections
import json
import re

import numpy as np
import pytest
from scipy import stats

from temple_core.samples import world
from temple_core.video.source import VideoSource

#: RGB of the named colours as a viewer would name them (independent of world.COLOURS).
NAMED = {"red": (255, 0, 0), "yellow": (255, 255, 0), "green": (0, 255, 0), "cyan": (0, 255, 255),
         "blue": (0, 0, 255), "magenta": (255, 0, 255)}


def sequence(seed, split, index):
    return tuple((e.colour, e.shape, e.direction, e.x, e.y) for e in world.video_events(seed, split, index))


def test_same_seed_same_video_and_splits_disjoint(tmp_path):
    a = world.write_video(tmp_path / "a", 3, "heldout", 1)
    b = world.write_video(tmp_path / "b", 3, "heldout", 1)
    assert a.with_suffix(".json").read_text() == b.with_suffix(".json").read_text()
    fa, fb = VideoSource(a), VideoSource(b)
    assert fa.num_frames == fb.num_frames
    assert all(np.array_equal(x, y) for x, y in zip(fa.read_frames(range(fa.num_frames)), fb.read_frames(range(fb.num_frames))))
    # Disjoint: no video (its event sequence) appears in two splits, or under two seeds.
    seen = {}
    for seed in (0, 1):
        for split in world.SPLITS:
            for i in range(40):
                key = sequence(seed, split, i)
                assert key not in seen, f"{(seed, split, i)} repeats {seen[key]}"
                seen[key] = (seed, split, i)
    with pytest.raises(ValueError, match="unknown split"):
        world.video_events(0, "test", 0)


def test_pixels_show_the_ground_truth(tmp_path):
    """Per event: the bright object's colour is the named one, and its centroid moves the named way."""
    for index in range(2):
        path = world.write_video(tmp_path, 0, "sft", index)
        truth = json.loads(path.with_suffix(".json").read_text())
        source = VideoSource(path)
        assert source.num_frames == sum(round((e["end"] - e["start"]) * source.fps) for e in truth["events"])
        for event in truth["events"]:
            first, last = round(event["start"] * source.fps), round(event["end"] * source.fps) - 1
            frames = source.read_frames([first + 2, last - 2])
            centres = []
            for frame in frames:
                value = frame.max(axis=2).astype(int)
                mask = value > 150  # objects are bright, backgrounds dark
                assert mask.sum() > 15
                ys, xs = np.nonzero(mask)
                centres.append((xs.mean(), ys.mean()))
                mean = frame[mask].mean(axis=0)
                named = min(NAMED, key=lambda n: np.linalg.norm(mean - np.array(NAMED[n])))
                assert named in event["description"].split(), (event["description"], mean)
            dx, dy = centres[1][0] - centres[0][0], centres[1][1] - centres[0][1]
            moved = ("right" if dx > 0 else "left") if abs(dx) > abs(dy) else ("down" if dy > 0 else "up")
            assert max(abs(dx), abs(dy)) > 5
            assert event["description"].endswith(f"moves {moved}"), (event["description"], dx, dy)


def test_order_only_through_content():
    """Where an event stands tells nothing about what it is: over many videos, the kind at the
    first position and at the last are drawn from the same (uniform) distribution, and no
    description holds a number (timestamps) -- so a permuted description is as plausible, to
    any rule that ignores the video, as the true one."""
    first, last, lengths = collections.Counter(), collections.Counter(), collections.Counter()
    for i in range(3000):
        events = world.video_events(7, "unlabeled", i)
        first[events[0].colour] += 1
        last[events[-1].colour] += 1
        lengths[len(events)] += 1
        assert len({e.kind for e in events}) == len(events)
    colours = sorted(set(first) | set(last))
    table = np.array([[first[c] for c in colours], [last[c] for c in colours]])
    assert stats.chi2_contingency(table).pvalue > 0.001
    assert stats.chisquare([first[c] for c in colours]).pvalue > 0.001
    assert set(lengths) == set(range(world.MIN_EVENTS, world.MAX_EVENTS + 1))
    sidecar = world.sidecar(world.video_events(7, "heldout", 0), 7, "heldout", 0)
    for text in [e["description"] for e in sidecar["events"]] + [sidecar["description"]]:
        assert not re.search(r"\d", text)


def test_study_files(tmp_path):
    """The SFT file answers with the events in true order; every order question's answer is
    the earlier of two events of its video, and answers are not always the same letter."""
    summary = world.write_study_data(tmp_path, 2, {"unlabeled": 1, "sft": 3, "heldout": 6})
    assert summary["videos"] == {"unlabeled": 1, "sft": 3, "heldout": 6}
    for row in map(json.loads, (tmp_path / "sft.jsonl").read_text().splitlines()):
        truth = json.loads((tmp_path / row["videos"][0]).with_suffix(".json").read_text())
        answer = row["messages"][1]["content"].lower()
        at = [answer.find(e["description"]) for e in truth["events"]]
        assert min(at) >= 0 and at == sorted(at)
    answers = []
    for q in map(json.loads, (tmp_path / "order_mc.jsonl").read_text().splitlines()):
        events = [e["description"] for e in json.loads((tmp_path / q["video"]).with_suffix(".json").read_text())["events"]]
        a, b = q["options"]
        earlier = a if events.index(a) < events.index(b) else b
        assert q["options"][q["answer"]] == earlier
        answers.append(q["answer"])
    assert len(answers) == 12 and 0 < sum(answers) < len(answers)


def test_heuristic_captions_without_timestamps(tmp_path):
    """timestamps: false leaves every number out of the captions (a reversed text's times would
    run backwards: a text-only leak); with them, each caption says where its clip is."""
    from temple_core.plugins import get_plugin_manager

    path = world.write_video(tmp_path, 0, "heldout", 0)
    record = world.ground_truth_record(path)
    pm = get_plugin_manager()
    texts = {}
    for stamps in (True, False):
        captioner = pm.build("caption_generators", "heuristic", pm.get("caption_generators", "heuristic").options(timestamps=stamps))
        (out,) = captioner.generate([record], None, [], [], [np.random.default_rng(0)])
        texts[stamps] = list(out.clip_captions) + [out.chosen]
    assert all(re.search(r"\d", t) for t in texts[True][:-1])
    assert not any(re.search(r"\d", t) for t in texts[False])
