"""The dpo trainer on a real tiny Qwen2-VL with real TRL: the loss is the release's sigmoid DPO
loss of the policy/reference log-probabilities plus the chosen answer's NLL (ms-swift's
``rpo_alpha`` 1.0; plain sigmoid with ``rpo_alpha: 0``), recomputed here from the model's full
logits; it learns easy pairs, and one vision pass per pair gives the same loss as four."""

from pathlib import Path

import attrs
import pytest
import torch
import torch.nn.functional as F

from temple_core.records import Pair
from temple_core.training.metrics import read_metrics
from temple_core.training.video_dpo import build_dpo_trainer
from temple_plugins.trainers.dpo import DPO
from testkit.training import build_backend, easy_pairs, stage_context, write_videos

STEPS = 40
BETA = 0.1


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A DPO stage trained for STEPS steps on easy pairs (lr far above the paper's)."""
    tmp = tmp_path_factory.mktemp("dpo")
    videos = write_videos(tmp / "videos", 4)
    pairs = [Pair.from_dict(p) for p in easy_pairs(videos, per_video=2)]
    backend = build_backend(preset="tiny-random")
    options = DPO.Options(
        beta=BETA, lr=2e-3, batch_size=2, per_device_batch_size=2, max_steps=STEPS, warmup_ratio=0.0,
        lr_scheduler="constant", gradient_checkpointing=False, max_length=512, fps=1.0, save_steps=1000,
    )
    tctx = stage_context(backend, pairs, tmp / "0-dpo")
    trainer, collator = build_dpo_trainer(options, tctx)
    trainer.train()
    return trainer, collator, pairs, tctx


def rows(pairs):
    return [{"pair_id": p.pair_id, "video_path": p.video_path, "prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected} for p in pairs]


def completion_logps(trainer, model, batch, side, count=False):
    """Summed log-probabilities of one side's completion tokens, from a plain forward
    (full logits, raw video tensors: none of the trainer's shortcuts); with ``count``, also the
    number of completion tokens per row."""
    inputs = {k[len(side) + 1 :]: v for k, v in batch.items() if k.startswith(side + "_")}
    shared = {k: v for k, v in batch.items() if not k.startswith(("chosen_", "rejected_"))}
    labels = inputs.pop("labels")
    inputs.update(trainer.backend.model_inputs(shared, vision_features=None, repeat=1))
    logits = model(**inputs).logits[:, :-1].float()
    target = labels[:, 1:]
    per_token = torch.log_softmax(logits, -1).gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    summed = (per_token * (target != -100)).sum(-1)
    return (summed, (target != -100).sum(-1)) if count else summed


def hand_loss(trainer, model, batch, beta, rpo_alpha):
    """The release's loss (ms-swift 3.7 on TRL 0.20), by hand: the mean over pairs of
    ``-logsigmoid(beta * (policy - reference log-ratio margin))`` plus ``rpo_alpha`` x the NLL of
    the chosen answers, ``-sum(log p) / count`` over every chosen answer token of the batch."""
    pc, n_chosen = completion_logps(trainer, model, batch, "chosen", count=True)
    pr = completion_logps(trainer, model, batch, "rejected")
    with model.disable_adapter():  # the reference: the same weights without the adapter
        rc, rr = completion_logps(trainer, model, batch, "chosen"), completion_logps(trainer, model, batch, "rejected")
    logits = beta * ((pc - rc) - (pr - rr))
    nll = -pc.sum() / n_chosen.sum()
    return (-F.logsigmoid(logits).mean() + rpo_alpha * nll).item(), dict(pc=pc, rc=rc, pr=pr, rr=rr, logits=logits, nll=nll.item())


def test_reported_loss_is_sigmoid_dpo_plus_chosen_nll(trained):
    trainer, collator, pairs, _ = trained
    assert (trainer.loss_types, trainer.loss_weights) == (["sigmoid", "sft"], [1.0, 1.0])  # the defaults
    # Answers of different lengths in one batch: the NLL is a token mean, not a mean of pair means.
    mixed = [attrs.evolve(p, chosen=p.chosen + " and then red again." * (i % 2)) for i, p in enumerate(pairs[:4])]
    batch = collator(rows(mixed))
    model = trainer.model
    assert trainer.ref_model is None  # the reference is this model with its adapter off, not a copy
    with torch.no_grad():
        loss = trainer.compute_loss(model, dict(batch)).item()
        mode = "train" if model.training else "eval"
        margin = trainer._metrics[mode]["rewards/margins"][-1]
        chosen_reward = trainer._metrics[mode]["rewards/chosen"][-1]
        expected, parts = hand_loss(trainer, model, batch, BETA, 1.0)
    assert abs((parts["pc"] - parts["rc"]).abs().max().item()) > 1e-2  # the policy has moved away from the reference
    assert parts["nll"] > 0.05  # the NLL term is not negligible here
    assert loss == pytest.approx(expected, abs=1e-5)
    assert margin == pytest.approx(parts["logits"].mean().item(), abs=1e-5)
    assert chosen_reward == pytest.approx((BETA * (parts["pc"] - parts["rc"])).mean().item(), abs=1e-5)


def test_plain_sigmoid_loss_with_rpo_alpha_zero(tmp_path):
    videos = write_videos(tmp_path / "videos", 2)
    pairs = [Pair.from_dict(p) for p in easy_pairs(videos)]
    options = DPO.Options(beta=BETA, rpo_alpha=0.0, lr=2e-3, batch_size=2, per_device_batch_size=2, max_steps=3,
                          warmup_ratio=0.0, lr_scheduler="constant", gradient_checkpointing=False, max_length=512,
                          fps=1.0, save_steps=1000)
    trainer, collator = build_dpo_trainer(options, stage_context(build_backend(preset="tiny-random"), pairs, tmp_path / "0-dpo"))
    assert trainer.loss_types == ["sigmoid"]
    trainer.train()
    batch = collator(rows(pairs[:4]))
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, dict(batch)).item()
        expected, parts = hand_loss(trainer, trainer.model, batch, BETA, 0.0)
    assert abs((parts["pc"] - parts["rc"]).abs().max().item()) > 1e-3
    assert loss == pytest.approx(expected, abs=1e-5)


def test_easy_pairs_are_learned(trained):
    _, _, _, tctx = trained
    metrics = read_metrics(tctx.out_dir)
    assert [m["step"] for m in metrics] == list(range(1, STEPS + 1))
    loss = [m["loss"] for m in metrics]
    accuracy = [m["rewards/accuracies"] for m in metrics]
    # Step 0: policy == reference, so the DPO term is log 2; every chosen answer is the same
    # sentence, so the NLL is -logps/chosen (summed per answer) over its token count.
    n_chosen = len(tctx.backend.processor("red then green then blue.<|im_end|>", add_special_tokens=False)["input_ids"])
    assert loss[0] == pytest.approx(0.6931 - metrics[0]["logps/chosen"] / n_chosen, abs=1e-3)
    assert sum(loss[-5:]) / 5 < sum(loss[:5]) / 5 - 0.1
    assert sum(accuracy[-10:]) / 10 > 0.9 > sum(accuracy[:3]) / 3
    for key in ("grad_norm", "learning_rate", "rewards/chosen", "rewards/rejected", "rewards/margins"):
        assert all(m[key] is not None for m in metrics), key


class VisionCounter:
    """Counts the videos the vision tower encodes (rows of the grid it is given)."""

    def __init__(self, module):
        self.videos = 0
        self.handle = module.register_forward_pre_hook(self.hook, with_kwargs=True)

    def hook(self, module, args, kwargs):
        grid = kwargs.get("grid_thw")
        self.videos += int(grid.shape[0]) if grid is not None else 1


def test_one_vision_pass_per_pair_gives_the_same_loss(trained):
    trainer, collator, pairs, _ = trained
    batch = collator(rows(pairs[:4]))
    model = trainer.model
    base = model.get_base_model()
    (vision_name,) = trainer.backend.vision_module_names(base)[:1]
    counter = VisionCounter(base.get_submodule(vision_name))
    losses = {}
    with torch.no_grad():
        for reuse, packed in ((True, False), (False, False), (False, True)):
            trainer.reuse_vision_features, trainer.prefix_sharing = reuse, packed
            counter.videos = 0
            losses[reuse, packed] = (trainer.compute_loss(model, dict(batch)).item(), counter.videos)
    trainer.reuse_vision_features = trainer.prefix_sharing = True
    counter.handle.remove()
    assert losses[True, False][0] == pytest.approx(losses[False, False][0], abs=1e-5)
    assert losses[False, True][0] == pytest.approx(losses[False, False][0], abs=1e-5)
    assert losses[True, False][1] == 4  # 4 pairs: one pass each
    assert losses[False, False][1] == 16  # chosen + rejected, policy + reference
    assert losses[False, True][1] == 8  # one packed row per pair, policy + reference


@pytest.mark.parametrize("family", ["qwen2_5_vl", "internvl2_5", "qwen3_vl"])
def test_other_backend_families_train_with_the_same_trainers(tmp_path, family):
    """DPO (vision frozen, one vision pass per pair, same loss as four) and SFT on the other families."""
    from temple_core.training.data import load_sft
    from temple_core.training.video_dpo import train_dpo
    from temple_plugins.trainers.sft import SFT
    from testkit.training import state_dict_of

    videos = write_videos(tmp_path / "videos", 2)
    pairs = [Pair.from_dict(p) for p in easy_pairs(videos, per_video=1)]
    small = dict(lr=1e-3, batch_size=2, per_device_batch_size=2, max_steps=2, warmup_ratio=0.0,
                 gradient_checkpointing=False, max_length=1024, fps=1.0, save_steps=1000)
    backend = build_backend(family, preset="tiny-random")
    start = {k: v.clone() for k, v in backend.load_model().state_dict().items()}
    vision = tuple(n + "." for n in backend.vision_module_names(backend.load_model()))
    trainer, collator = build_dpo_trainer(DPO.Options(**small), stage_context(backend, pairs, tmp_path / "0-dpo"))
    trainer.train()
    batch = collator(rows(pairs))
    base = trainer.model.get_base_model()
    counter = VisionCounter(base.get_submodule(trainer.backend.vision_module_names(base)[0]))
    with torch.no_grad():
        reused = trainer.compute_loss(trainer.model, dict(batch)).item()
        passes = counter.videos
        trainer.reuse_vision_features = False
        repeated = trainer.compute_loss(trainer.model, dict(batch)).item()
        passes = (passes, counter.videos - passes)
    counter.handle.remove()
    assert reused == pytest.approx(repeated, abs=1e-5)
    if family != "internvl2_5":  # Qwen towers take one grid row per video: count videos
        # 2 pairs: once each; or, for policy and reference, chosen and rejected as two rows --
        # or as one packed row when prefix sharing is on (the default where the backend has it).
        assert passes == (2, 2 * 2 * (1 if trainer.prefix_sharing else 2))

    backend = build_backend(family, preset="tiny-random")
    train_dpo(DPO.Options(**small), stage_context(backend, pairs, tmp_path / "dpo"))
    merged = state_dict_of(tmp_path / "dpo" / "merged", family)
    names = [k for k in start if k.startswith(vision)]
    assert names and all(torch.equal(merged[k], start[k]) for k in names)
    assert any(not torch.equal(merged[k], start[k]) for k in start if not k.startswith(vision))

    samples = load_sft(Path(__file__).resolve().parents[2] / "examples" / "sft" / "sample.jsonl")
    sft = SFT(SFT.Options(**{**small, "max_length": 2048}))
    summary = sft.train(stage_context(build_backend(family, preset="tiny-random"), samples, tmp_path / "1-sft", kind="sft", name="1-sft"))
    assert summary["steps"] == 2
    merged = state_dict_of(tmp_path / "1-sft" / "merged", family)
    assert any(not torch.equal(merged[k], start[k]) for k in names)  # SFT trains the vision tower


def test_training_trajectory_is_the_same_with_one_vision_pass(tmp_path):
    """Three steps with the dpo defaults' gradient checkpointing: the same losses and gradient
    norms whether the vision tower runs once per pair or four times."""
    videos = write_videos(tmp_path / "videos", 2)
    pairs = [Pair.from_dict(p) for p in easy_pairs(videos)]
    runs = {}
    for reuse in (True, False):
        options = DPO.Options(lr=1e-3, batch_size=2, per_device_batch_size=2, max_steps=3, warmup_ratio=0.0,
                              max_length=1024, fps=1.0, reuse_vision_features=reuse, save_steps=1000)
        assert options.gradient_checkpointing
        trainer, _ = build_dpo_trainer(options, stage_context(build_backend(preset="tiny-random"), pairs, tmp_path / str(reuse)))
        trainer.train()
        runs[reuse] = [v for h in trainer.state.log_history if "loss" in h for v in (h["loss"], h["grad_norm"])]
    assert len(runs[True]) == 6
    assert runs[True] == pytest.approx(runs[False], abs=1e-5)
