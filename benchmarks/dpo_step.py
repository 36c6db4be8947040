"""Time per DPO step and peak memory, with the frozen vision tower's output reused once per
pair (``reuse_vision_features``) vs computed four times (chosen + rejected, policy + reference).

    python benchmarks/dpo_step.py                       # every model below, CPU, both settings
    python benchmarks/dpo_step.py --models mid-2b --steps 6 --frames 16 --size 224

Times: one process per model alternates the two settings step by step (so both meet the
same load from anything else on the machine) and reports the median step of each; after
training (policy != reference) it computes the loss of one batch both ways. Peak memory:
one more process per (model, setting), so each peak RSS is its own.

    python benchmarks/dpo_step.py --backend qwen3_vl --models tiny,mid-2b,mid-8b

Models: random weights of the backend's own classes (``--backend``: qwen2_vl, qwen3_vl),
loaded through ``path:``; ``tiny`` is its ``tiny-random`` preset, ``mid-*`` scale a release's
proportions down (``benchmarks/random_models.py``): ``mid-2b``, the tower costs about as much
as the language model per video token or more; ``mid-7b`` (Qwen2-VL) / ``mid-8b`` (Qwen3-VL),
~0.3-0.4x, so there is less to save.
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

from random_models import SIZES, build_model_dir  # noqa: E402  (benchmarks/, next to this script)

def write_video(path: Path, frames: int, size: int) -> None:
    import av
    import numpy as np

    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(2))
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            image = (rng.random((size, size, 3)) * 255).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def child(args) -> None:
    """One (model, setting): train ``steps`` steps, time each; print one JSON line."""
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

    plugins = get_plugin_manager()
    backend = Structurer(plugins).component("backends", {"name": args.backend, "path": args.model_dir}, "bench").build(plugins)
    pairs = [
        Pair(pair_id=f"p{i}", video_id="v", video_path=args.video, prompt="Describe the video in detail, in order.",
             chosen="First a red car drives past, then a dog runs across the street and a man opens a door.",
             rejected="A man opens a door, then a red car drives past.", perturbation="shuffle", difficulty=16,
             kept_indices=[], generator="bench")
        for i in range(args.pairs * (args.steps + 1))
    ]

    class Timer(TrainerCallback):
        """Times each optimizer step. In ``ab`` mode the setting alternates step by step, so
        both settings meet the same load from whatever else runs on the machine."""

        def __init__(self):
            self.times = {True: [], False: []}
            self.trainer = None

        def on_step_begin(self, *a, **k):
            if args.mode == "ab":
                self.trainer.reuse_vision_features = self.setting = (len(self.times[True]) + len(self.times[False])) % 2 == 0
            else:
                self.setting = args.mode == "reuse"
            self.start = time.perf_counter()

        def on_step_end(self, *a, **k):
            self.times[self.setting].append(time.perf_counter() - self.start)

    timer = Timer()
    tctx = TrainStageContext(index=0, name="0-dpo", trainer="dpo", where="bench", backend=backend, start="bench",
                             kind="pairs", data=pairs, layout=TrainStageLayout(Path(args.out)), seed=0, progress=False, callbacks=[timer])
    options = DPO.Options(lr=1e-3, batch_size=args.pairs, per_device_batch_size=args.pairs, max_steps=args.steps,
                          warmup_ratio=0.0, lr_scheduler="constant", gradient_checkpointing=args.checkpointing,
                          max_length=16384, fps=2.0, max_frames=args.frames, max_pixels=args.size * args.size,
                          reuse_vision_features=args.mode != "repeat", save_steps=10_000)
    trainer, collator = build_dpo_trainer(options, tctx)
    timer.trainer = trainer
    batch = collator([{"pair_id": p.pair_id, "video_path": p.video_path, "prompt": p.prompt, "chosen": p.chosen,
                       "rejected": p.rejected} for p in pairs[: args.pairs]])
    trainer.train()
    losses = {}
    with torch.no_grad():  # after training, policy != reference: the loss both ways on one batch
        for reuse in (True, False):
            trainer.reuse_vision_features = reuse
            losses[reuse] = trainer.compute_loss(trainer.model, dict(batch)).item()

    def median(values):
        values = sorted(values[1:] if len(values) > 2 else values)  # the first step warms up
        return values[len(values) // 2] if values else None

    print("RESULT " + json.dumps({
        "reuse_seconds": median(timer.times[True]),
        "repeat_seconds": median(timer.times[False]),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "loss_diff": abs(losses[True] - losses[False]),
        "video_tokens": int(batch["video_grid_thw"].prod(-1).sum() // 4 // args.pairs),
        "sequence_tokens": int(batch["chosen_input_ids"].shape[1]),
        "params_m": sum(p.numel() for p in trainer.model.parameters()) / 1e6,
    }))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default="qwen2_vl", choices=sorted(SIZES))
    parser.add_argument("--models", default=None, help="default: tiny and every mid size of the backend")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--pairs", type=int, default=2, help="pairs per step")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=224, help="frame side in pixels")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--checkpointing", action="store_true", help="gradient checkpointing (the dpo default)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    parser.add_argument("--video", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=["ab", "reuse", "repeat"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        video = tmp / "video.mp4"
        write_video(video, args.frames, args.size)
        print(f"{args.backend}; video: {args.frames} frames {args.size}x{args.size}; {args.pairs} pairs/step; {args.steps} steps; "
              f"{args.threads} thread(s); gradient checkpointing {'on' if args.checkpointing else 'off'}")
        print(f"{'model':8} {'params':>8} {'vid tok':>7} {'seq':>5} | {'reuse s/step':>12} {'4x s/step':>10} {'speed-up':>8} | "
              f"{'reuse MB':>9} {'4x MB':>8} | {'|loss diff|':>11}")
        for name in (args.models or ",".join(["tiny", *SIZES[args.backend]])).split(","):
            model_dir = build_model_dir(args.backend, name, tmp)
            results = {}
            # "ab": both settings, alternating step by step, for the times and the loss check;
            # then one process per setting for its own peak memory.
            for mode in ("ab", "reuse", "repeat"):
                steps = args.steps * 2 if mode == "ab" else 2
                command = [sys.executable, __file__, "--child", "--backend", args.backend, "--model-dir", model_dir, "--video", str(video),
                           "--out", str(tmp / f"{name}-{mode}"), "--mode", mode,
                           "--steps", str(steps), "--pairs", str(args.pairs), "--frames", str(args.frames),
                           "--size", str(args.size), "--threads", str(args.threads)]
                if args.checkpointing:
                    command.append("--checkpointing")
                done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
                line = next((l for l in done.stdout.splitlines() if l.startswith("RESULT ")), None)
                if line is None:
                    raise SystemExit(f"{name} {mode} failed:\n{done.stderr[-3000:]}")
                results[mode] = json.loads(line[7:])
            ab = results["ab"]
            print(f"{name:8} {ab['params_m']:7.1f}M {ab['video_tokens']:7d} {ab['sequence_tokens']:5d} | "
                  f"{ab['reuse_seconds']:12.3f} {ab['repeat_seconds']:10.3f} {ab['repeat_seconds'] / ab['reuse_seconds']:7.2f}x | "
                  f"{results['reuse']['peak_rss_mb']:9.0f} {results['repeat']['peak_rss_mb']:8.0f} | {ab['loss_diff']:11.2e}",
                  flush=True)


if __name__ == "__main__":
    main()
