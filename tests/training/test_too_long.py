"""A training sample longer than ``max_length``, on the real tiny Qwen2-VL and real TRL.

ms-swift (the release's framework; ``truncation_strategy: delete`` with its lazy dataset,
``LazyLLMDataset``) never trains a cut sample: it draws another sample of the dataset in its
place, up to 10 tries. temple's default ``too_long: resample`` does the same; ``skip`` leaves
the sample out of its batch, and a batch left empty stops the stage naming its videos.
"""

from __future__ import annotations

import attrs
import pytest

from temple_core.errors import TempleError
from temple_core.records import Pair
from temple_core.training.collate import PreferenceCollator
from temple_plugins.trainers.dpo import DPO
from testkit.training import build_backend, easy_pairs, stage_context, write_videos

MAX_LENGTH = 512


def as_rows(pairs):
    return [{"pair_id": p.pair_id, "video_path": p.video_path, "prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected} for p in pairs]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Six easy pairs of three videos, the first made far longer than MAX_LENGTH tokens."""
    tmp = tmp_path_factory.mktemp("too_long")
    videos = write_videos(tmp / "videos", 3)
    pairs = [Pair.from_dict(p) for p in easy_pairs(videos, per_video=2)]
    pairs[0] = attrs.evolve(pairs[0], chosen=pairs[0].chosen + " and then it turns red again" * 200)
    return tmp, pairs, build_backend(preset="tiny-random")


def test_a_too_long_pair_is_replaced_by_another_pair_of_the_stage(data):
    _, pairs, backend = data
    rows = as_rows(pairs)
    video = {"fps": 1.0}
    with pytest.raises(Exception, match="max_length"):
        backend.encode_preference(video=rows[0]["video_path"], prompt=rows[0]["prompt"], chosen=rows[0]["chosen"],
                                  rejected=rows[0]["rejected"], max_length=MAX_LENGTH, **video)
    collator = PreferenceCollator(backend, video, MAX_LENGTH, pool=rows, seed=0)
    batch = collator([rows[0], rows[1]])
    assert batch["chosen_input_ids"].shape[0] == 2  # still a full batch
    [entry] = collator.skipped
    assert entry["id"] == rows[0]["pair_id"] and "max_length" in entry["reason"]
    replacement = next(r for r in rows if r["pair_id"] == entry["replaced_by"])
    assert replacement is not rows[0]
    # The replacement's own encoding is row 0 of the batch, bit for bit.
    own = backend.encode_preference(video=replacement["video_path"], prompt=replacement["prompt"], chosen=replacement["chosen"],
                                    rejected=replacement["rejected"], max_length=MAX_LENGTH, **video)
    n = len(own["chosen_input_ids"])
    assert batch["chosen_input_ids"][0, :n].tolist() == own["chosen_input_ids"]
    assert batch["video_keys"][0] == replacement["video_path"]
    # The same choice made again (a resumed stage, another process): it depends on the seed and the pair only.
    again = PreferenceCollator(backend, video, MAX_LENGTH, pool=list(reversed(rows)), seed=0)
    again([rows[3], rows[0]])
    assert again.skipped[0]["replaced_by"] == entry["replaced_by"]
    # A batch of only the long pair is filled too; without a pool (skip) it is an error naming its video.
    assert PreferenceCollator(backend, video, MAX_LENGTH, pool=rows, seed=0)([rows[0]])["chosen_input_ids"].shape[0] == 1
    with pytest.raises(TempleError, match=f"no pair of this batch could be encoded \\(videos: {rows[0]['video_path']}\\)"):
        PreferenceCollator(backend, video, MAX_LENGTH)([rows[0]])
    # When every candidate is too long as well, the pair is left out.
    long_pool = [rows[0], {**rows[1], "chosen": rows[0]["chosen"]}]
    lonely = PreferenceCollator(backend, video, MAX_LENGTH, pool=long_pool, seed=0)
    assert lonely([rows[0], rows[2]])["chosen_input_ids"].shape[0] == 1
    assert "replaced_by" not in lonely.skipped[0] and len(lonely.skipped) == 1


@pytest.mark.parametrize("too_long", ["resample", "skip"])
def test_a_dpo_stage_with_a_too_long_pair(data, too_long):
    """One pair per micro-batch, one epoch: the long pair's batch gets another pair (resample),
    or the stage stops there naming the video (skip) -- nothing is ever cut."""
    from temple_core.training.video_dpo import train_dpo

    tmp, pairs, backend = data
    options = DPO.Options(batch_size=1, per_device_batch_size=1, max_steps=len(pairs), warmup_ratio=0.0, gradient_checkpointing=False,
                          max_length=MAX_LENGTH, fps=1.0, save_steps=1000, too_long=too_long)
    tctx = stage_context(backend, pairs, tmp / f"0-dpo-{too_long}")
    if too_long == "skip":
        with pytest.raises(TempleError, match="no pair of this batch could be encoded"):
            train_dpo(options, tctx)
        return
    summary = train_dpo(options, tctx)
    assert summary["skipped_in_batches"] == 1 and summary["replaced_in_batches"] == 1
    assert summary["steps"] == len(pairs), summary  # every step trained a full batch


def test_the_counts_come_from_the_dataloader_workers_too(data):
    """With ``num_workers`` the collator runs in DataLoader worker processes, whose memory the
    summary never sees (it said 0): each failure is appended to the process's shard of the
    stage's skipped_in_batches manifest, and the summary counts each sample once from there."""
    from temple_core.store import read_jsonl
    from temple_core.training.video_dpo import train_dpo

    tmp, pairs, _ = data
    backend = build_backend(preset="tiny-random")  # a model no earlier test has put LoRA layers into
    options = DPO.Options(batch_size=1, per_device_batch_size=1, max_steps=len(pairs), warmup_ratio=0.0, gradient_checkpointing=False,
                          max_length=MAX_LENGTH, fps=1.0, save_steps=1000, num_workers=1)
    tctx = stage_context(backend, pairs, tmp / "0-dpo-workers")
    summary = train_dpo(options, tctx)
    assert summary["skipped_in_batches"] == 1 and summary["replaced_in_batches"] == 1, summary
    [entry] = read_jsonl(tctx.layout.skipped_in_batches)
    assert entry["id"] == pairs[0].pair_id and "max_length" in entry["reason"] and entry["replaced_by"] != pairs[0].pair_id



def test_a_torn_line_in_the_failure_log_does_not_fail_the_stage(tmp_path):
    """A process killed mid-append leaves a torn line in its shard: the next run of the stage
    cuts it off before appending (the store's rule), so nothing later is glued to it or lost,
    and the counts neither fail a stage that has trained nor count a sample twice."""
    from temple_core.store import ShardedJsonl, read_jsonl

    manifest = tmp_path / "skipped_in_batches.jsonl"
    shard = tmp_path / "skipped_in_batches.rank0.jsonl"
    shard.write_text('{"id": "a", "reason": "too long", "replaced_by": "b"}\n{"id": "c", "rea')  # torn
    log = ShardedJsonl.at(manifest, key="id")  # a resumed stage's collator opens it
    log.append({"id": "d", "reason": "too long"})
    log.append({"id": "a", "reason": "too long", "replaced_by": "b"})  # the resumed stage meets it again
    log.append({"id": "e", "reason": "video"})
    collator = PreferenceCollator(None, {}, MAX_LENGTH, log=log)
    assert collator.counts(merge=True) == {"skipped_in_batches": 3, "replaced_in_batches": 1}
    assert [r["id"] for r in read_jsonl(manifest)] == ["a", "d", "e"] and not shard.exists()
