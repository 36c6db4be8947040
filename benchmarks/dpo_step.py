"""Time per DPO step and peak memory of the DPO paths, interleaved step by step in one run:

* ``today``  -- the default before prefix sharing: the frozen vision tower's output reused once
  per pair (``reuse_vision_features``), TRL's concatenated ``[chosen; rejected]`` rows;
* ``prefix`` -- the default now: reuse + one packed row ``[prompt; chosen; rejected]`` per pair
  (``prefix_sharing``);
* ``prefix+video`` -- prefix + the tower once per video per step (``vision_once_per_video``;
  here every pair of a step shows the same video, so it runs once per step instead of once per
  pair);
* ``4x`` -- no reuse, concatenated rows: the tower runs for chosen + rejected, policy + reference.

    python benchmarks/dpo_step.py --checkpointing                  # tiny, mid-2b, mid-7b; the dpo defaults
    python benchmarks/dpo_step.py --models mid-2b --settings today,prefix --pairs 1 --steps 2 \
        --frames 100 --size 308 --height 280 --answer-tokens 300 --checkpointing   # the paper's prefix size

Times: one process per model alternates the settings step by step (so all meet the same load
from anything else on the machine) and reports the median step of each, in wall-clock seconds
and in the process's CPU seconds (with one thread, the latter moves much less when other work
shares the machine), and how a step of each
splits into the vision tower, building the batch, and the rest (the language model's forward and
backward for policy and reference, and the optimizer step); after training (policy != reference)
it computes the loss of one batch each way. Peak memory: one more process per (model, setting),
so each peak RSS is its own.

Models: random weights of the backend's own classes (``--backend qwen2_vl`` or ``qwen3_vl``),
loaded through ``path:``, at the proportions of ``benchmarks/random_models.py``: ``tiny`` (the
backend's ``tiny-random`` preset), ``mid-2b``, ``mid-7b`` (Qwen2-VL) / ``mid-8b`` (Qwen3-VL).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
from random_models import SIZES, build_model_dir  # benchmarks/, next to this script

def write_video(path: Path, frames: int, size: int, height: int | None = None) -> None:
    import av
    import numpy as np

    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(2))
        stream.width, stream.height = size, height or size
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            image = (rng.random((height or size, size, 3)) * 255).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


SETTINGS = {
    "today": dict(reuse_vision_features=True, prefix_sharing=False, vision_once_per_video=False),
    "prefix": dict(reuse_vision_features=True, prefix_sharing=True, vision_once_per_video=False),
    "prefix+video": dict(reuse_vision_features=True, prefix_sharing=True, vision_once_per_video=True),
    "4x": dict(reuse_vision_features=False, prefix_sharing=False, vision_once_per_video=False),
}


def answer(text: str, tokens: int, tokenizer) -> str:
    """``text`` repeated until it is at least ``tokens`` tokens long (0: as it is)."""
    out = text
    while tokens and len(tokenizer(out, add_special_tokens=False)["input_ids"]) < tokens:
        out += " " + text
    return out


def child(args) -> None:
    """One model, one or more settings: train, time each step; print one JSON line."""
    import torch

    torch.set_num_threads(args.threads)
    from temple_core.config import Structurer
    from temple_core.plugins import get_plugin_manager
    from temple_core.records import Pair
    from temple_core.store import TrainStageLayout
    from temple_core.training.context import TrainStageContext
    from temple_core.training.video_dpo import build_dpo_trainer
    from temple_plugins.trainers.dpo import DPO
    from transformers import TrainerCallback

    settings = args.settings.split(",")
    plugins = get_plugin_manager()
    backend = Structurer(plugins).component("backends", {"name": args.backend, "path": args.model_dir}, "bench").build(plugins)
    chosen = answer("First a red car drives past, then a dog runs across the street and a man opens a door.", args.answer_tokens, backend.processor)
    rejected = answer("A man opens a door, then a red car drives past.", args.answer_tokens, backend.processor)
    pairs = [
        Pair(pair_id=f"p{i}", video_id="v", video_path=args.video, prompt="Describe the video in detail, in order.",
             chosen=chosen, rejected=rejected, perturbation="shuffle", difficulty=16, kept_indices=[], generator="bench")
        for i in range(args.pairs * (args.steps + 1))
    ]

    class Timer(TrainerCallback):
        """Times each optimizer step; the setting changes step by step (round robin), so all
        settings meet the same load from whatever else runs on the machine."""

        def __init__(self):
            self.times = {name: [] for name in settings}
            self.cpu = {name: [] for name in settings}
            self.parts = {name: [] for name in settings}
            self.trainer = None
            self.count = 0

        def on_step_begin(self, *a, **k):
            self.setting = settings[self.count % len(settings)]
            self.count += 1
            for key, value in SETTINGS[self.setting].items():
                setattr(self.trainer, key, value)
            self.vision = self.batch = 0.0
            self.start, self.cpu_start = time.perf_counter(), time.process_time()

        def on_step_end(self, *a, **k):
            total = time.perf_counter() - self.start
            self.times[self.setting].append(total)
            self.cpu[self.setting].append(time.process_time() - self.cpu_start)
            self.parts[self.setting].append((self.vision, self.batch - self.vision, total))

    timer = Timer()
    tctx = TrainStageContext(index=0, name="0-dpo", trainer="dpo", where="bench", backend=backend, start="bench",
                             kind="pairs", data=pairs, layout=TrainStageLayout(Path(args.out)), seed=0, progress=False, callbacks=[timer])
    first = SETTINGS[settings[0]]
    options = DPO.Options(lr=1e-3, batch_size=args.pairs, per_device_batch_size=args.pairs, max_steps=args.steps,
                          warmup_ratio=0.0, lr_scheduler="constant", gradient_checkpointing=args.checkpointing,
                          max_length=32768, fps=2.0, max_frames=args.frames, max_pixels=args.size * (args.height or args.size),
                          save_steps=10_000, reuse_vision_features=True, prefix_sharing=True,
                          vision_once_per_video=any(SETTINGS[n]["vision_once_per_video"] for n in settings))
    trainer, collator = build_dpo_trainer(options, tctx)
    assert trainer.prefix_sharing, trainer.prefix_sharing_off
    for key, value in first.items():
        setattr(trainer, key, value)
    timer.trainer = trainer
    # Time spent in the vision tower and in building the batch (the rest is the language model).
    vision_features, video_batch = trainer.vision_features, trainer.video_batch

    def timed_vision(*a, **k):
        start = time.perf_counter()
        try:
            return vision_features(*a, **k)
        finally:
            timer.vision += time.perf_counter() - start

    def timed_batch(*a, **k):
        start = time.perf_counter()
        try:
            return video_batch(*a, **k)
        finally:
            timer.batch += time.perf_counter() - start

    trainer.vision_features, trainer.video_batch = timed_vision, timed_batch
    batch = collator([{"pair_id": p.pair_id, "video_path": p.video_path, "prompt": p.prompt, "chosen": p.chosen,
                       "rejected": p.rejected} for p in pairs[: args.pairs]])
    trainer.train()
    losses = {}
    with torch.no_grad():  # after training, policy != reference: the loss of one batch each way
        for name in settings:
            for key, value in SETTINGS[name].items():
                setattr(trainer, key, value)
            losses[name] = trainer.compute_loss(trainer.model, dict(batch)).item()

    def median(values):
        values = sorted(values[1:] if len(values) > 2 else values)  # the first step warms up
        return values[len(values) // 2] if values else None

    def parts(name):
        rows = timer.parts[name][1:] if len(timer.parts[name]) > 2 else timer.parts[name]
        vision, build, total = (sum(r[i] for r in rows) for i in range(3))
        return {"vision": vision / total, "batch": build / total, "language_model": (total - vision - build) / total}

    lengths = batch["chosen_attention_mask"].sum(-1).tolist(), batch["rejected_attention_mask"].sum(-1).tolist()
    prompt = int((batch["chosen_labels"][0] == -100).sum())
    print("RESULT " + json.dumps({
        "seconds": {name: median(timer.times[name]) for name in settings},
        "cpu_seconds": {name: median(timer.cpu[name]) for name in settings},
        "steps": {name: len(timer.times[name]) for name in settings},
        "parts": {name: parts(name) for name in settings},
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "losses": losses,
        "video_tokens": int(batch["video_grid_thw"].prod(-1).sum() // 4 // args.pairs),
        "prompt_tokens": prompt,
        "answer_tokens": [lengths[0][0] - prompt, lengths[1][0] - prompt],
        "params_m": sum(p.numel() for p in trainer.model.parameters()) / 1e6,
    }))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default="qwen2_vl", choices=sorted(SIZES))
    parser.add_argument("--models", default=None, help="default: tiny and every mid size of the backend")
    parser.add_argument("--settings", default="today,prefix,prefix+video", help=f"among {', '.join(SETTINGS)}; the first is the baseline")
    parser.add_argument("--steps", type=int, default=4, help="timed steps per setting (the first of each is dropped)")
    parser.add_argument("--pairs", type=int, default=2, help="pairs per step")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=224, help="frame width (and height) in pixels")
    parser.add_argument("--height", type=int, default=None, help="frame height in pixels (default: --size)")
    parser.add_argument("--answer-tokens", type=int, default=0, help="answers repeated to at least this many tokens (0: one sentence)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--checkpointing", action="store_true", help="gradient checkpointing (the dpo default)")
    parser.add_argument("--no-memory", action="store_true", help="skip the per-setting peak-memory processes")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    parser.add_argument("--video", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    settings = args.settings.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        video = tmp / "video.mp4"
        write_video(video, args.frames, args.size, args.height)
        print(f"{args.backend}; video: {args.frames} frames {args.size}x{args.height or args.size}; {args.pairs} pairs/step; {args.steps} steps per setting; "
              f"{args.threads} thread(s); gradient checkpointing {'on' if args.checkpointing else 'off'}; baseline {settings[0]}")
        for name in (args.models or ",".join(["tiny", *SIZES[args.backend]])).split(","):
            model_dir = build_model_dir(args.backend, name, tmp)

            def run(which: str, steps: int) -> dict:
                command = [sys.executable, __file__, "--child", "--backend", args.backend, "--model-dir", model_dir, "--video", str(video),
                           "--out", str(tmp / f"{name}-{which.replace(',', '_')}"), "--settings", which,
                           "--steps", str(steps), "--pairs", str(args.pairs), "--frames", str(args.frames),
                           "--size", str(args.size), "--threads", str(args.threads), "--answer-tokens", str(args.answer_tokens)]
                if args.height:
                    command += ["--height", str(args.height)]
                if args.checkpointing:
                    command.append("--checkpointing")
                done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
                line = next((l for l in done.stdout.splitlines() if l.startswith("RESULT ")), None)
                if line is None:
                    raise SystemExit(f"{name} {which} failed:\n{done.stderr[-3000:]}")
                return json.loads(line[7:])

            # All settings alternating step by step, for the times and the loss check; then one
            # process per setting for its own peak memory.
            ab = run(args.settings, args.steps * len(settings))
            memory = {} if args.no_memory else {s: run(s, 2)["peak_rss_mb"] for s in settings}
            base = settings[0]
            print(f"{name}: {ab['params_m']:.1f}M params, {ab['video_tokens']} video tokens, prompt {ab['prompt_tokens']} tokens, "
                  f"answers {ab['answer_tokens']} tokens")
            for s in settings:
                part = ab["parts"][s]
                print(f"  {s:13} {ab['seconds'][s]:8.3f} s/step ({ab['steps'][s]} steps) {ab['seconds'][base] / ab['seconds'][s]:5.2f}x | "
                      f"CPU {ab['cpu_seconds'][s]:8.3f} s {ab['cpu_seconds'][base] / ab['cpu_seconds'][s]:5.2f}x | "
                      f"vision {part['vision']:5.1%} batch {part['batch']:5.1%} LM+rest {part['language_model']:5.1%} | "
                      f"peak {memory.get(s, float('nan')):6.0f} MB | loss {ab['losses'][s]:.6f} "
                      f"(|diff| {abs(ab['losses'][s] - ab['losses'][base]):.1e})", flush=True)


if __name__ == "__main__":
    main()
