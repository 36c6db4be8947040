"""Summary generation: one video's summary prompts batched vs one prompt at a time.

The generate stage sends a video's summary prompts -- the chosen one plus one per
(perturbation, difficulty), 13 with the defaults -- to the backend together. This measures
what that saves on the tiny-random preset and checks that greedy decoding gives the same
texts either way (batching must not change the data).

    python benchmarks/summary_batching.py [--backend qwen2_vl] [--tokens 64] [--repeats 3] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import random
import time

from temple_core.plugins import PluginManager
from temple_core.generation.prompts import summary_prompt

CLIPS = [
    "A man in a red jacket walks along a beach at sunrise.",
    "Close-up of waves breaking over dark rocks.",
    "The same man sits on a bench and opens a notebook.",
    "A dog runs towards the camera across wet sand.",
    "The man throws a ball and the dog chases it into the water.",
    "Wide shot of the empty beach as the sun sets.",
]


def conversations(perturbations, difficulties, seed=0):
    rng = random.Random(seed)
    lists = [list(CLIPS)]
    for _, perturb in perturbations:
        for r in difficulties:
            lists.append(list(perturb(CLIPS, r, rng).items))
    return [[{"role": "user", "content": [{"type": "text", "text": summary_prompt(c)}]}] for c in lists]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="qwen2_vl")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    plugins = PluginManager()
    if args.backend not in plugins.names("backends"):  # backends not yet in registry.yaml
        import temple_plugins.backends.qwen_vl as qwen_vl

        plugins.add_module(qwen_vl, "benchmark")
    component = plugins.get("backends", args.backend)
    backend = plugins.build("backends", args.backend, component.options(preset="tiny-random", device=args.device, batch_size=16))
    perturbations = [(n, plugins.build("perturbations", n)) for n in ("drop", "shuffle", "reverse")]
    convs = conversations(perturbations, [16, 8, 4, 2])
    greedy = {"max_new_tokens": args.tokens, "do_sample": False}
    backend.chat(convs[:1], **greedy)  # load the model and warm up outside the timings

    def timed(fn):
        best, out = float("inf"), None
        for _ in range(args.repeats):
            start = time.perf_counter()
            out = fn()
            best = min(best, time.perf_counter() - start)
        return best, out

    batched_s, batched = timed(lambda: backend.chat(convs, **greedy))
    single_s, single = timed(lambda: [backend.chat([c], **greedy)[0] for c in convs])
    same = sum(a == b for a, b in zip(batched, single))
    print(json.dumps({
        "backend": backend.describe(), "device": args.device, "prompts": len(convs), "max_new_tokens": args.tokens,
        "batched_s": round(batched_s, 3), "one_at_a_time_s": round(single_s, 3),
        "speedup": round(single_s / batched_s, 2), "identical_outputs": f"{same}/{len(convs)}",
    }))


if __name__ == "__main__":
    main()
