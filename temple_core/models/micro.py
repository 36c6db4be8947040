"""The micro VLM: a real Qwen2-VL (transformers' ``Qwen2VLForConditionalGeneration``) of about
two million parameters, pre-trained by temple from random weights on the micro world
(:mod:`temple_core.samples.world`), on a CPU, in minutes: ``{name: qwen2_vl, preset: micro}``.

Why: the ``tiny-random`` presets cannot see, so nothing could show that TEMPLE does what it is
for -- making a Video LLM better at temporal order. This one sees the world's events (colour,
shape, direction of motion) and is pre-trained on exactly the inputs temple later sends it:

* **single-clip captions with a one-word prompt** ("Caption:"), and the first-clip prompt,
  alone for the first ``warm_steps`` steps: reading the frames is learned there (mixed with the
  other tasks from the start, every task stayed at the loss of a uniform guess);
* **clip captions** as the ``contextual`` captioner asks for them (its own conversations, taken
  from the plugin itself): clip 0 alone -- the clip's two keyframes as *one 2-frame video* --
  answered "A red circle moves left."; clip i after clip i-1 answered "Caption: A blue square
  moves up." (the caption of the second clip only: nothing about the first, so a caption
  carries no order);
* **summaries**: the captioner's summary prompt over a "Caption 1: ... Caption 2: ..." list,
  answered with the list told in the *given* order ("First, a red circle moves left. Then, ...
  Finally, ...", :func:`temple_core.evaluation.texts.ordered_description`) -- what makes the
  chosen and rejected responses of a pair; alone for ``copy_steps`` steps after the clips'
  warm-up, then in the mix;
* **whole videos described without reliable order**: a video (sampled at 2 fps, as training
  and evaluation sample it) and one of the pair prompts, answered with all its events in a
  *random* order. The model learns which events a video holds, never in which order: order is
  what is left for TEMPLE to teach;
* **multiple-choice answers** about presence ("Which of these happens in the video?"), in the
  ``multiple_choice`` evaluator's prompt format, so that format is not new to it (order
  questions are never asked).

Everything is seeded (weights, the world's pre-training split, the order of tasks and samples)
and runs on one CPU thread, so two builds with the same seed are bit-identical. (They once
differed in the last bits: the world's videos were encoded with libx264's defaults, whose
macroblock-tree rate control gives a few different bytes from one write to the next on a VM that
moves between hosts; the world now goes through the samples' one writer, ``write_h264``.) Built on first
use into ``$TEMPLE_CACHE/presets/qwen2_vl-micro-<key>[-seed<n>]`` (``<key>``: a fingerprint of
:data:`SETTINGS`, the world and the config, so a change never reuses a stale build), or ahead
of time with ``python -m temple_core.models.micro``. The build writes ``micro_card.json``
beside the weights: the settings, the losses, the time, and held-out checks of each skill.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import attrs

from temple_core.store.files import temp_path

PRESET = "micro"
#: The pixel floor the micro model is used with: its 32 x 32 frames as they are (the backends'
#: default floor, 3,136, would upscale them to 64 x 64 -- 4x the tokens it was trained on).
#: Recipes give it as the backend's ``min_pixels`` (examples/recipes/micro/).
MIN_PIXELS = 784
#: Video sampling of the whole-video task: what training (the ``paper`` preset) and evaluation
#: (``eval.frames``) use by default, 2 frames per second (one temporal patch per world event).
VIDEO_FPS, VIDEO_MAX_FRAMES = 2.0, 64
#: Presence questions: the ``multiple_choice`` evaluator's default prompt and answer format.
MC_TEMPLATE = "{question}\n{options}\nAnswer with the option's letter from the given choices directly."
MC_ANSWER = "{letter}. {text}"
PRESENCE_QUESTION = "Which of these happens in the video?"


@attrs.define(frozen=True, kw_only=True)
class Settings:
    """How the micro model is pre-trained (its build key includes all of them)."""

    #: Optimizer steps.
    steps: int = 5500
    #: Samples per step (each step's samples are of one task: little padding).
    batch_size: int = 16
    #: AdamW peak learning rate, linear warm-up then cosine to 0.
    lr: float = 1e-3
    #: The vision tower's learning rate as a share of ``lr``. At 2e-3 for every weight the tower's
    #: features collapse and the model cannot even memorise one batch of 16 captions; at a
    #: quarter of the language model's rate colour and direction are learned but never shape;
    #: at a tenth, clip captions are learned exactly within 1,500 steps (docs/science.md).
    vision_lr_scale: float = 0.1
    warmup: int = 100
    weight_decay: float = 0.01
    #: Videos of the world's ``pretrain`` split the samples come from.
    videos: int = 400
    #: Share of the steps per task, after the warm-up and the summaries' own phase.
    #: The summaries get the largest share: copying a list of up to 10 captions in order is
    #: what the chosen and rejected texts of a pair are made of, and it was still learning at
    #: the end of a 20% share.
    tasks: dict = attrs.field(factory=lambda: {"short_clip": 0.05, "first_clip": 0.15, "next_clip": 0.15, "summary": 0.35,
                                               "video": 0.2, "mc": 0.1})
    #: The first steps train only these tasks: reading single clips. Mixed from the start, the
    #: tasks' gradients keep every one of them at the loss of a uniform guess for 1,500+ steps;
    #: clip captions alone leave it within 200 steps, and the other tasks then build on them.
    warm_steps: int = 1500
    warm_tasks: dict = attrs.field(factory=lambda: {"short_clip": 0.6, "first_clip": 0.4})
    #: Then these steps train only the summaries (text only, cheap): copying a caption list in
    #: order, learned alone to 92% exact copies in 1,000 steps, but in the mix (35% of its
    #: steps) only to a loss of ~0.3 by the end. The mix that follows keeps it.
    copy_steps: int = 1000
    #: Held-out checks written into micro_card.json: samples per skill.
    checks: int = 48


SETTINGS = Settings()
#: Environment variable of settings overrides (JSON, e.g. ``{"steps": 20, "videos": 8}``): a
#: reduced build for tests; part of the build key, so it never shadows the full build.
SETTINGS_ENV = "TEMPLE_MICRO_SETTINGS"


def current_settings() -> Settings:
    """:data:`SETTINGS` with the overrides of ``$TEMPLE_MICRO_SETTINGS`` (if set)."""
    import os

    raw = os.environ.get(SETTINGS_ENV)
    if not raw:
        return SETTINGS
    try:
        return attrs.evolve(SETTINGS, **json.loads(raw))
    except (ValueError, TypeError) as exc:
        from temple_core.errors import TempleError

        raise TempleError(f"${SETTINGS_ENV}: not a JSON object of micro settings ({exc})") from None


# -- the model -------------------------------------------------------------------------------
def config(tok):
    """The micro Qwen2-VL config: a 4-layer, 128-wide language model and a 3-layer vision tower
    with 8-px patches (a 32 x 32 frame is 4 x 4 patches, merged 2 x 2: 4 tokens per temporal
    patch of 2 frames), the family's special tokens."""
    from transformers import Qwen2VLConfig

    ids = tok.convert_tokens_to_ids
    return Qwen2VLConfig(
        text_config=dict(
            vocab_size=len(tok), hidden_size=128, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=4096,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [4, 6, 6]},
            tie_word_embeddings=False, bos_token_id=None, eos_token_id=ids("<|im_end|>"), pad_token_id=tok.pad_token_id,
        ),
        vision_config=dict(depth=3, embed_dim=96, hidden_size=128, num_heads=3, mlp_ratio=4, patch_size=8,
                           spatial_merge_size=2, temporal_patch_size=2),
        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"),
        bos_token_id=None, eos_token_id=ids("<|im_end|>"), pad_token_id=tok.pad_token_id, tie_word_embeddings=False,
    )


