"""Prefix-shared DPO pairs against TRL's concatenated ``[chosen; rejected]`` rows, on the real
tiny model of every built-in backend family and the real TRL trainer: the same per-token and
per-answer log-probabilities (policy and reference), loss and gradients, with batches that mix
long and short answers, prompts and videos of different lengths (so both layouts pad); the same
3-step training run; the fallback of a backend without support. And the vision tower once per
video per step: the same losses as once per pair, with fewer tower runs."""

from pathlib import Path

import pytest
import torch

from temple_core.records import Pair
from temple_core.training.video_dpo import VideoGroupedSampler, build_dpo_trainer
from temple_plugins.backends.qwen_vl import Qwen2VLBackend
from temple_plugins.trainers.dpo import DPO
from testkit.training import PALETTE, build_backend, easy_pairs, stage_context, write_video, write_videos

SMALL = dict(lr=1e-3, warmup_ratio=0.0, gradient_checkpointing=False, max_length=1024, fps=1.0, save_steps=1000)


def mixed_pairs(folder: Path) -> list[Pair]:
    """Three pairs whose videos (2, 4 and 3 s), prompts and answers all differ in length."""
    videos = [write_video(folder / f"m{i}.mp4", PALETTE[i : i + n]) for i, n in enumerate((2, 4, 3))]
    pairs = [Pair.from_dict(p) for p in easy_pairs(videos, per_video=1)]
    pairs[0].chosen = "red then green then blue, and then a long tail of words that makes this answer long."
    pairs[1].rejected = "blue blue blue blue and more blue, and even more blue than that."
    pairs[2].prompt = "Describe the video in great detail please, from its start to its end."
    return pairs


