"""Shared machinery of the built-in backends on transformers' ``*ForConditionalGeneration``
classes: option fields, lazy loading from a directory or a cached ``tiny-random`` preset,
chat-template rendering with visual placeholders expanded to their token counts, batched
generation (left padding, one ``generate`` per chunk), preference/SFT encoding and padding,
and LoRA surgery. A family subclass supplies only what differs: the model class
(:meth:`HFChatBackend.model_class`), the tiny config (:meth:`HFChatBackend.tiny_config`), its
visual tensors (:meth:`HFChatBackend.visual_inputs`, :meth:`HFChatBackend.visual_batch`) and how
they enter the model (:meth:`vision_features`, :meth:`model_inputs`).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any, Literal

import attrs
import torch

from temple_core.config import path_field
from temple_core.errors import ModelError, SkipSample, TempleError
from temple_core.models.backend import Backend, TextScore, linear_module_names
from temple_core.models.vision_tokens import build_tiny_tokenizer, cache_dir, check_model_dir, pad_rows
from temple_core.store.files import clean_stale_temps, temp_path


def options_class(default_max_pixels: int = 90000, default_min_pixels: int = 3136, presets: tuple[str, ...] = ("tiny-random",)):
    """The attrs options class every ``HFChatBackend`` family starts from (subclass it to add
    family options). ``presets``: the preset names the family's :meth:`HFChatBackend.tiny_config` builds."""

    @attrs.define(kw_only=True)
    class Options:
        #: A model directory (HF format), e.g. /ckpts/Qwen2-VL-7B-Instruct or a stage's merged/
        #: (relative to the recipe file; must exist when the recipe is validated).
        path: str | None = path_field(None, kind="dir")
        #: A built-in model instead of ``path`` (built once, cached): ``tiny-random`` (random weights), or another preset of the family (docs/backends.md; qwen2_vl's ``micro`` is pre-trained on the micro world).
        preset: str | None = attrs.field(default=None, validator=attrs.validators.optional(attrs.validators.in_(list(presets))))
        #: The seed a ``preset`` is built from (each seed is built once and cached on its own).
        preset_seed: int = attrs.field(default=0, validator=attrs.validators.ge(0))
        #: torch dtype name (auto, float32, bfloat16, float16).
        dtype: str = attrs.field(default="auto", validator=attrs.validators.in_(["auto", "float32", "bfloat16", "float16"]))
        #: Device of the whole model (ignored when device_map is given).
        device: str = "cpu"
        #: transformers device_map (e.g. auto) for a model split across devices.
        device_map: str | None = None
        #: transformers attention implementation (sdpa, eager, flash_attention_2).
        attn_implementation: str | None = None
        #: Frames sampled per second of a video the backend is asked about (chat: evaluation);
        #: training stages set their own (their ``video`` preset), the captioner shows keyframes.
        fps: float = attrs.field(default=2.0, validator=attrs.validators.gt(0.0))
        #: At most this many frames per video in chat (spread over the range when more).
        max_frames: int = attrs.field(default=100, validator=attrs.validators.ge(1))
        #: Pixels per frame at most after resizing (smart_resize) in chat; a content item's own
        #: ``max_pixels`` (the captioner's clips) wins.
        max_pixels: int = attrs.field(default=default_max_pixels, validator=attrs.validators.ge(784))
        #: Pixels per frame at least after resizing (the Qwen image processor's 56*56); smaller
        #: frames are enlarged to it, so at most 12,845,056 (Qwen's largest image) and <= max_pixels.
        min_pixels: int = attrs.field(default=default_min_pixels, validator=[attrs.validators.ge(784), attrs.validators.le(12_845_056)])
        #: Conversations per generate call.
        batch_size: int = attrs.field(default=8, validator=attrs.validators.ge(1))
        #: Run the checkpoint's own Python code (not needed for these HF-format models).
        trust_remote_code: bool = False
        #: How an answer ends in training and scoring: ``swift`` (ms-swift's, the release's): the
        #: answer and its end-of-turn token are trained, the newline after it sits between turns
        #: untrained, and the last answer ends at the token; ``with_newline``: end of turn and
        #: newline after every answer, both trained (temple's earlier rule). See docs/method.md.
        turn_end: Literal["swift", "with_newline"] = attrs.field(default="swift", validator=attrs.validators.in_(["swift", "with_newline"]))

        def __attrs_post_init__(self):
            if self.min_pixels > self.max_pixels:
                raise ValueError(f"min_pixels ({self.min_pixels}) is larger than max_pixels ({self.max_pixels})")

    return Options