def caption_text(phrase: str) -> str:
    """A clip caption as the model writes it: "A red circle moves left."."""
    return phrase[:1].upper() + phrase[1:] + "."


def tokenizer_text() -> str:
    """What the micro tokenizer is trained on: every prompt temple sends and every phrase of the
    world, so that each word is one token (short sequences, a fast CPU model)."""
    from temple_core.evaluation.texts import ordered_description
    from temple_core.generation import prompts
    from temple_core.samples import world

    phrases = [world.describe(*k) for k in world.event_kinds()]
    lines = [prompts.FIRST_CLIP_PROMPT, prompts.NEXT_CLIP_PROMPT, prompts.SUMMARY_PROMPT, *prompts.PAIR_PROMPTS,
             MC_TEMPLATE, PRESENCE_QUESTION, world.FIRST_QUESTION, "system\nYou are a helpful assistant.", "user\n", "assistant\n"]
    rng = random.Random("micro-tokenizer")
    for _ in range(40):
        some = rng.sample(phrases, 10)
        lines.append(ordered_description(some))
        lines += [prompts.CAPTION_LINE.replace("{index}", str(i)).replace("{caption}", caption_text(p)) for i, p in enumerate(some, 1)]
        lines += [f"Caption: {caption_text(p)}" for p in some] + [f"{'AB'[i % 2]}. {p}" for i, p in enumerate(some)]
    return "\n".join(lines)


