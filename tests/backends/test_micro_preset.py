"""The micro preset (temple_core/models/micro.py): deterministic, keyed, and a real Qwen2-VL.

A reduced pre-training ($TEMPLE_MICRO_SETTINGS: a few steps on a few videos) keeps this fast;
the full build runs the same code with more steps (``python -m temple_core.models.micro``).
"""

import json
import os
import subprocess
import sys

import torch
from safetensors.torch import load_file

from temple_core.models import micro
from temple_core.plugins import get_plugin_manager

REDUCED = json.dumps({"steps": 3, "videos": 3, "checks": 2, "batch_size": 4})


def build(monkeypatch, cache, seed=0, hash_seed="0"):
    """Build the preset as a user does, in a process of its own (``python -m
    temple_core.models.micro``), then return a backend on it and its folder. Each build gets
    its own ``PYTHONHASHSEED``: nothing in a build may depend on hash order."""
    monkeypatch.setenv("TEMPLE_CACHE", str(cache))
    monkeypatch.setenv(micro.SETTINGS_ENV, REDUCED)
    done = subprocess.run([sys.executable, "-m", "temple_core.models.micro", "--seed", str(seed)],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": hash_seed})
    assert done.returncode == 0, done.stderr[-2000:]
    pm = get_plugin_manager()
    backend = pm.build("backends", "qwen2_vl", pm.get("backends", "qwen2_vl").options(preset="micro", preset_seed=seed))
    folder = backend.preset_dir()  # the folder the process built: nothing is built here
    assert str(folder) in done.stdout
    return backend, folder


def weights(folder):
    return load_file(str(folder / "model.safetensors"))


def test_two_builds_with_one_seed_are_bit_identical(monkeypatch, tmp_path):
    torch.set_num_threads(1)
    _, a = build(monkeypatch, tmp_path / "a", hash_seed="1")
    _, b = build(monkeypatch, tmp_path / "b", hash_seed="2")
    _, c = build(monkeypatch, tmp_path / "c", seed=1)
    wa, wb, wc = weights(a), weights(b), weights(c)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert any(not torch.equal(wa[k], wc[k]) for k in wa)  # another seed, other weights
    assert (a / "tokenizer.json").read_bytes() == (b / "tokenizer.json").read_bytes()
    assert a.name == b.name and c.name.endswith("-seed1")
    card = json.loads((a / "micro_card.json").read_text())
    assert card["settings"]["steps"] == 3 and set(card["checks"]) == {"first_clip", "next_clip", "summary", "video_recall"}
    # The build key follows the settings: another setting never reuses this build.
    monkeypatch.setenv(micro.SETTINGS_ENV, json.dumps({"steps": 0, "videos": 1, "checks": 1}))
    assert micro.key() != a.name.split("-")[2]


def test_the_micro_model_is_a_qwen2_vl_that_answers_the_captioners_conversation_greedily(monkeypatch, tmp_path):
    backend, folder = build(monkeypatch, tmp_path / "a")
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["Qwen2VLForConditionalGeneration"]
    assert 1_000_000 < sum(p.numel() for p in backend.load_model().parameters()) < 5_000_000
    # The captioner's own conversation on the true clips of a world video, through chat: a
    # greedy answer, the same on a second call (its text is not checked: a few steps of
    # pre-training make no captioner).
    pool = micro.load_pool(0, 1, tmp_path / "pool", split="heldout")
    conversation = micro.contextual_captioner().clip_conversation(pool[0].clips, (None, 0))
    (answer,) = backend.chat([conversation], max_new_tokens=8, do_sample=False)
    (again,) = backend.chat([conversation], max_new_tokens=8, do_sample=False)
    assert isinstance(answer, str) and answer == again
