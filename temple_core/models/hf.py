"""Shared machinery of the built-in backends on transformers' ``*ForConditionalGeneration``
classes: option fields, lazy loading from a directory or a cached ``tiny-random`` preset,
chat-template rendering with visual placeholders expanded to their token counts, batched
generation (left padding, one ``generate`` per chunk), preference/SFT encoding and padding,
and LoRA surgery. A family subclass supplies only what differs: the model class, the tiny
config, its visual tensors (:meth:`HFChatBackend.visual_inputs`, :meth:`HFChatBackend.visual_batch`)
and how they enter the model (:meth:`vision_features`, :meth:`model_inputs`).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import attrs
import torch

from temple_core.config import path_field
from temple_core.errors import ModelError, SkipSample
from temple_core.models.backend import Backend, linear_module_names
from temple_core.models.vision_tokens import build_tiny_tokenizer, cache_dir, check_model_dir, pad_rows
from temple_core.store.files import clean_stale_temps, temp_path


def options_class(default_max_pixels: int = 90000, default_min_pixels: int = 3136):
    @attrs.define(kw_only=True)
    class Options:
        #: A model directory (HF format), e.g. /ckpts/Qwen2-VL-7B-Instruct or a stage's merged/
        #: (relative to the recipe file; checked when the model loads).
        path: str | None = path_field(None, kind=None)
        #: A built-in test model instead of ``path``: ``tiny-random`` (random weights, built once, cached).
        preset: str | None = attrs.field(default=None, validator=attrs.validators.optional(attrs.validators.in_(["tiny-random"])))
        #: torch dtype name (auto, float32, bfloat16, float16).
        dtype: str = attrs.field(default="auto", validator=attrs.validators.in_(["auto", "float32", "bfloat16", "float16"]))
        #: Device of the whole model (ignored when device_map is given).
        device: str = "cpu"
        #: transformers device_map (e.g. auto) for a model split across devices.
        device_map: str | None = None
        #: transformers attention implementation (sdpa, eager, flash_attention_2).
        attn_implementation: str | None = None
        #: Frames sampled per second of video. (SPEC §5: 2 fps for training)
        fps: float = attrs.field(default=2.0, validator=attrs.validators.gt(0.0))
        #: At most this many frames per video (spread over the range when more). (SPEC §5)
        max_frames: int = attrs.field(default=100, validator=attrs.validators.ge(1))
        #: Pixels per frame at most after resizing (smart_resize). (SPEC §5: 90,000 for training)
        max_pixels: int = attrs.field(default=default_max_pixels, validator=attrs.validators.ge(784))
        #: Pixels per frame at least after resizing (the Qwen image processor's 56*56); smaller
        #: frames are enlarged to it, so at most 12,845,056 (Qwen's largest image) and <= max_pixels.
        min_pixels: int = attrs.field(default=default_min_pixels, validator=[attrs.validators.ge(784), attrs.validators.le(12_845_056)])
        #: Conversations per generate call.
        batch_size: int = attrs.field(default=8, validator=attrs.validators.ge(1))
        #: Run the checkpoint's own Python code (not needed for these HF-format models).
        trust_remote_code: bool = False

        def __attrs_post_init__(self):
            if self.min_pixels > self.max_pixels:
                raise ValueError(f"min_pixels ({self.min_pixels}) is larger than max_pixels ({self.max_pixels})")

    return Options


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
    #: Chat-template placeholders, one per visual item, expanded by :meth:`expand_placeholder`.
    placeholder_pattern = r"<\|(?:video|image)_pad\|>"

    # -- loading ----------------------------------------------------------------------------
    def _model_class(self):
        raise NotImplementedError

    def _tiny_config(self, tok):
        raise NotImplementedError

    def _preset_dir(self) -> Path:
        folder = cache_dir() / "presets" / f"{self.family}-{self.options.preset}"
        if (folder / "config.json").is_file():
            return folder
        # Built once, deterministically, then loaded through the same path code as a checkpoint.
        tok = build_tiny_tokenizer(self.special_tokens, self.chat_template, eos=self.end_of_turn, pad=self.pad_token)
        config = self._tiny_config(tok)
        with torch.random.fork_rng():  # seeded build without disturbing the caller's RNG
            torch.manual_seed(0)
            model = self._model_class()(config)
        model.generation_config.eos_token_id = tok.convert_tokens_to_ids(self.end_of_turn)
        model.generation_config.pad_token_id = tok.pad_token_id
        model.generation_config.bos_token_id = None
        # A build killed midway leaves its temporary folder: removed once its process is gone.
        clean_stale_temps(folder.parent, legacy=True)
        tmp = temp_path(folder)
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        try:
            tmp.rename(folder)
        except OSError:  # another process built it first
            shutil.rmtree(tmp, ignore_errors=True)
        return folder

    def model_dir(self) -> str:
        return str(self._preset_dir()) if self.options.preset else self.options.path

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
            model = self._model_class().from_pretrained(folder, **kwargs)
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
                      max_pixels: int | None = None, min_pixels: int | None = None) -> dict[str, Any]:
        """One video/image content item -> a dict with at least ``kind`` and ``tokens``."""
        raise NotImplementedError

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

    def _render(self, messages, visuals: list[dict], add_generation_prompt: bool) -> str:
        """Chat-template text with each visual placeholder expanded to its token count."""
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

    def chat(self, conversations, *, max_new_tokens=512, do_sample=False, temperature=1.0, top_p=1.0,
             repetition_penalty=1.0, seed=None) -> list[str]:
        answers: list[str] = []
        size = self.options.batch_size
        for start in range(0, len(conversations), size):
            answers += self._chat_batch(conversations[start : start + size], max_new_tokens, do_sample, temperature, top_p, repetition_penalty, seed)
        return answers

    def _chat_batch(self, conversations, max_new_tokens, do_sample, temperature, top_p, repetition_penalty, seed):
        model, tok = self.model, self.processor
        rows, visuals = [], []
        for conversation in conversations:
            items = [c for m in conversation if not isinstance(m["content"], str) for c in m["content"] if c["type"] in ("video", "image")]
            vis = [self.visual_inputs(c) for c in items]
            rows.append(tok(self._render(conversation, vis, True), add_special_tokens=False)["input_ids"])
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
        sampling = {"do_sample": do_sample}
        if do_sample:
            sampling.update(temperature=temperature, top_p=top_p)
            if seed is not None:
                torch.manual_seed(seed)
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=max_new_tokens, repetition_penalty=repetition_penalty,
                                 pad_token_id=tok.pad_token_id, **sampling)
        new = out[:, input_ids.shape[1]:]
        return [self.clean(self.decode(row)) for row in new]

    def decode(self, ids) -> str:
        """Generated ids -> text, special tokens dropped."""
        return self.processor.decode(ids, skip_special_tokens=True)

    # -- training ---------------------------------------------------------------------------
    def _prompt_and_answer(self, prompt_messages, visuals, answer: str) -> tuple[list[int], list[int]]:
        tok = self.processor
        prompt = tok(self._render(prompt_messages, visuals, True), add_special_tokens=False)["input_ids"]
        completion = tok(answer + self.end_of_turn + "\n", add_special_tokens=False)["input_ids"]
        return prompt, completion

    def encode_preference(self, *, video, prompt, chosen, rejected, max_length, fps=None, max_frames=None, max_pixels=None):
        item = video if isinstance(video, dict) else {"type": "video", "path": str(video)}
        vis = self.visual_inputs(item, fps, max_frames, max_pixels)
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

    def encode_sft(self, *, messages, videos, max_length, fps=None, max_frames=None, max_pixels=None):
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
                    visuals.append(self.visual_inputs(c, fps, max_frames, max_pixels))
                items.append(c)
            converted.append({"role": m["role"], "content": items})
        tok = self.processor
        ids, labels = [], []
        # Render turn by turn: text up to each assistant turn is prompt, the turn itself is learned.
        done = 0
        for k, m in enumerate(converted):
            if m["role"] != "assistant":
                continue
            head = self._render(converted[:k], visuals[: self._count(converted[:k])], True)
            head_ids = tok(head, add_special_tokens=False)["input_ids"]
            prompt_part = head_ids[done:]
            text = "".join(c.get("text", "") for c in m["content"])
            answer = tok(text + self.end_of_turn + "\n", add_special_tokens=False)["input_ids"]
            ids += prompt_part + answer
            labels += [-100] * len(prompt_part) + answer
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

    # -- surgery ----------------------------------------------------------------------------
    def vision_module_names(self, model) -> list[str]:
        short = self.visual_module_name()
        return [name for name, _ in model.named_modules() if name.split(".")[-1] == short and name.count(short) == 1]

    def lora_target_modules(self, model) -> list[str]:
        prefixes = tuple(n for n, _ in model.named_modules() if n.endswith("language_model") and n.count("language_model") == 1)
        return linear_module_names(model, prefixes)

    def vision_lora_target_modules(self, model) -> list[str]:
        return linear_module_names(model, tuple(self.vision_module_names(model)))

    def merge_and_save(self, model, out_dir) -> None:
        if hasattr(model, "merge_and_unload"):
            model = model.merge_and_unload()
        model.save_pretrained(str(out_dir))
        tok = self.processor
        tok.save_pretrained(str(out_dir))