def key(settings: Settings | None = None) -> str:
    """The build key: settings, world and model shape (a change makes a new cache folder)."""
    from temple_core.samples import world

    settings = settings or current_settings()
    data = {"settings": attrs.asdict(settings), "world": [world.SIZE, world.FPS, world.EVENT_FRAMES, world.COLOURS, world.SHAPES,
                                                          world.DIRECTIONS, world.BACKGROUNDS, world.RADIUS, world.SPEED],
            "video": [VIDEO_FPS, VIDEO_MAX_FRAMES, MIN_PIXELS], "revision": 3}
    return hashlib.sha1(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:8]


# -- the pre-training data -------------------------------------------------------------------
@attrs.define
class WorldVideo:
    phrases: list[str]
    clips: list[list]  # per event: its two keyframes (H, W, 3) uint8, as the captioner reads them
    frames: list  # the whole video sampled at VIDEO_FPS
    rate: float


def load_pool(seed: int, count: int, workdir: Path, split: str = "pretrain") -> list[WorldVideo]:
    """``count`` videos of the world's ``split``, written as files and read back the way the
    pipeline reads them: keyframes of each (ground-truth) clip by the release's rule, the whole
    video sampled at :data:`VIDEO_FPS` by the backends' own sampler."""
    from temple_core.models.vision_tokens import sample_video
    from temple_core.samples import world
    from temple_core.video.source import VideoSource

    pool = []
    for path in world.write_split(workdir, seed, split, count):
        record = world.ground_truth_record(path)
        source = VideoSource(path)
        flat = source.read_frames([i for pair in record.keyframes for i in pair])
        clips = [flat[2 * i : 2 * i + 2] for i in range(len(record.keyframes))]
        sampled = sample_video({"type": "video", "path": str(path)}, VIDEO_FPS, VIDEO_MAX_FRAMES)
        phrases = [e["description"] for e in world.read_sidecar(path)["events"]]
        pool.append(WorldVideo(phrases, clips, list(sampled.frames), sampled.fps))
    return pool


class Tasks:
    """Makes ``(conversation, answer)`` samples of each pre-training task (see the module doc)."""

    def __init__(self, captioner, pool: list[WorldVideo], rng: random.Random):
        self.captioner, self.pool, self.rng = captioner, pool, rng

    @staticmethod
    def video_item(video: WorldVideo) -> dict[str, Any]:
        # The sampled frames of the file, at their rate: the tensors of {"type": "video", "path": ...}.
        return {"type": "video", "frames": video.frames, "fps": video.rate}

    def first_clip(self):
        video = self.rng.choice(self.pool)
        i = self.rng.randrange(len(video.clips))
        return self.captioner.clip_conversation(video.clips, (None, i)), caption_text(video.phrases[i])

    def short_clip(self):
        # A clip with a one-word prompt: the same caption, without the long instruction the
        # captioner sends. Reading the frames is learned far sooner when few text tokens compete
        # for attention with the clip's four vision tokens; the long-prompt tasks then reuse it.
        video = self.rng.choice(self.pool)
        i = self.rng.randrange(len(video.clips))
        content = [*self.captioner.clip_items(video.clips[i]), {"type": "text", "text": "Caption:"}]
        return [{"role": "user", "content": content}], caption_text(video.phrases[i])

    def next_clip(self):
        video = self.rng.choice(self.pool)
        i = self.rng.randrange(1, len(video.clips))
        return self.captioner.clip_conversation(video.clips, (i - 1, i)), f"Caption: {caption_text(video.phrases[i])}"

    def summary(self):
        from temple_core.evaluation.texts import ordered_description
        from temple_core.samples import world

        count = self.rng.randint(1, world.MAX_EVENTS)
        captions = [caption_text(world.describe(*k)) for k in self.rng.sample(world.event_kinds(), count)]
        return self.captioner.summary_conversation(captions), ordered_description(captions)

    def video(self):
        from temple_core.evaluation.texts import ordered_description
        from temple_core.generation.prompts import PAIR_PROMPTS

        video = self.rng.choice(self.pool)
        order = self.rng.sample(video.phrases, len(video.phrases))  # a random order: order is not taught
        conversation = [{"role": "user", "content": [self.video_item(video), {"type": "text", "text": self.rng.choice(PAIR_PROMPTS)}]}]
        return conversation, ordered_description(order)

    def mc(self):
        from temple_core.samples import world

        video = self.rng.choice(self.pool)
        present = self.rng.choice(video.phrases)
        absent = self.rng.choice([p for p in (world.describe(*k) for k in world.event_kinds()) if p not in video.phrases])
        options = [present, absent]
        self.rng.shuffle(options)
        lines = "\n".join(f"{'AB'[i]}. {text}" for i, text in enumerate(options))
        prompt = MC_TEMPLATE.replace("{question}", PRESENCE_QUESTION).replace("{options}", lines)
        letter = "AB"[options.index(present)]
        conversation = [{"role": "user", "content": [self.video_item(video), {"type": "text", "text": prompt}]}]
        return conversation, MC_ANSWER.replace("{letter}", letter).replace("{text}", present)