class AnswerAfterThinking:
    """Mixin (first in the bases) for models that may reason first in ``<think>...</think>``
    (MiMo-VL, Qwen3-VL Thinking, InternVL3.5's thinking mode): the answer is the text after the
    last ``</think>``; text without the tags is the answer as it is."""

    def clean(self, text: str) -> str:
        # The answer is what follows the last </think>; a reasoning never closed has no answer yet.
        if "</think>" in text:
            return text.rsplit("</think>", 1)[1].strip()
        return text.replace("<think>", "").strip()

    def decode(self, ids) -> str:
        # Some tokenizers mark <think>/</think> special: keep them so clean() can split on them.
        tok = self.processor
        keep = {"<think>", "</think>"}
        drop = {tok.convert_tokens_to_ids(t) for t in tok.all_special_tokens if t not in keep}
        return tok.decode([int(i) for i in ids if int(i) not in drop], skip_special_tokens=False)


class HFChatBackend(Backend):
    """A transformers vision-language model with a chat template; see the module doc."""

    family = ""
    #: ``config.json`` model types this backend loads.
    model_types: tuple[str, ...] = ()
    #: Model types of remote-code checkpoints, loadable only with ``trust_remote_code``.
    remote_types: tuple[str, ...] = ()
    Options = options_class()
    #: For the tiny tokenizer: special tokens, chat template, end-of-turn and pad tokens.
    special_tokens: list[str] = []
    chat_template: str = ""
    end_of_turn = "<|im_end|>"
    pad_token = "<|endoftext|>"
    #: Tokenizer attributes the family's transformers processor reads (``{"video_token": "<video>"}``).
    named_tokens: dict[str, str] = {}
    #: Bumped when the tiny preset's files change (a new cache folder; same seed, same weights).
    preset_revision = 1
    #: Chat-template placeholders, one per visual item, expanded by :meth:`expand_placeholder`.
    placeholder_pattern = r"<\|(?:video|image)_pad\|>"
    #: transformers' decoder-only language models take a prepared 4D mask as is (sdpa, eager).
    supports_prefix_sharing = True
    #: Attention implementations that apply a prepared 4D mask (flash attention takes none).
    mask_attention = ("sdpa", "eager")

    # -- loading ----------------------------------------------------------------------------
    def model_class(self):
        """The transformers model class (``...ForConditionalGeneration``) of this backend's
        checkpoints. May read :meth:`model_dir`'s ``config.json`` when one family has several
        classes (e.g. dense and MoE)."""
        raise NotImplementedError

    def tiny_config(self, tok):
        """A small config of :meth:`model_class` for ``options.preset`` (``tok``: the tiny tokenizer,
        for the vocabulary size and special-token ids)."""
        raise NotImplementedError

    def preset_dir(self) -> Path:
        """The folder of ``options.preset``: built once (seed ``preset_seed``) into
        ``$TEMPLE_CACHE/presets``, then loaded like any checkpoint. Processes that ask for the
        same preset at once build it once: the others wait for the first (a file lock)."""
        seed = self.options.preset_seed
        folder = cache_dir() / "presets" / f"{self.family}-{self.options.preset}{self.preset_key()}{f'-seed{seed}' if seed else ''}"
        if (folder / "config.json").is_file():
            return folder
        folder.parent.mkdir(parents=True, exist_ok=True)
        with _build_lock(folder.with_name(f".{folder.name}.lock")):
            if not (folder / "config.json").is_file():
                self._build_preset(folder, seed)
        return folder

    def _build_preset(self, folder: Path, seed: int) -> None:
        # Built once, deterministically, then loaded through the same path code as a checkpoint.
        tok = self.preset_tokenizer()
        config = self.tiny_config(tok)
        with torch.random.fork_rng():  # seeded build without disturbing the caller's RNG
            torch.manual_seed(seed)
            model = self.model_class()(config)
        model.generation_config.eos_token_id = tok.convert_tokens_to_ids(self.end_of_turn)
        model.generation_config.pad_token_id = tok.pad_token_id
        model.generation_config.bos_token_id = None
        # A build killed midway leaves its temporary folder: removed once its process is gone.
        clean_stale_temps(folder.parent, legacy=True)
        tmp = temp_path(folder)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        model = self.train_preset(model, tok, tmp, seed)
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        self._write_processor_files(tmp, config)
        try:
            tmp.rename(folder)
        except OSError:  # another process built it first (no lock on this platform)
            shutil.rmtree(tmp, ignore_errors=True)

    def preset_key(self) -> str:
        """What tells builds of the preset apart in its folder name (``-r2``...: the files changed)."""
        return f"-r{self.preset_revision}" if self.preset_revision > 1 else ""

    def preset_tokenizer(self):
        """The tokenizer of a preset: the tiny byte-level BPE with the family's special tokens
        and chat template (a preset may train it on its own text)."""
        return build_tiny_tokenizer(self.special_tokens, self.chat_template, eos=self.end_of_turn, pad=self.pad_token,
                                    named_tokens=self.named_tokens)

    def train_preset(self, model, tokenizer, folder: Path, seed: int):
        """The preset's weights after its random initialisation (seed ``seed``); ``folder`` is
        where it is being written (for extra files). Default: the random weights as they are;
        a preset that learns (qwen2_vl ``micro``) trains here."""
        return model

    def attach(self, model, processor) -> None:
        """Use ``model`` and ``processor`` (a tokenizer) as this backend's, instead of loading
        them: a model being trained in this process (a preset's pre-training)."""
        self._model, self._processor = model, processor
        processor.padding_side = "left"

    def processor_files(self, config) -> dict[str, dict]:
        """The processor configuration files a checkpoint of this family carries (file name ->
        JSON), for the tiny preset: what transformers' ``AutoProcessor`` (and lmms-eval, vLLM,
        ms-swift) read beside the weights. Values follow the family's published checkpoints,
        sizes the tiny model's."""
        return {}

    def _write_processor_files(self, folder: Path, config) -> None:
        import json

        for name, data in self.processor_files(config).items():
            target = folder / name
            if not target.is_file():
                tmp = target.with_name(f".{name}.tmp{id(self)}")
                tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
                tmp.replace(target)

    def model_dir(self) -> str:
        if not self.options.preset:
            return self.options.path
        folder = self.preset_dir()
        if not getattr(self, "_preset_checked", False):
            # A preset cached before it carried processor files gets them (the weights are unchanged).
            from transformers import AutoConfig

            if any(not (folder / name).is_file() for name in self.processor_files(None) or {}):
                self._write_processor_files(folder, AutoConfig.from_pretrained(folder))
            self._preset_checked = True
        return str(folder)

    def load_model(self, path: str | None = None):
        if path is not None:
            self.options = attrs.evolve(self.options, path=str(path), preset=None)
            self._model = self._processor = None
        if self._model is None:
            from transformers import AutoTokenizer

            folder = self.model_dir()
            check_model_dir(folder, self.family, self.model_types, self.options.trust_remote_code, self.remote_types)
            kwargs: dict[str, Any] = {"dtype": self.options.dtype}
            if self.options.attn_implementation:
                kwargs["attn_implementation"] = self.options.attn_implementation
            if self.options.device_map:
                kwargs["device_map"] = self.options.device_map
            model = self.model_class().from_pretrained(folder, **kwargs)
            if not self.options.device_map:
                model.to(self.options.device)
            self._model = model.eval()
            self._processor = AutoTokenizer.from_pretrained(folder)
            self._processor.padding_side = "left"
        return self._model

    @property
    def processor(self):
        if self._processor is None:
            self.load_model()
        return self._processor

    # -- family hooks ---------------------------------------------------------------------------
    def visual_inputs(self, item: dict[str, Any], fps: float | None = None, max_frames: int | None = None,
                      max_pixels: int | None = None, min_pixels: int | None = None,
                      total_pixels: int | None = None) -> dict[str, Any]:
        """One video/image content item -> a dict with at least ``kind`` and ``tokens``.

        The arguments override the backend's options (a training stage's video input); an
        item's own ``max_pixels`` / ``min_pixels`` keys override both (the captioner's clips).
        ``total_pixels`` is a whole video's pixel budget (see :func:`frame_pixel_cap`)."""
        raise NotImplementedError

    def training_visual_inputs(self, item: dict[str, Any], fps: float | None = None, max_frames: int | None = None,
                               max_pixels: int | None = None, min_pixels: int | None = None,
                               total_pixels: int | None = None) -> dict[str, Any]:
        """:meth:`visual_inputs` of a training sample (``encode_preference`` / ``encode_sft``);
        a family whose training framework builds them differently overrides it."""
        return self.visual_inputs(item, fps, max_frames, max_pixels, min_pixels, total_pixels)

    def expand_placeholder(self, placeholder: str, visual: dict[str, Any]) -> str:
        """The text that replaces one template placeholder for ``visual``."""
        if placeholder != f"<|{visual['kind']}_pad|>":
            raise ModelError(f"{self.family}: visual items out of order with the template's placeholders")
        return placeholder * visual["tokens"]

    def row_extras(self, ids: list[int]) -> dict[str, list[int]]:
        """Per-token model inputs besides ids and mask (padded with 0)."""
        return {}

    def visual_batch(self, visuals: list[dict]) -> dict[str, Any]:
        """The model's visual tensors for these items, in order."""
        raise NotImplementedError

    def visual_module_name(self) -> str:
        """Short name of the vision tower module (``visual`` for Qwen)."""
        raise NotImplementedError

    def render(self, messages, visuals: list[dict], add_generation_prompt: bool) -> str:
        """Chat-template text with each visual placeholder expanded to its token count (the
        prompt text a transformers processor would build from ``messages``)."""
        text = self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
        queue = list(visuals)

        def expand(match):
            if not queue:
                raise ModelError(f"{self.family}: more visual placeholders than visual items")
            return self.expand_placeholder(match.group(0), queue.pop(0))

        text = re.sub(self.placeholder_pattern, expand, text)
        if queue:
            raise ModelError(f"{self.family}: the chat template dropped {len(queue)} visual item(s)")
        return text

    # -- generation -------------------------------------------------------------------------
    def clean(self, text: str) -> str:
        return text.strip()

    def chat(self, conversations, *, max_new_tokens=512, do_sample=False, temperature=1.0, top_p=1.0, top_k=None,
             repetition_penalty=1.0, seed=None) -> list[str]:
        answers: list[str] = []
        size = self.options.batch_size
        settings = self.generation_settings(
            max_new_tokens=max_new_tokens, do_sample=do_sample, temperature=temperature, top_p=top_p, top_k=top_k,
            repetition_penalty=repetition_penalty,
        )
        for start in range(0, len(conversations), size):
            answers += self._chat_batch(conversations[start : start + size], settings, seed)
        return answers

    _SAMPLING_KEYS = ("temperature", "top_p", "top_k")

    def generation_settings(self, **settings) -> dict[str, Any]:
        config = self.model.generation_config
        out = {}
        for key, value in settings.items():
            out[key] = value if value is not None else getattr(config, key, None)
        if not out.get("do_sample"):
            for key in self._SAMPLING_KEYS:  # not used when decoding greedily
                out.pop(key, None)
        out["greedy"] = not out.get("do_sample") or out.get("top_k") == 1
        return out

    def _chat_batch(self, conversations, settings, seed):
        model, tok = self.model, self.processor
        rows, visuals = [], []
        for conversation in conversations:
            items = [c for m in conversation if not isinstance(m["content"], str) for c in m["content"] if c["type"] in ("video", "image")]
            vis = [self.visual_inputs(c) for c in items]
            rows.append(tok(self.render(conversation, vis, True), add_special_tokens=False)["input_ids"])
            visuals += vis
        # Left padding: every row's last prompt token sits at the end, so one generate call serves all.
        input_ids = pad_rows(rows, tok.pad_token_id, "left")
        attention = pad_rows([[1] * len(r) for r in rows], 0, "left")
        inputs = {"input_ids": input_ids, "attention_mask": attention}
        extras = [self.row_extras(r) for r in rows]
        for key in extras[0]:
            inputs[key] = pad_rows([e[key] for e in extras], 0, "left")
        inputs.update(self.visual_batch(visuals))
        device = next(model.parameters()).device
        inputs = {k: v.to(device) for k, v in inputs.items()}
        for key in ("pixel_values_videos", "pixel_values"):
            if key in inputs:
                inputs[key] = inputs[key].to(model.dtype)
        # Every setting explicit (the checkpoint's where the caller gave none): what is logged is what ran.
        decoding = {k: v for k, v in settings.items() if k != "greedy" and v is not None}
        if settings.get("do_sample") and seed is not None:
            torch.manual_seed(seed)
        with torch.no_grad():
            out = model.generate(**inputs, pad_token_id=tok.pad_token_id, **decoding)
        new = out[:, input_ids.shape[1]:]
        return [self.clean(self.decode(row)) for row in new]

    def decode(self, ids) -> str:
        """Generated ids -> text, special tokens dropped."""
        return self.processor.decode(ids, skip_special_tokens=True)

    # -- scoring ----------------------------------------------------------------------------
    def shares_vision(self, visuals: list[dict]) -> bool:
        """Whether :meth:`vision_features` covers these visual items (then the tower runs once
        for every text scored against them). Qwen: videos only."""
        return bool(visuals) and all(v["kind"] == "video" for v in visuals)

    def _to_model(self, batch: dict[str, Any], model) -> dict[str, Any]:
        device = next(model.parameters()).device
        out = {}
        for key, value in batch.items():
            if isinstance(value, torch.Tensor):
                value = value.to(device)
                if value.is_floating_point():
                    value = value.to(model.dtype)
            out[key] = value
        return out

    def score_texts(self, conversation, texts, *, batch_size=None) -> list[TextScore]:
        if not texts:
            return []
        model, tok = self.model, self.processor
        items = [c for m in conversation if not isinstance(m["content"], str) for c in m["content"] if c["type"] in ("video", "image")]
        visuals = [self.visual_inputs(c) for c in items]
        shared = self._to_model(self.visual_batch(visuals), model) if visuals else {}
        features = None
        if self.shares_vision(visuals):
            with torch.no_grad():
                features = self.vision_features(model, shared)
        size = batch_size or self.options.batch_size
        # The same tokens as a training answer (answer_ids, a last answer): the prompt rendered
        # once, each answer + end of turn tokenized on its own, all answers in one tokenizer call.
        prompt = tok(self.render(conversation, visuals, True), add_special_tokens=False)["input_ids"]
        answers = tok([text + self._answer_end(last=True) for text in texts], add_special_tokens=False)["input_ids"]
        scores: list[TextScore] = []
        for start in range(0, len(texts), size):
            completions = answers[start : start + size]
            rows = [prompt + c for c in completions]
            lengths = [len(c) for c in completions]
            # Left padding: every row ends at the same position, so the logits of the last
            # max(answer) + 1 positions cover every answer (no full-vocabulary logits for the video).
            inputs: dict[str, Any] = {
                "input_ids": pad_rows(rows, tok.pad_token_id, "left"),
                "attention_mask": pad_rows([[1] * len(r) for r in rows], 0, "left"),
            }
            extras = [self.row_extras(r) for r in rows]
            for key in extras[0]:
                inputs[key] = pad_rows([e[key] for e in extras], 0, "left")
            if features is not None:
                inputs.update(self.model_inputs(shared, vision_features=features, repeat=len(rows)))
            elif visuals:
                inputs.update(self.visual_batch(visuals * len(rows)))
            inputs = self._to_model(inputs, model)
            keep = max(lengths) + 1
            with torch.no_grad():
                logits = model(**inputs, logits_to_keep=keep, use_cache=False).logits.float()
            logprobs = torch.log_softmax(logits[:, :-1], dim=-1)  # position j predicts token j + 1 of the kept window
            targets = inputs["input_ids"][:, -(keep - 1):]
            for i, n in enumerate(lengths):
                lp = logprobs[i, keep - 1 - n :]
                tgt = targets[i, keep - 1 - n :]
                picked = lp.gather(-1, tgt[:, None])[:, 0]
                greedy = bool((lp.argmax(-1) == tgt).all())
                scores.append(TextScore(float(picked.sum()), n, greedy))
        return scores

    # -- training ---------------------------------------------------------------------------
    def _answer_end(self, last: bool) -> str:
        """What follows an answer's text in its tokens (``turn_end``)."""
        if self.options.turn_end == "with_newline" or not last:
            return self.end_of_turn + "\n"
        return self.end_of_turn

    def answer_ids(self, text: str, last: bool = True) -> tuple[list[int], list[int]]:
        """An assistant answer's token ids and labels (``-100``: not trained). ``swift``: the
        answer + end-of-turn token trained; an earlier turn's newline after it (which the chat
        template puts before the next turn) in the ids, untrained; nothing after the last
        answer. ``with_newline``: answer + end of turn + newline, all trained."""
        tok = self.processor
        ids = tok(text + self._answer_end(last), add_special_tokens=False)["input_ids"]
        if self.options.turn_end == "with_newline" or last:
            return ids, list(ids)
        trained = tok(text + self.end_of_turn, add_special_tokens=False)["input_ids"]
        if ids[: len(trained)] != trained:
            raise ModelError(f"{self.family}: the tokenizer merges the end of turn with the newline after it")
        return ids, trained + [-100] * (len(ids) - len(trained))

    def _prompt_and_answer(self, prompt_messages, visuals, answer: str) -> tuple[list[int], list[int]]:
        tok = self.processor
        prompt = tok(self.render(prompt_messages, visuals, True), add_special_tokens=False)["input_ids"]
        completion, _ = self.answer_ids(answer, last=True)  # a last answer: every token trained
        return prompt, completion

    def encode_preference(self, *, video, prompt, chosen, rejected, max_length, fps=None, max_frames=None, max_pixels=None,
                          min_pixels=None, total_pixels=None):
        item = video if isinstance(video, dict) else {"type": "video", "path": str(video)}
        vis = self.training_visual_inputs(item, fps, max_frames, max_pixels, min_pixels, total_pixels)
        messages = [{"role": "user", "content": [item, {"type": "text", "text": prompt}]}]
        out: dict[str, Any] = {"visuals": [vis]}
        for side, answer in (("chosen", chosen), ("rejected", rejected)):
            p, c = self._prompt_and_answer(messages, [vis], answer)
            if len(p) + len(c) > max_length:
                raise SkipSample(f"{side}: {len(p) + len(c)} tokens ({vis['tokens']} visual) > max_length {max_length}")
            ids = p + c
            out[f"{side}_input_ids"] = ids
            out[f"{side}_labels"] = [-100] * len(p) + c
            out.update({f"{side}_{k}": v for k, v in self.row_extras(ids).items()})
        return out

    def encode_sft(self, *, messages, videos, max_length, fps=None, max_frames=None, max_pixels=None, min_pixels=None,
                   total_pixels=None):
        # ``<video>`` placeholders in text, or video items, in order; paths from ``videos``.
        paths = list(videos)
        visuals, converted = [], []
        for m in messages:
            content = m["content"]
            if isinstance(content, str):
                parts = re.split(r"(<video>)", content)
                content = [{"type": "video"} if p == "<video>" else {"type": "text", "text": p} for p in parts if p]
            items = []
            for c in content:
                if c["type"] == "video" and "path" not in c and c.get("frames") is None:
                    if not paths:
                        raise SkipSample("more <video> placeholders than videos")
                    c = {"type": "video", "path": str(paths.pop(0))}
                if c["type"] in ("video", "image"):
                    visuals.append(self.training_visual_inputs(c, fps, max_frames, max_pixels, min_pixels, total_pixels))
                items.append(c)
            converted.append({"role": m["role"], "content": items})
        tok = self.processor
        ids, labels = [], []
        # Render turn by turn: text up to each assistant turn is prompt, the turn itself is learned.
        done = 0
        last = max((k for k, m in enumerate(converted) if m["role"] == "assistant"), default=-1)
        for k, m in enumerate(converted):
            if m["role"] != "assistant":
                continue
            head = self.render(converted[:k], visuals[: self._count(converted[:k])], True)
            head_ids = tok(head, add_special_tokens=False)["input_ids"]
            if head_ids[:done] != ids:
                # The template renders the earlier turns otherwise than they were just encoded
                # (a template that rewrites past answers, a merge across a turn's edge): the
                # sample would be built from pieces that do not line up. Say so, never guess.
                at = next((i for i, (a, b) in enumerate(zip(head_ids, ids)) if a != b), min(len(head_ids), len(ids)))
                raise TempleError(
                    f"{self.describe()}: the chat template renders turn {k}'s history differently from its encoded "
                    f"turns (first difference at token {at}: {tok.decode(head_ids[at:at + 8])!r} vs "
                    f"{tok.decode(ids[at:at + 8])!r}); multi-turn SFT samples cannot be encoded turn by turn with it"
                )
            prompt_part = head_ids[done:]
            text = "".join(c.get("text", "") for c in m["content"])
            answer, answer_labels = self.answer_ids(text, last=k == last)
            ids += prompt_part + answer
            labels += [-100] * len(prompt_part) + answer_labels
            done = len(ids)
        if not ids:
            raise SkipSample("no assistant turn")
        if len(ids) > max_length:
            raise SkipSample(f"{len(ids)} tokens > max_length {max_length}")
        return {"input_ids": ids, "labels": labels, **self.row_extras(ids), "visuals": visuals}

    @staticmethod
    def _count(messages) -> int:
        return sum(1 for m in messages for c in m["content"] if c["type"] in ("video", "image"))

    def collate_preference(self, encoded):
        pad = self.processor.pad_token_id
        batch: dict[str, Any] = {}
        for side in ("chosen", "rejected"):
            rows = [e[f"{side}_input_ids"] for e in encoded]
            batch[f"{side}_input_ids"] = pad_rows(rows, pad)
            batch[f"{side}_attention_mask"] = pad_rows([[1] * len(r) for r in rows], 0)
            batch[f"{side}_labels"] = pad_rows([e[f"{side}_labels"] for e in encoded], -100)
            for key in self.row_extras([]):
                batch[f"{side}_{key}"] = pad_rows([e[f"{side}_{key}"] for e in encoded], 0)
        batch.update(self.visual_batch([v for e in encoded for v in e["visuals"]]))
        return batch

    def collate_sft(self, encoded):
        pad = self.processor.pad_token_id
        rows = [e["input_ids"] for e in encoded]
        batch = {
            "input_ids": pad_rows(rows, pad),
            "attention_mask": pad_rows([[1] * len(r) for r in rows], 0),
            "labels": pad_rows([e["labels"] for e in encoded], -100),
        }
        for key in self.row_extras([]):
            batch[key] = pad_rows([e[key] for e in encoded], 0)
        batch.update(self.visual_batch([v for e in encoded for v in e["visuals"]]))
        return batch

    @staticmethod
    def inner_model(model):
        """The ``...Model`` inside a ``...ForConditionalGeneration``, through a PEFT wrapper if
        there is one: where ``get_video_features`` / ``get_image_features`` live (for
        :meth:`vision_features`)."""
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        return base.model

    # -- prefix sharing -------------------------------------------------------------------------
    def prefix_sharing_unsupported(self, model) -> str | None:
        text = model.config.get_text_config()
        attention = text._attn_implementation or model.config._attn_implementation
        if attention not in self.mask_attention:
            return f"{self.family}: attention {attention!r} takes no 4D mask (needs {' or '.join(self.mask_attention)})"
        if any(t != "full_attention" for t in (getattr(text, "layer_types", None) or ())):
            return f"{self.family}: the language model has {sorted(set(text.layer_types) - {'full_attention'})} layers"
        return super().prefix_sharing_unsupported(model)

    def position_ids(self, model, input_ids, attention_mask, extras, shared, repeat=1):
        # A plain decoder counts positions from 0; right padding leaves real tokens at 0..n-1.
        return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)

    # -- surgery ----------------------------------------------------------------------------
    def vision_module_names(self, model) -> list[str]:
        short = self.visual_module_name()
        return [name for name, _ in model.named_modules() if name.split(".")[-1] == short and name.count(short) == 1]

    def lora_target_modules(self, model) -> list[str]:
        prefixes = tuple(n for n, _ in model.named_modules() if n.endswith("language_model") and n.count("language_model") == 1)
        return linear_module_names(model, prefixes)

    def projector_module_name(self) -> str:
        """Short name of the projector module (``merger`` for Qwen)."""
        raise NotImplementedError

    def projector_module_names(self, model) -> list[str]:
        short = self.projector_module_name()
        return [name for name, _ in model.named_modules() if name.split(".")[-1] == short and name.count(short) == 1]

    def vision_lora_target_modules(self, model) -> list[str]:
        projector = tuple(self.projector_module_names(model))
        inside = tuple(p + "." for p in projector)
        tower = linear_module_names(model, tuple(self.vision_module_names(model)))
        return [name for name in tower if name not in projector and not name.startswith(inside)]

    def merge_and_save(self, model, out_dir) -> None:
        if hasattr(model, "merge_and_unload"):
            model = model.merge_and_unload()
        model.save_pretrained(str(out_dir))
        tok = self.processor
        tok.save_pretrained(str(out_dir))
        copy_processor_files(self.model_dir(), out_dir)


