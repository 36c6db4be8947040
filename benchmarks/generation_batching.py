"""Generation throughput of a backend: batched vs one conversation at a time (tokens/s).

    python benchmarks/generation_batching.py [--backend qwen2_vl] [--model tiny] [--n 8]
        [--batch-sizes 1,4,8] [--max-new-tokens 32] [--threads 1]
    python benchmarks/generation_batching.py --backend qwen3_vl --model mid-8b

``--model``: ``tiny`` (the backend's tiny-random preset) or a random model of a release's
proportions (``benchmarks/random_models.py``: mid-2b, mid-7b / mid-8b); ``--path``: a model folder.
Each conversation is a small synthetic video (64x48, 3 s) + a prompt. "one-at-a-time" calls
``chat`` once per conversation; batch b calls it with ``batch_size=b`` (one generate per b).
Tokens are the generated answers re-tokenised (the random preset rarely stops early).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from random_models import build_model_dir  # benchmarks/, next to this script


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", default="qwen2_vl")
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--path", default=None)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--batch-sizes", default="1,4,8")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)

    from temple_core.config import Structurer
    from temple_core.plugins import get_plugin_manager

    plugins = get_plugin_manager()

    def build(batch_size, source):
        spec = Structurer(plugins).component(
            "backends", {"name": args.backend, **source, "batch_size": batch_size, "device": args.device, "fps": 2.0}, "bench"
        )
        return spec.build(plugins)

    with tempfile.TemporaryDirectory() as tmp:
        source = {"path": args.path or build_model_dir(args.backend, args.model, Path(tmp))}
        videos = [write_video(Path(tmp) / f"v{i}.mp4", 64, 48, 12, seed=i) for i in range(args.n)]
        convs = [[{"role": "user", "content": [{"type": "video", "path": str(v)}, {"type": "text", "text": "Describe the video in detail."}]}] for v in videos]
        backend = build(1, source)
        backend.chat(convs[:1], max_new_tokens=2)  # load + warm up
        tok = backend.processor

        def run(batch_size):
            backend.options = type(backend.options)(**{**_fields(backend.options), "batch_size": batch_size})
            began = time.perf_counter()
            if batch_size == 1:
                answers = [backend.chat([c], max_new_tokens=args.max_new_tokens)[0] for c in convs]
            else:
                answers = backend.chat(convs, max_new_tokens=args.max_new_tokens)
            seconds = time.perf_counter() - began
            tokens = sum(len(tok(a, add_special_tokens=False)["input_ids"]) for a in answers)
            return tokens / seconds, seconds

        base = None
        print(f"{backend.describe()} on {args.device}, {args.n} conversations, {args.max_new_tokens} new tokens, {args.threads} thread(s)")
        print("| batch | seconds | tokens/s | speed-up |\n|---|---|---|---|")
        for b in [int(x) for x in args.batch_sizes.split(",")]:
            rate, seconds = max(run(b) for _ in range(2))  # best of 2
            base = base or rate
            print(f"| {b} | {seconds:.2f} | {rate:.1f} | {rate / base:.2f}x |")


def write_video(path: Path, width: int, height: int, frames: int, fps: int = 4, seed: int = 0) -> Path:
    """A small H.264 video of random-coloured frames with a moving bar."""
    from fractions import Fraction

    import av
    import numpy as np

    rng = np.random.default_rng(seed)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            image = np.empty((height, width, 3), np.uint8)
            image[:] = rng.integers(0, 256, 3)
            x = (i * 7) % max(1, width - 8)
            image[:, x : x + 8] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _fields(options):
    import attrs

    return attrs.asdict(options, recurse=False)


if __name__ == "__main__":
    main()