def _encode(backend, conversation, answer):
    return backend.encode_sft(messages=conversation + [{"role": "assistant", "content": answer}], videos=[], max_length=4096)


def contextual_captioner():
    """The ``contextual`` captioner with its default options, from the plugin manager: its own
    conversations are the pre-training inputs."""
    from temple_core.plugins import get_plugin_manager

    return get_plugin_manager().build("caption_generators", "contextual")


# -- pre-training ----------------------------------------------------------------------------
@contextlib.contextmanager
def _scratch(parent: Path):
    """A folder for the pre-training videos, removed afterwards; named as store.files names
    temporary files (``.micro-world.tmp<pid>``), so a build killed midway leaves nothing for
    long: the next build's clean-up removes it once its process is gone."""
    workdir = temp_path(parent / "micro-world")
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    try:
        yield workdir
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def pretrain(backend, model, tok, folder: Path, seed: int, settings: Settings | None = None,
             log: Callable[[str], None] = print):
    """Pre-train ``model`` (random weights) in place on the micro world; write
    ``micro_card.json`` into ``folder``. ``backend``: a qwen2_vl backend whose encoding is used
    (the same code as every later stage)."""
    import torch
    from transformers import get_cosine_schedule_with_warmup

    settings = settings or current_settings()
    started = time.time()
    # turn_end with_newline: the rule the micro preset was first built and studied with (runs 1-3
    # of docs/science.md); the release's `swift` would change every build's bytes.
    helper = type(backend)(attrs.evolve(backend.options, preset=None, path=str(folder), min_pixels=MIN_PIXELS,
                                        turn_end="with_newline"))
    helper.attach(model, tok)
    captioner = contextual_captioner()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # bit-identical builds (and the fastest setting for a model this small)
    try:
        with _scratch(folder.parent) as workdir, torch.random.fork_rng():
            torch.manual_seed(seed)
            pool = load_pool(seed, settings.videos, Path(workdir))
            rng = random.Random(f"micro-pretrain:{seed}")
            tasks = Tasks(captioner, pool, rng)
            names = list(dict.fromkeys([*settings.warm_tasks, "summary", *settings.tasks]))
            shares = [[settings.warm_tasks.get(n, 0.0) for n in names], [float(n == "summary") for n in names],
                      [settings.tasks.get(n, 0.0) for n in names]]
            ends = [settings.warm_steps, settings.warm_steps + settings.copy_steps]
            vision = {id(p) for p in model.model.visual.parameters()}
            groups = []
            for in_tower in (False, True):
                for decays in (True, False):
                    params = [p for p in model.parameters() if (id(p) in vision) == in_tower and (p.ndim >= 2) == decays]
                    groups.append({"params": params, "weight_decay": settings.weight_decay if decays else 0.0,
                                   "lr": settings.lr * (settings.vision_lr_scale if in_tower else 1.0)})
            optimizer = torch.optim.AdamW(groups, lr=settings.lr, betas=(0.9, 0.98))
            schedule = get_cosine_schedule_with_warmup(optimizer, settings.warmup, settings.steps)
            model.train()
            losses: dict[str, list[float]] = {n: [] for n in names}
            curve = []
            for step in range(1, settings.steps + 1):
                task = rng.choices(names, shares[sum(step > end for end in ends)])[0]
                make = getattr(tasks, task)
                batch = helper.collate_sft([_encode(helper, *make()) for _ in range(settings.batch_size)])
                loss = model(**batch).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                schedule.step()
                optimizer.zero_grad(set_to_none=True)
                losses[task].append(float(loss.detach()))
                if step % 100 == 0 or step == settings.steps:
                    recent = {n: round(sum(v[-20:]) / len(v[-20:]), 4) for n, v in losses.items() if v}
                    curve.append({"step": step, "seconds": round(time.time() - started, 1), **recent})
                    log(f"[micro] step {step}/{settings.steps} {time.time() - started:.0f}s " +
                        " ".join(f"{n}={v:.3f}" for n, v in recent.items()))
            model.eval()
            trained = time.time() - started
            checks = skill_checks(helper, captioner, seed, settings.checks, Path(workdir))
    finally:
        torch.set_num_threads(threads)
    card = {"preset": PRESET, "seed": seed, "key": key(settings), "settings": attrs.asdict(settings),
            "parameters": sum(p.numel() for p in model.parameters()), "train_seconds": round(trained, 1),
            "curve": curve, "checks": checks, "torch_threads": 1}
    (folder / "micro_card.json").write_text(json.dumps(card, indent=1) + "\n")
    log(f"[micro] built in {time.time() - started:.0f}s: " + ", ".join(f"{k} {v['score']:.2f}" for k, v in checks.items()))
    return model


