"""``score_texts``: batched log-likelihoods of answers equal an unpadded forward of each
prompt + answer alone, summed over the answer's tokens by hand; batching, left padding and the
shared vision pass change nothing; the greedy flag is the argmax."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from testkit.training import build_backend

TEXTS = ["red then green then blue.", "blue.", "The video shows a red scene, then a green scene, then a blue scene.", "a", "first second third"]


def reference(backend, conversation, text):
    """Sum of log p(answer token | all before) from one plain forward of the whole sequence."""
    tok = backend.processor
    items = [c for c in conversation[0]["content"] if c["type"] in ("video", "image")]
    visuals = [backend.visual_inputs(c) for c in items]
    prompt = tok(backend.render(conversation, visuals, True), add_special_tokens=False)["input_ids"]
    # A last answer as ms-swift (the release) tokenises it: text + end of turn, nothing after.
    answer = tok(text + backend.end_of_turn, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prompt + answer])
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    inputs.update({k: torch.tensor([v]) for k, v in backend.row_extras(prompt + answer).items()})
    inputs.update(backend.visual_batch(visuals))
    with torch.no_grad():
        logp = backend.model(**inputs).logits[0].float().log_softmax(-1)
    total = sum(logp[len(prompt) - 1 + j, t].item() for j, t in enumerate(answer))
    greedy = all(logp[len(prompt) - 1 + j].argmax().item() == t for j, t in enumerate(answer))
    return total, len(answer), greedy


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "internvl2_5"])
def test_scores_equal_an_unpadded_forward(family, videos):
    backend = build_backend(family, preset="tiny-random", fps=1.0, max_frames=4, max_pixels=3136)
    image = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    for content in ([{"type": "video", "path": str(videos[0])}], [{"type": "image", "image": image}, {"type": "video", "path": str(videos[1])}]):
        conversation = [{"role": "user", "content": [*content, {"type": "text", "text": "Describe the video."}]}]
        batched = backend.score_texts(conversation, TEXTS, batch_size=3)
        for text, score in zip(TEXTS, batched):
            total, tokens, greedy = reference(backend, conversation, text)
            assert score.tokens == tokens and score.greedy == greedy
            assert score.logprob == pytest.approx(total, abs=1e-3)
            assert score.mean == pytest.approx(total / tokens, abs=1e-4)
        single = [backend.score_texts(conversation, [t], batch_size=1)[0] for t in TEXTS]
        assert [s.logprob for s in single] == pytest.approx([s.logprob for s in batched], abs=1e-3)
    assert backend.score_texts(conversation, []) == []


def test_the_vision_tower_runs_once_per_prompt(videos):
    backend = build_backend("qwen2_vl", preset="tiny-random", fps=1.0, max_frames=4, max_pixels=3136)
    calls = []
    backend.model.model.visual.register_forward_hook(lambda *a: calls.append(1))
    rows = []
    backend.model.register_forward_pre_hook(lambda m, a, k: rows.append(k["input_ids"].shape[0]), with_kwargs=True)
    conversation = [{"role": "user", "content": [{"type": "video", "path": str(videos[2])}, {"type": "text", "text": "Describe."}]}]
    backend.score_texts(conversation, TEXTS * 3, batch_size=8)
    assert len(calls) == 1 and rows == [8, 7]
