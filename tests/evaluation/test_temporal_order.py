"""temporal_order: the accuracy rule against a hand computation, the real tiny model at chance,
and held-out videos that are training videos refused."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys

import pytest
import yaml
from testkit.evaluation import StubScorer, event_videos, evaluator, order_of, request, stub_tokens

from temple_core.errors import RecipeError
from temple_core.evaluation.heldout import check_heldout

CLIPS = [5, 4, 6, 3, 8, 2, 7]
DIFFICULTIES = [16, 8, 4, 2]


def table(video, text):
    """Known, arbitrary log-likelihoods: a hash of (video, order), with ties on purpose."""
    order = order_of(text)
    digest = hashlib.sha256(f"{video}|{order}".encode()).digest()
    return -float(digest[0] % 7) - 0.5 * len(order)  # only 7 levels: ties happen


def win(a, b):
    return 1.0 if a > b else 0.5 if a == b else 0.0


def groups(n, r):
    """SPEC §3 (released): contiguous groups of size max(1, n // r)."""
    g = max(1, n // r)
    return [list(range(s, min(n, s + g))) for s in range(0, n, g)]


def test_accuracy_equals_the_hand_computation(tmp_path):
    videos = event_videos(tmp_path / "held", CLIPS)
    ev = evaluator("temporal_order", videos={"paths": [str(tmp_path / "held")]}, difficulties=DIFFICULTIES)
    backend = StubScorer(table)
    req = request(backend, tmp_path)
    ev.score(req)
    records = {r["item_id"]: r for r in req.items.records()}
    result = ev.result(req, list(records.values()))

    expected = {"sum": {}, "mean": {}}
    sums, counts = [], []
    for path, n in zip(videos, CLIPS):
        record = records[path.stem]
        truth = tuple(range(n))
        s, c = 0.0, 0
        by_variant = {(v["perturbation"], v["difficulty"]): v for v in record["variants"]}
        assert len(by_variant) == 3 * len(DIFFICULTIES)
        for (name, r), v in by_variant.items():
            kept = tuple(v["kept_indices"])
            # The perturbation rules themselves, from SPEC §3, not from the code under test.
            if name == "drop":
                assert list(kept) == sorted(kept) and len(kept) == max(1, n // r)
            elif name == "reverse":
                assert kept == tuple(i for g in reversed(groups(n, r)) for i in g)
            else:  # shuffle: every group stays contiguous and in its own order
                assert sorted(kept) == list(truth)
                for g in groups(n, r):
                    at = [kept.index(i) for i in g]
                    assert at == list(range(at[0], at[0] + len(g)))
            if kept == truth:
                assert v["identical"]
                continue
            assert not v["identical"]
            right, other = table(str(path), " ".join(f"event {i}" for i in truth)), table(str(path), " ".join(f"event {i}" for i in kept))
            w_sum = win(right, other)
            w_mean = win(right / stub_tokens(truth), other / stub_tokens(kept))
            expected["sum"].setdefault((name, r), []).append(w_sum)
            expected["mean"].setdefault((name, r), []).append(w_mean)
            s += w_mean
            c += 1
        sums.append(s)
        counts.append(c)

    for kind, key in (("sum", "sum"), ("mean", "length_normalised")):
        cells = result.metrics[key]["cells"]
        for (name, r), outcomes in expected[kind].items():
            assert cells[name][str(r)]["accuracy"] == pytest.approx(sum(outcomes) / len(outcomes))
            assert cells[name][str(r)]["n"] == len(outcomes)
    assert result.score == pytest.approx(sum(sums) / sum(counts))
    assert result.n == sum(counts)
    low, high = result.interval
    assert low <= result.score <= high
    # Every video was scored in one call: the correct text and its distinct perturbations together.
    assert len(backend.calls) == len(CLIPS)


def test_identity_perturbations_are_not_scored(tmp_path):
    """At r = 1 the group size is N // 1 = N: one group, nothing moves -- no such item is scored."""
    event_videos(tmp_path / "held", [4])
    ev = evaluator("temporal_order", videos={"paths": [str(tmp_path / "held")]}, perturbations=["reverse"], difficulties=[1, 2])
    req = request(StubScorer(table), tmp_path)
    ev.score(req)
    (record,) = req.items.records()
    by_r = {v["difficulty"]: v for v in record["variants"]}
    assert by_r[1]["identical"] and by_r[1]["kept_indices"] == [0, 1, 2, 3]
    assert not by_r[2]["identical"] and by_r[2]["kept_indices"] == [2, 3, 0, 1]
    result = ev.result(req, [record])
    assert result.n == 1 and result.metrics["identical_skipped"] == 1


def test_held_out_overlap_is_refused(tmp_path):
    videos = event_videos(tmp_path / "held", [4, 5])
    ev = evaluator("temporal_order", videos={"paths": [str(tmp_path / "held")]})
    training = {str(videos[1].resolve()): "a video of this run's pairs (generate/pairs.jsonl)"}
    with pytest.raises(RecipeError, match=r"eval\.evaluators\[0\]\.videos: 1 held-out video\(s\) are videos this run trains on: .*held1\.mp4"):
        ev.score(request(StubScorer(table), tmp_path, training=training))
    # A copy elsewhere is the same video.
    copy = tmp_path / "elsewhere" / "other-name.mp4"
    copy.parent.mkdir()
    shutil.copy(videos[0], copy)
    training = {str(copy.resolve()): "a training video of train.stages[0] (sft.jsonl)"}
    with pytest.raises(RecipeError, match=r"held0\.mp4 is a copy of .*other-name\.mp4, a training video of train\.stages\[0\]"):
        ev.score(request(StubScorer(table), tmp_path / "b", training=training))

    # A file of the same size whose bytes differ past the first 64 KiB is another video: nothing
    # is refused (the old sampled hash read only the first 64 KiB of files under 128 KiB).
    size = 95_536
    held_bytes = bytes(range(256)) * (size // 256) + bytes(size % 256)
    other_bytes = bytearray(held_bytes)
    other_bytes[70_000] ^= 0xFF
    (tmp_path / "c").mkdir()
    held, other = tmp_path / "c" / "held.bin", tmp_path / "c" / "train.bin"
    held.write_bytes(held_bytes)
    other.write_bytes(bytes(other_bytes))
    check_heldout([held], {str(other.resolve()): "a training video"}, "eval.evaluators[0].videos")
    other.write_bytes(held_bytes)
    with pytest.raises(RecipeError, match=r"held\.bin is a copy of .*train\.bin"):
        check_heldout([held], {str(other.resolve()): "a training video"}, "eval.evaluators[0].videos")


def test_blind_baseline_shows_black_frames(tmp_path):
    """``blind: true``: the frames the backend would sample (2 s at 1 fps, sampled at 2 fps: 4),
    all black, at the video's size -- the texts alone must not give the order away."""
    event_videos(tmp_path / "held", [4])
    ev = evaluator("temporal_order", videos={"paths": [str(tmp_path / "held")]}, blind=True)
    backend = StubScorer(table)
    req = request(backend, tmp_path)
    ev.score(req)
    (item,) = backend.items
    assert "path" not in item and len(item["frames"]) == 4 and item["fps"] == 2.0
    assert all(f.shape == (48, 64, 3) and not f.any() for f in item["frames"])
    assert ev.result(req, req.items.records()).metrics["blind"] is True


def _recipe(tmp_path, extra=None):
    recipe = {
        "run_dir": str(tmp_path / "run"), "seed": 0,
        "eval": {"backend": {"name": "qwen2_vl", "preset": "tiny-random"}, "checkpoints": ["base"],
                 "frames": {"max_frames": 8, "max_pixels": 12544},
                 "evaluators": [{"name": "temporal_order", "videos": {"samples": ["heldout_events"]}}]},
    }
    recipe["eval"].update(extra or {})
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_tiny_random_model_is_near_chance(tmp_path):
    """A random-weight model cannot see order: same-length perturbations (shuffle, reverse)
    are won about half the time, the interval covering 0.5; the raw sum loses every drop
    (a shorter text is likelier), which is why the length-normalised figure is the headline."""
    result = subprocess.run([sys.executable, "-m", "temple_core", "run", str(_recipe(tmp_path)), "--no-progress"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads((tmp_path / "run" / "eval" / "base" / "temporal_order.json").read_text())
    assert 0.0 <= data["score"] <= 1.0 and data["n"] > 50
    assert data["settings"]["frames"] == {"fps": 2.0, "max_frames": 8, "max_pixels": 12544, "min_pixels": 3136}
    assert data["model"] == "qwen2_vl preset=tiny-random"
    cells = data["metrics"]["length_normalised"]["cells"]
    for name in ("shuffle", "reverse"):
        low, high = cells[name]["all"]["interval"]
        assert low <= 0.5 <= high, (name, cells[name]["all"])
    assert data["metrics"]["sum"]["cells"]["drop"]["all"]["accuracy"] <= 0.25
    records = [json.loads(line) for line in (tmp_path / "run" / "eval" / "base" / "temporal_order.jsonl").read_text().splitlines()]
    assert len(records) == 8 and all(r["source"] == "ground_truth" for r in records)
    assert "temporal_order" in result.stdout and "0." in result.stdout
