"""The run store: atomic appends, torn lines, resume after SIGKILL, sharded merge."""

import json
import os
import signal
import subprocess
import sys
import textwrap

from temple_core.distributed import shard
from temple_core.store import ShardedJsonl, append_jsonl, read_jsonl

WRITER = textwrap.dedent(
    """
    import sys, time
    from temple_core.store import ShardedJsonl
    store = ShardedJsonl(sys.argv[1], "items", key="id")
    done = store.done_keys()
    for i in range(int(sys.argv[2])):
        if i in done:
            continue
        # A large record makes a kill in the middle of a write likely.
        store.append({"id": i, "payload": "x" * 20000})
        print(i, flush=True)
        time.sleep(0.002)
    """
)


def test_torn_last_line_is_ignored_then_cut(tmp_path):
    path = tmp_path / "m.jsonl"
    append_jsonl(path, {"id": 1})
    with open(path, "ab") as handle:
        handle.write(b'{"id": 2, "half')
    assert read_jsonl(path) == [{"id": 1}]
    store = ShardedJsonl(tmp_path, "m2", key="id")
    store.shard_path.write_bytes(b'{"id": 1}\n{"id": 2, "par')
    store = ShardedJsonl(tmp_path, "m2", key="id")  # opening repairs
    store.append({"id": 3})
    assert [r["id"] for r in read_jsonl(store.shard_path)] == [1, 3]


def test_sigkill_mid_run_then_resume_finds_every_item_once(tmp_path):
    total = 400
    env = dict(os.environ)
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(tmp_path), str(total)], stdout=subprocess.PIPE, env=env, text=True
    )
    reported = []
    # Kill it once it has reported a fair number of items, i.e. really mid-run.
    while len(reported) < 60:
        line = proc.stdout.readline()
        assert line, "writer ended early"
        reported.append(int(line))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    store = ShardedJsonl(tmp_path, "items", key="id")
    survived = store.done_keys()
    assert set(reported) <= survived, "everything reported done survived the kill"
    assert len(survived) < total
    subprocess.run([sys.executable, "-c", WRITER, str(tmp_path), str(total)], check=True, capture_output=True)
    lines = read_jsonl(ShardedJsonl(tmp_path, "items", key="id").shard_path)
    ids = [r["id"] for r in lines]
    assert sorted(ids) == list(range(total)), "every item exactly once"
    assert all(len(r["payload"]) == 20000 for r in lines)


def test_two_ranks_merge_like_one(tmp_path):
    items = [f"v{i:02d}" for i in range(11)]
    one = ShardedJsonl(tmp_path / "one", "videos", key="video_id")
    for item in items:
        one.append({"video_id": item, "n": int(item[1:])})
    one.merge(order=items)
    for rank in (1, 0):  # any finishing order
        store = ShardedJsonl(tmp_path / "two", "videos", key="video_id", rank=rank, world_size=2)
        for item in shard(items, rank, 2):
            store.append({"video_id": item, "n": int(item[1:])})
    merged = ShardedJsonl(tmp_path / "two", "videos", key="video_id").merge(order=items)
    assert merged.read_bytes() == (tmp_path / "one" / "videos.jsonl").read_bytes()
    assert not list((tmp_path / "two").glob("videos.rank*.jsonl")), "shards are folded in"
    # After a merge, a resumed run still sees everything as done.
    assert ShardedJsonl(tmp_path / "two", "videos", key="video_id").done_keys() == set(items)


def test_shard_is_round_robin_and_complete():
    items = list(range(10))
    parts = [shard(items, r, 3) for r in range(3)]
    assert parts == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    assert sorted(sum(parts, [])) == items


def test_append_is_one_line_of_json(tmp_path):
    path = tmp_path / "a.jsonl"
    append_jsonl(path, {"text": "line\nbreak", "é": 1})
    raw = path.read_text()
    assert raw.count("\n") == 1 and json.loads(raw) == {"text": "line\nbreak", "é": 1}