def normalise(text: str) -> str:
    """Lower case, words only: how event phrases are matched in generated text."""
    import re

    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def skill_checks(backend, captioner, seed: int, count: int, workdir: Path) -> dict[str, dict]:
    """Greedy answers on the world's ``heldout`` split (never trained on): clip captions that
    are exactly right, summaries that copy their list exactly, whole-video descriptions' event
    recall. What micro_card.json reports; the study measures the same through the evaluators."""
    from temple_core.evaluation.texts import ordered_description
    from temple_core.generation.captions import extract_caption

    pool = load_pool(seed, max(4, count // 6), workdir / "heldout", split="heldout")
    rng = random.Random(f"micro-checks:{seed}")
    tasks = Tasks(captioner, pool, rng)
    out = {}
    # Clip captions, first and next, as the captioner extracts them.
    for kind in ("first_clip", "next_clip"):
        samples = [getattr(tasks, kind)() for _ in range(count)]
        answers = backend.chat([c for c, _ in samples], max_new_tokens=32)
        right = [normalise(extract_caption(a)) == normalise(extract_caption(t)) for a, (_, t) in zip(answers, samples)]
        out[kind] = {"score": sum(right) / len(right), "n": len(right), "example": answers[0]}
    samples = [tasks.summary() for _ in range(count)]
    answers = backend.chat([c for c, _ in samples], max_new_tokens=160)
    right = [a.strip() == t for a, (_, t) in zip(answers, samples)]
    out["summary"] = {"score": sum(right) / len(right), "n": len(right), "example": answers[0]}
    conversations, phrases = [], []
    for video in pool:
        conversations.append([{"role": "user", "content": [Tasks.video_item(video), {"type": "text", "text": "Describe this video in detail."}]}])
        phrases.append(video.phrases)
    answers = backend.chat(conversations, max_new_tokens=160)
    found = [sum(normalise(p) in normalise(a) for p in ps) for a, ps in zip(answers, phrases)]
    out["video_recall"] = {"score": sum(found) / sum(len(p) for p in phrases), "n": sum(len(p) for p in phrases),
                           "example": answers[0], "truth": ordered_description(phrases[0])}
    return out


def main(argv=None) -> int:
    import argparse

    from temple_core.plugins import get_plugin_manager

    parser = argparse.ArgumentParser(description="Build (once) the micro preset of qwen2_vl and print its folder.")
    parser.add_argument("--seed", type=int, default=0, help="preset_seed (default 0: what `preset: micro` loads)")
    args = parser.parse_args(argv)
    component = get_plugin_manager().get("backends", "qwen2_vl")
    backend = component.factory(component.options(preset=PRESET, preset_seed=args.seed))
    print(backend.preset_dir())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
