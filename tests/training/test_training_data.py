"""Training data: pairs selection, the SFT JSONL formats, unreadable videos skipped and counted."""

import json
from pathlib import Path

import pytest

from temple_core.training.data import DataError, drop_unreadable, load_pairs, load_sft, normalize_sft
from testkit.training import easy_pairs, write_jsonl, write_videos

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sft" / "sample.jsonl"


def test_pairs_by_difficulty_and_perturbation(tmp_path):
    videos = write_videos(tmp_path / "v", 2)
    records = easy_pairs(videos, 16) + easy_pairs(videos, 8)
    path = write_jsonl(tmp_path / "pairs.jsonl", records)
    assert {p.difficulty for p in load_pairs(path, 8)} == {8}
    assert len(load_pairs(path, 16)) == 4
    drops = load_pairs(path, 16, ["drop"])
    assert [p.perturbation for p in drops] == ["drop", "drop"]
    with pytest.raises(DataError, match="no pairs at difficulty 4"):
        load_pairs(path, 4)


def test_relative_video_paths_resolve_against_the_file(tmp_path):
    write_videos(tmp_path / "data" / "v", 1)
    records = [dict(easy_pairs([Path("v/v0.mp4")])[0])]
    path = write_jsonl(tmp_path / "data" / "pairs.jsonl", records)
    (pair,) = load_pairs(path)
    assert Path(pair.video_path) == tmp_path / "data" / "v" / "v0.mp4"


def test_sft_file_given_to_dpo_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="an SFT sample.*needs a pairs file"):
        load_pairs(EXAMPLE)


def test_example_sft_file_loads_in_both_forms():
    samples = load_sft(EXAMPLE)
    assert len(samples) == 4
    for sample in samples:
        assert len(sample["videos"]) == 1 and Path(sample["videos"][0]).is_file()
        assert sample["messages"][-1]["role"] == "assistant"
        user = sample["messages"][0]
        assert user["content"][0] == {"type": "video"}
    # "<video>\n..." string content and LLaVA's conversations/<image> both become parts.
    assert samples[2]["messages"][0]["content"][1] == {"type": "text", "text": "Does the colour change before or after the midpoint?"}
    assert samples[3]["messages"][1]["content"] == [
        {"type": "text", "text": "A white vertical bar moves from left to right over a green, then yellow, background."}
    ]


@pytest.mark.parametrize(
    "record, message",
    [
        ({"messages": [{"role": "user", "content": "hi"}]}, "last message must be the assistant"),
        ({"videos": ["a.mp4", "b.mp4"], "messages": [{"role": "user", "content": "<video> x"}, {"role": "assistant", "content": "y"}]}, "1 video place"),
        ({"messages": [{"role": "robot", "content": "x"}, {"role": "assistant", "content": "y"}]}, "unknown role 'robot'"),
        ({"chosen": "a", "rejected": "b"}, "a preference pair"),
    ],
)
def test_bad_sft_lines_name_the_line(record, message):
    with pytest.raises(DataError, match=message) as info:
        normalize_sft(record, Path("/d"), "f.jsonl:3")
    assert str(info.value).startswith("f.jsonl:3")


def test_unreadable_videos_are_skipped_and_counted(tmp_path):
    videos = write_videos(tmp_path / "v", 2)
    truncated = tmp_path / "v" / "cut.mp4"
    data = videos[1].read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    (tmp_path / "v" / "empty.mp4").write_bytes(b"")
    bad = [tmp_path / "v" / "missing.mp4", tmp_path / "v" / "empty.mp4", truncated]
    pairs = load_pairs(write_jsonl(tmp_path / "pairs.jsonl", easy_pairs(videos + bad, per_video=1)))
    kept, skipped = drop_unreadable(pairs, lambda p: [p.video_path], lambda p: p.pair_id)
    assert [p.video_id for p in kept] == ["v0", "v1"]
    assert sorted(s["id"].split("-")[0] for s in skipped) == ["p2", "p3", "p4"]
    reasons = " ".join(s["reason"] for s in skipped)
    assert "no such file" in reasons and "empty file" in reasons
    json.dumps(skipped)  # written to skipped.jsonl as is


def test_example_pairs_file_loads():
    pairs = load_pairs(EXAMPLE.parents[1] / "pairs" / "sample.jsonl")
    assert [p.perturbation for p in pairs] == ["shuffle", "drop"]
    assert all(Path(p.video_path).is_file() for p in pairs)