class _build_lock:
    """An exclusive ``flock`` on ``path`` for the ``with`` block (POSIX; elsewhere no lock: two
    builders then both build, and the second rename loses harmlessly)."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        self.handle = open(self.path, "a")
        try:
            import fcntl

            fcntl.flock(self.handle, fcntl.LOCK_EX)
        except ImportError:  # pragma: no cover - not POSIX
            pass
        return self

    def __exit__(self, *exc):
        self.handle.close()  # closing releases the lock
        return False


#: Files beside the weights that processors and tokenizers read: a merged folder carries the
#: starting checkpoint's own copy of each, byte for byte, so that AutoProcessor, lmms-eval,
#: vLLM or ms-swift load a model temple trained exactly as they load the original.
PROCESSOR_FILES = (
    "preprocessor_config.json", "video_preprocessor_config.json", "processor_config.json",
    "chat_template.json", "chat_template.jinja", "tokenizer.json", "tokenizer_config.json",
    "special_tokens_map.json", "added_tokens.json", "vocab.json", "merges.txt", "tokenizer.model",
)


def copy_processor_files(source, out_dir) -> list[str]:
    """Copy every processor/tokenizer file of ``source`` into ``out_dir`` (replacing the re-saved
    ones); returns the names copied."""
    copied = []
    for name in PROCESSOR_FILES:
        src = Path(source) / name
        if src.is_file():
            shutil.copyfile(src, Path(out_dir) / name)
            copied.append(name)
    return copied
