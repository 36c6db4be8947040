"""Batched likelihood scoring for ``temporal_order``: texts per second, one at a time vs batched.

The evaluator scores, per held-out video, the correct-order description and its distinct
perturbations (drop / shuffle / reverse at r = 16, 8, 4, 2: up to 13 texts) with one
``backend.score_texts`` call: the video is decoded and its vision features computed once,
and the texts go through the language model ``batch_size`` at a time. Three ways, same scores:

* ``one at a time`` -- one ``score_texts`` call per (video, text): what scoring without
  batching costs (decode, vision tower and one forward per text);
* ``batch 1`` -- one call per video, one text per forward (decode + vision once);
* ``batch 8`` -- one call per video, 8 texts per forward (the stage's default).

    python benchmarks/eval_scoring.py [--family qwen2_vl] [--max-frames 8] [--max-pixels 12544] [--repeat 3]

Tiny random-weight model, the ``heldout_events`` sample videos (8 videos, 4-6 events each).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="qwen2_vl")
    parser.add_argument("--max-frames", type=int, default=8)
    parser.add_argument("--max-pixels", type=int, default=12544)
    parser.add_argument("--fps", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from temple_core.config import Structurer
    from temple_core.evaluation.texts import ordered_description
    from temple_core.generation.plan import plan_variants
    from temple_core.plugins import get_plugin_manager
    from temple_core.samples import materialize
    from temple_core.evaluation.truth import read_sidecar, sidecar_of

    plugins = get_plugin_manager()
    backend = Structurer(plugins).component("backends", {"name": args.family, "preset": "tiny-random", "fps": args.fps,
                                                         "max_frames": args.max_frames, "max_pixels": args.max_pixels}, "b").build(plugins)
    backend.load_model()
    videos = materialize("heldout_events", Path(tempfile.mkdtemp()) / "videos")
    perturbations = [(n, plugins.build("perturbations", n)) for n in ("drop", "shuffle", "reverse")]
    import random

    work = []
    for video in videos:
        captions = read_sidecar(sidecar_of(video))
        correct = ordered_description(captions)
        texts = {correct}
        for v in plan_variants(len(captions), perturbations, [16, 8, 4, 2], random.Random(video.name)):
            texts.add(ordered_description([captions[i] for i in v.kept_indices]))
        conv = [{"role": "user", "content": [{"type": "video", "path": str(video)}, {"type": "text", "text": "Describe the video in order."}]}]
        work.append((conv, [correct] + sorted(texts - {correct})))
    n_texts = sum(len(t) for _, t in work)

    def one_at_a_time():
        return [backend.score_texts(conv, [t], batch_size=1)[0] for conv, texts in work for t in texts]

    def per_video(size):
        return lambda: [s for conv, texts in work for s in backend.score_texts(conv, texts, batch_size=size)]

    ways = [("one at a time", one_at_a_time), ("batch 1 (per video)", per_video(1)), ("batch 8 (per video)", per_video(8))]
    reference = None
    results = {}
    for name, fn in ways:
        fn()  # warm up
        best = float("inf")
        for _ in range(args.repeat):
            started = time.perf_counter()
            scores = fn()
            best = min(best, time.perf_counter() - started)
        values = [s.logprob for s in scores]
        if reference is None:
            reference = values
        drift = max(abs(a - b) for a, b in zip(values, reference))
        results[name] = best
        print(f"{name:<22} {best:7.2f} s  {n_texts / best:7.1f} texts/s  {len(work) / best:6.2f} videos/s  (max |logprob diff| {drift:.2e})")
    print(f"speed-up of batch 8 over one at a time: {results['one at a time'] / results['batch 8 (per video)']:.2f}x; "
          f"over batch 1: {results['batch 1 (per video)'] / results['batch 8 (per video)']:.2f}x "
          f"({len(work)} videos, {n_texts} texts, {args.family} tiny-random, max_frames {args.max_frames}, max_pixels {args.max_pixels}, "
          f"{args.threads} thread(s))", file=sys.stdout)


if __name__ == "__main__":
    main()