def rows(pairs):
    return [{"pair_id": p.pair_id, "video_path": p.video_path, "prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected} for p in pairs]


def language_model(trainer):
    base = trainer.model.get_base_model()
    return next(m for n, m in base.named_modules() if n.endswith("language_model") and n.count("language_model") == 1)


def run_both_ways(trainer, batch):
    """Loss, the per-token log-probabilities TRL reads (policy, then reference), gradients and
    the rows the language model ran, with prefix sharing on and off, on the same batch."""
    results = {}
    for shared in (True, False):
        trainer.prefix_sharing = shared
        trainer.model.zero_grad()
        logps, lm_rows = [], []
        capture = trainer.model.register_forward_hook(lambda m, a, o: logps.append(o.log_probs.detach()))
        count = language_model(trainer).register_forward_pre_hook(
            lambda m, a, k: lm_rows.append(tuple(k["inputs_embeds"].shape[:2])), with_kwargs=True)
        loss = trainer.compute_loss(trainer.model, dict(batch))
        capture.remove()
        count.remove()
        loss.backward()
        grads = {n: p.grad.detach().clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
        results[shared] = dict(loss=loss.item(), logps=logps, grads=grads, lm_rows=lm_rows)
    trainer.prefix_sharing = True
    return results


# llava_onevision: the third-party example package (examples/plugins/), when installed.
FAMILIES = [("qwen2_vl", None), ("qwen2_5_vl", None), ("mimo_vl", None), ("internvl2_5", None), ("qwen3_vl", None),
            ("llava_onevision", None),
            ("qwen2_vl", "eager"), ("internvl2_5", "eager")]


@pytest.mark.parametrize("family,attention", FAMILIES, ids=[f"{f}-{a or 'sdpa'}" for f, a in FAMILIES])
def test_prefix_shared_pairs_equal_concatenated_rows(tmp_path, family, attention):
    if family == "llava_onevision":
        pytest.importorskip("temple_llava_onevision", reason="pip install -e examples/plugins/temple-llava-onevision")
    pairs = mixed_pairs(tmp_path / "videos")
    extra = {"attn_implementation": attention} if attention else {}
    backend = build_backend(family, preset="tiny-random", **extra)
    options = DPO.Options(batch_size=3, per_device_batch_size=3, max_steps=1, **SMALL)
    assert options.prefix_sharing and options.rpo_alpha == 1.0  # the defaults: packed rows, DPO + NLL
    trainer, collator = build_dpo_trainer(options, stage_context(backend, pairs, tmp_path / "0-dpo"))
    assert trainer.prefix_sharing
    with torch.random.fork_rng():  # a policy away from the reference (LoRA B starts at zero)
        torch.manual_seed(1)
        for name, p in trainer.model.named_parameters():
            if "lora_B" in name:
                p.data.normal_(0, 0.05)
    batch = collator(rows(pairs))
    lengths = batch["chosen_attention_mask"].sum(-1).tolist() + batch["rejected_attention_mask"].sum(-1).tolist()
    assert len(set(lengths)) == 6  # every row has its own length: both layouts pad

    trainer.model.eval()  # no LoRA dropout: both layouts see the same network
    both = run_both_ways(trainer, batch)
    packed, concatenated = both[True], both[False]
    # Policy and reference forwards both ran the packed rows: 3 rows, not 6, and fewer tokens.
    assert [r[0] for r in packed["lm_rows"]] == [3, 3] and [r[0] for r in concatenated["lm_rows"]] == [6, 6]
    assert packed["lm_rows"][0][0] * packed["lm_rows"][0][1] < 0.75 * concatenated["lm_rows"][0][0] * concatenated["lm_rows"][0][1]
    for ours, theirs in zip(packed["logps"], concatenated["logps"]):  # policy, then reference
        assert ours.shape == theirs.shape
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)  # every token of every answer
        assert int((ours != 0).sum()) == int((theirs != 0).sum()) > 30
        # per answer, as TRL sums them in fp32: sums of up to ~300, whose fp32 spacing is 3e-5,
        # so 1e-5 or two fp32 steps (2.4e-7 of the sum)
        assert ours.sum(-1).tolist() == pytest.approx(theirs.sum(-1).tolist(), abs=1e-5, rel=2.4e-7)
    assert (packed["logps"][0] - packed["logps"][1]).abs().max() > 1e-2  # the policy is not the reference
    assert packed["loss"] == pytest.approx(concatenated["loss"], abs=1e-5)
    assert packed["grads"].keys() == concatenated["grads"].keys() and len(packed["grads"]) > 4
    for name, grad in packed["grads"].items():
        torch.testing.assert_close(grad, concatenated["grads"][name], atol=1e-5, rtol=0, msg=name)
    norm = lambda g: torch.sqrt(sum((v.double() ** 2).sum() for v in g.values())).item()
    assert norm(packed["grads"]) == pytest.approx(norm(concatenated["grads"]), rel=1e-6) and norm(packed["grads"]) > 1e-3


def test_three_training_steps_give_the_same_losses(tmp_path):
    """The dpo defaults (gradient checkpointing, DPO + NLL), 2 pairs per device: the same losses
    and gradient norms with packed rows as with concatenated rows."""
    pairs = mixed_pairs(tmp_path / "videos")[:2] * 3
    runs = {}
    for shared in (True, False):
        options = DPO.Options(**{**SMALL, "gradient_checkpointing": True}, batch_size=2, per_device_batch_size=2,
                              max_steps=3, prefix_sharing=shared)
        trainer, _ = build_dpo_trainer(options, stage_context(build_backend(preset="tiny-random"), pairs, tmp_path / str(shared)))
        assert trainer.prefix_sharing is shared
        trainer.train()
        runs[shared] = [v for h in trainer.state.log_history if "loss" in h for v in (h["loss"], h["grad_norm"])]
    assert len(runs[True]) == 6
    assert runs[True] == pytest.approx(runs[False], abs=1e-5)


class NoPrefixBackend(Qwen2VLBackend):
    """A backend that does not declare prefix sharing (as a third-party backend may not)."""

    supports_prefix_sharing = False


def test_a_backend_without_support_falls_back_and_says_so_once(tmp_path, caplog):
    videos = write_videos(tmp_path / "videos", 2)
    pairs = [Pair.from_dict(p) for p in easy_pairs(videos, per_video=1)]
    options = DPO.Options(batch_size=2, per_device_batch_size=2, max_steps=1, **SMALL)
    summaries = []
    with caplog.at_level("WARNING", logger="temple.train"):
        for k in range(2):
            backend = NoPrefixBackend(NoPrefixBackend.Options(preset="tiny-random"))
            trainer, _ = build_dpo_trainer(options, stage_context(backend, pairs, tmp_path / f"{k}-dpo"))
            trainer.train()
            summaries.append((trainer.prefix_sharing, trainer.prefix_sharing_off))
    assert summaries == [(False, "qwen2_vl: the backend does not declare supports_prefix_sharing")] * 2
    assert [r.getMessage() for r in caplog.records if "prefix sharing off" in r.getMessage()] == [
        "prefix sharing off (qwen2_vl: the backend does not declare supports_prefix_sharing): concatenated [chosen; rejected] rows instead"]


class TowerCounter:
    """Counts the videos the vision tower encodes."""

    def __init__(self, trainer):
        base = trainer.model.get_base_model()
        self.videos = 0
        tower = base.get_submodule(trainer.backend.vision_module_names(base)[0])
        self.handle = tower.register_forward_pre_hook(self.hook, with_kwargs=True)

    def hook(self, module, args, kwargs):
        self.videos += int(kwargs["grid_thw"].shape[0])


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen3_vl"])
def test_vision_once_per_video_gives_the_same_losses_with_fewer_tower_runs(tmp_path, family):
    """3 videos x 3 pairs; 3 steps of 3 pairs, one pair per micro-batch (accumulation 3). With
    vision_once_per_video the pairs of a video come together and the tower runs once per video
    per step; against per-pair features in the very same order (sequential sampler): the same
    losses and gradient norms."""
    videos = write_videos(tmp_path / "videos", 3)
    pairs = [Pair.from_dict(p) for p in easy_pairs(videos, per_video=3, perturbations=("drop", "shuffle", "reverse"))]
    sampler = VideoGroupedSampler([p.video_path for p in pairs], seed=0)
    order = list(sampler)
    assert sorted(order) == list(range(9))
    assert [pairs[i].video_path for i in order[::3]] == [pairs[i].video_path for i in order[1::3]] == [pairs[i].video_path for i in order[2::3]]
    sampler.set_epoch(1)
    assert list(sampler) != order  # a new order per epoch
    # Two processes, one pair per micro-batch: accelerate deals micro-batch j to process j % 2;
    # each video's pairs must land on one process, one after another in its stream.
    for count, seed in ((13, 3), (10, 0), (9, 1)):
        videos = [f"v{i % 5}" for i in range(count)]
        dealt = list(VideoGroupedSampler(videos, seed=seed, per_device=1, world=2))
        assert sorted(dealt) == list(range(count))
        streams = [[videos[i] for i in dealt[p::2]] for p in (0, 1)]
        runs = [v for stream in streams for k, v in enumerate(stream) if k == 0 or stream[k - 1] != v]
        # every video is one run in one stream, but for at most one split to even out the streams
        assert set(runs) == set(videos) and len(runs) <= len(set(videos)) + 1

    common = dict(SMALL, batch_size=3, per_device_batch_size=1, max_steps=3)
    runs = {}
    for once, data, extra in ((True, pairs, {}), (False, [pairs[i] for i in order], {"args": {"train_sampling_strategy": "sequential"}})):
        trainer, _ = build_dpo_trainer(DPO.Options(**common, **extra, vision_once_per_video=once),
                                       stage_context(build_backend(family, preset="tiny-random"), data, tmp_path / str(once)))
        counter = TowerCounter(trainer)
        trainer.train()
        counter.handle.remove()
        runs[once] = ([v for h in trainer.state.log_history if "loss" in h for v in (h["loss"], h["grad_norm"])], counter.videos)
    assert len(runs[True][0]) == 6
    assert runs[True][0] == pytest.approx(runs[False][0], abs=1e-5)
    assert (runs[True][1], runs[False][1]) == (3, 9)  # once per video per step vs once per pair


def test_the_generic_machinery_suits_qwen3_vl_models():
    """For the qwen3_vl backend (a Qwen-family backend inherits ``QwenVLBackend.position_ids``):
    a tiny ``Qwen3VLForConditionalGeneration`` (interleaved M-RoPE, a video split per temporal
    patch with timestamp tokens between, deepstack features) gives the same logits on packed
    rows as on the concatenated rows, for two pairs whose videos, prompts and answers differ."""
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    from temple_core.training.prefix_sharing import PackedPairs

    start, pad, end = 97, 98, 99
    config = Qwen3VLConfig(
        text_config=dict(vocab_size=100, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, head_dim=16, max_position_embeddings=4096,
                         rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3], "mrope_interleaved": True}),
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64, patch_size=14,
                           spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=64, deepstack_visual_indexes=[0]),
        image_token_id=96, video_token_id=pad, vision_start_token_id=start, vision_end_token_id=end, tie_word_embeddings=False)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = Qwen3VLForConditionalGeneration(config).eval()
        grids = torch.tensor([[2, 2, 4], [3, 2, 4]])  # 2 and 3 temporal patches of 2 x 4 patches (2 tokens each)
        pixels = torch.randn(int(grids.prod(-1).sum()), 3 * 2 * 14 * 14)

    def prompt(grid, words):
        ids = [5, 6, 7]
        for t in range(grid[0]):  # "<t seconds>" then the frame's tokens, as Qwen3-VL's processor writes a video
            ids += [10 + t, start] + [pad] * (grid[1] * grid[2] // 4) + [end]
        return ids + list(range(20, 20 + words))

    prompts = [prompt(grids[0].tolist(), 3), prompt(grids[1].tolist(), 6)]
    answers = [([30, 31, 32, 33, 34, 35, 36], [40, 41]), ([50, 51], [60, 61, 62, 63, 64])]
    rows_ = [p + a[0] for p, a in zip(prompts, answers)] + [p + a[1] for p, a in zip(prompts, answers)]
    length = max(map(len, rows_))
    ids = torch.tensor([r + [0] * (length - len(r)) for r in rows_])
    mask = torch.tensor([[1] * len(r) + [0] * (length - len(r)) for r in rows_])
    completion = torch.zeros_like(ids)
    for i, r in enumerate(rows_):
        completion[i, len(prompts[i % 2]) : len(r)] = 1
    types = (ids == pad).long() * 2
    backend = Qwen2VLBackend(Qwen2VLBackend.Options(preset="tiny-random"))  # its position_ids only; nothing loaded
    with torch.no_grad():
        expected = model(input_ids=ids, attention_mask=mask, mm_token_type_ids=types,
                         pixel_values_videos=pixels.repeat(2, 1), video_grid_thw=grids.repeat(2, 1)).logits
        packed = PackedPairs(ids, mask, completion)
        positions = backend.position_ids(model, ids, mask, {"mm_token_type_ids": types}, {"video_grid_thw": grids}, repeat=2)
        logits = model(input_ids=packed.to_packed(ids, 0), attention_mask=packed.attention_mask(),
                       position_ids=packed.to_packed(positions, 0), mm_token_type_ids=packed.to_packed(types, 0),
                       pixel_values_videos=pixels, video_grid_thw=grids).logits
    assert packed.packed_length < length * 2
    torch.testing.assert_close(packed.to_view(logits)[mask.bool()], expected[mask.bool()], atol=1e-5, rtol=0)
