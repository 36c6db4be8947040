"""Qwen2-VL, Qwen2.5-VL and MiMo-VL backends on transformers' own model classes.

Video and images are turned into the model's tensors here (``pixel_values_videos``,
``video_grid_thw``, ``second_per_grid_ts`` for Qwen2.5-VL / MiMo-VL, ``mm_token_type_ids``)
without the transformers processors, which need torchvision (see
``temple_core.vision_tokens`` for the resize equivalence). The tokenizer and its chat
template come from the model directory.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch

from temple_core.backend import Backend, linear_module_names
from temple_core.errors import ModelError, SkipSample
from temple_core.hookspecs import hookimpl
from temple_core.vision_tokens import build_tiny_tokenizer, cache_dir, check_model_dir, item_frames, pad_rows, qwen_patchify

# Qwen2-VL's chat template, reduced to what this project sends (text, video, image items).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for c in message['content'] %}"
    "{% if c['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]


def _options_class():
    @attrs.define(kw_only=True)
    class Options:
        #: A model directory (HF format), e.g. /ckpts/Qwen2-VL-7B-Instruct or a stage's merged/.
        path: str | None = None
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
        #: Frames sampled per second of video.
        fps: float = attrs.field(default=2.0, validator=attrs.validators.gt(0.0))
        #: At most this many frames per video (spread over the range when more).
        max_frames: int = attrs.field(default=100, validator=attrs.validators.ge(1))
        #: Pixels per frame at most after resizing (smart_resize).
        max_pixels: int = attrs.field(default=90000, validator=attrs.validators.ge(784))
        #: Pixels per frame at least after resizing (the Qwen image processor's 56*56).
        min_pixels: int = attrs.field(default=3136, validator=attrs.validators.ge(784))
        #: Conversations per generate call.
        batch_size: int = attrs.field(default=8, validator=attrs.validators.ge(1))
        #: Run the checkpoint's own Python code (not needed for these HF-format models).
        trust_remote_code: bool = False

    return Options


class QwenVLBackend(Backend):
    """Shared Qwen-VL code; subclasses name the family, model class and config."""

    family = ""
    model_types: tuple[str, ...] = ()
    has_second_per_grid = False
    Options = _options_class()

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
        tok = build_tiny_tokenizer(SPECIAL_TOKENS, CHAT_TEMPLATE, eos="<|im_end|>", pad="<|endoftext|>")
        config = self._tiny_config(tok)
        torch.manual_seed(0)
        model = self._model_class()(config)
        model.generation_config.eos_token_id = tok.convert_tokens_to_ids("<|im_end|>")
        model.generation_config.pad_token_id = tok.pad_token_id
        model.generation_config.bos_token_id = None
        tmp = folder.with_name(folder.name + f".tmp{id(self)}")
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
            check_model_dir(folder, self.family, self.model_types, self.options.trust_remote_code)
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

    def _ids(self):
        cfg = self.model.config
        return cfg.image_token_id, cfg.video_token_id

    # -- visual tensors ---------------------------------------------------------------------
    def _vision_cfg(self):
        return self.model.config.vision_config

    def visual_inputs(self, item: dict[str, Any], fps: float | None = None, max_frames: int | None = None,
                      max_pixels: int | None = None, min_pixels: int | None = None) -> dict[str, Any]:
        """One content item (video or image) -> ``{"kind", "pixels", "grid", "tokens", "seconds_per_grid"}``."""
        vc = self._vision_cfg()
        fps = fps or self.options.fps
        common = dict(
            patch_size=vc.patch_size, merge_size=vc.spatial_merge_size, temporal_patch_size=vc.temporal_patch_size,
            min_pixels=min_pixels or self.options.min_pixels, max_pixels=max_pixels or self.options.max_pixels,
        )
        if item["type"] == "image":
            image = np.asarray(item["image"])[None]
            # The image processor tiles one image over the temporal patch.
            pixels, grid = qwen_patchify(np.repeat(image, vc.temporal_patch_size, 0), **common)
            kind, rate = "image", None
        else:
            frames, rate = item_frames(item, fps, max_frames or self.options.max_frames)
            pixels, grid = qwen_patchify(frames, **common)
            kind = "video"
        tokens = grid[0] * grid[1] * grid[2] // vc.spatial_merge_size**2
        spg = vc.temporal_patch_size / rate if rate else None
        return {"kind": kind, "pixels": pixels, "grid": grid, "tokens": tokens, "seconds_per_grid": spg}

    def _render(self, messages, visuals: list[dict], add_generation_prompt: bool) -> str:
        """Chat-template text with each visual placeholder expanded to its token count."""
        text = self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
        queue = list(visuals)

        def expand(match):
            if not queue:
                raise ModelError(f"{self.family}: more visual placeholders than visual items")
            v = queue.pop(0)
            if match.group(0) != f"<|{v['kind']}_pad|>":
                raise ModelError(f"{self.family}: visual items out of order with the template's placeholders")
            return match.group(0) * v["tokens"]

        text = re.sub(r"<\|(?:video|image)_pad\|>", expand, text)
        if queue:
            raise ModelError(f"{self.family}: the chat template dropped {len(queue)} visual item(s)")
        return text

    def _token_types(self, ids: list[int]) -> list[int]:
        image_id, video_id = self._ids()
        return [1 if t == image_id else 2 if t == video_id else 0 for t in ids]

    def _visual_batch(self, visuals: list[dict]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        videos = [v for v in visuals if v["kind"] == "video"]
        images = [v for v in visuals if v["kind"] == "image"]
        if videos:
            out["pixel_values_videos"] = torch.cat([v["pixels"] for v in videos])
            out["video_grid_thw"] = torch.tensor([v["grid"] for v in videos])
            if self.has_second_per_grid:
                out["second_per_grid_ts"] = torch.tensor([v["seconds_per_grid"] for v in videos])
        if images:
            out["pixel_values"] = torch.cat([v["pixels"] for v in images])
            out["image_grid_thw"] = torch.tensor([v["grid"] for v in images])
        return out

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
        types = pad_rows([self._token_types(r) for r in rows], 0, "left")
        inputs = {"input_ids": input_ids, "attention_mask": attention, "mm_token_type_ids": types, **self._visual_batch(visuals)}
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
        return [self.clean(t) for t in tok.batch_decode(new, skip_special_tokens=True)]

    # -- training ---------------------------------------------------------------------------
    def _encode(self, messages, visuals, answer_turns: list[tuple[list[dict], str]] | None, max_length):
        raise NotImplementedError

    def _prompt_and_answer(self, prompt_messages, visuals, answer: str) -> tuple[list[int], list[int]]:
        tok = self.processor
        prompt = tok(self._render(prompt_messages, visuals, True), add_special_tokens=False)["input_ids"]
        completion = tok(answer + "<|im_end|>\n", add_special_tokens=False)["input_ids"]
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
            out[f"{side}_mm_token_type_ids"] = self._token_types(ids)
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
            answer = tok(text + "<|im_end|>\n", add_special_tokens=False)["input_ids"]
            ids += prompt_part + answer
            labels += [-100] * len(prompt_part) + answer
            done = len(ids)
        if not ids:
            raise SkipSample("no assistant turn")
        if len(ids) > max_length:
            raise SkipSample(f"{len(ids)} tokens > max_length {max_length}")
        return {"input_ids": ids, "labels": labels, "mm_token_type_ids": self._token_types(ids), "visuals": visuals}

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
            batch[f"{side}_mm_token_type_ids"] = pad_rows([e[f"{side}_mm_token_type_ids"] for e in encoded], 0)
        batch.update(self._visual_batch([v for e in encoded for v in e["visuals"]]))
        return batch

    def collate_sft(self, encoded):
        pad = self.processor.pad_token_id
        rows = [e["input_ids"] for e in encoded]
        batch = {
            "input_ids": pad_rows(rows, pad),
            "attention_mask": pad_rows([[1] * len(r) for r in rows], 0),
            "labels": pad_rows([e["labels"] for e in encoded], -100),
            "mm_token_type_ids": pad_rows([e["mm_token_type_ids"] for e in encoded], 0),
        }
        batch.update(self._visual_batch([v for e in encoded for v in e["visuals"]]))
        return batch

    @staticmethod
    def _inner(model):
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        return base.model

    def vision_features(self, model, shared):
        """Per-video vision embeddings (a tuple, one tensor per video), from the model's own
        ``get_video_features`` so they are exactly what its forward would compute."""
        inner = self._inner(model)
        out = inner.get_video_features(shared["pixel_values_videos"], shared["video_grid_thw"], return_dict=True)
        return tuple(out.pooler_output)

    def model_inputs(self, shared, *, vision_features=None, repeat=1):
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        out: dict[str, Any] = {"video_grid_thw": shared["video_grid_thw"].repeat(repeat, 1)}
        if self.has_second_per_grid and "second_per_grid_ts" in shared:
            out["second_per_grid_ts"] = shared["second_per_grid_ts"].repeat(repeat)
        if vision_features is None:
            out["pixel_values_videos"] = shared["pixel_values_videos"].repeat(repeat, 1)
        else:
            # transformers' precomputed-encoder path: the model scatters these into the
            # video-token positions and skips its vision tower.
            out["mm_encoder_outputs"] = {"video": BaseModelOutputWithPooling(pooler_output=tuple(vision_features) * repeat)}
        return out

    # -- surgery ----------------------------------------------------------------------------
    def vision_module_names(self, model) -> list[str]:
        return [name for name, _ in model.named_modules() if name.endswith("visual") and name.count("visual") == 1]

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


class Qwen2VLBackend(QwenVLBackend):
    """Qwen2-VL (transformers ``Qwen2VLForConditionalGeneration``)."""

    family = "qwen2_vl"
    model_types = ("qwen2_vl",)

    def _model_class(self):
        from transformers import Qwen2VLForConditionalGeneration

        return Qwen2VLForConditionalGeneration

    def _tiny_config(self, tok):
        from transformers import Qwen2VLConfig

        return Qwen2VLConfig(
            text_config=_tiny_text(tok),
            vision_config=dict(depth=2, embed_dim=32, hidden_size=64, num_heads=2, mlp_ratio=2, patch_size=14, spatial_merge_size=2, temporal_patch_size=2),
            **_token_ids(tok),
        )


class Qwen2_5VLBackend(QwenVLBackend):
    """Qwen2.5-VL (transformers ``Qwen2_5_VLForConditionalGeneration``; video time in ``second_per_grid_ts``)."""

    family = "qwen2_5_vl"
    model_types = ("qwen2_5_vl",)
    has_second_per_grid = True

    def _model_class(self):
        from transformers import Qwen2_5_VLForConditionalGeneration

        return Qwen2_5_VLForConditionalGeneration

    def _tiny_config(self, tok):
        from transformers import Qwen2_5_VLConfig

        return Qwen2_5_VLConfig(
            text_config=_tiny_text(tok),
            vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, out_hidden_size=64, num_heads=2, patch_size=14,
                               spatial_merge_size=2, temporal_patch_size=2, window_size=56, fullatt_block_indexes=[1]),
            **_token_ids(tok),
        )


class MiMoVLBackend(Qwen2_5VLBackend):
    """MiMo-VL (Qwen2.5-VL architecture; reasons in ``<think>...</think>``, the answer follows)."""

    family = "mimo_vl"

    def clean(self, text: str) -> str:
        # The answer is what follows the last </think>; a reasoning never closed has no answer yet.
        if "</think>" in text:
            return text.rsplit("</think>", 1)[1].strip()
        return text.replace("<think>", "").strip()

    def _chat_batch(self, *args):
        # Keep </think> in the decoded text so clean() can split on it.
        return super()._chat_batch(*args)


def _tiny_text(tok) -> dict:
    return dict(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=4096,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [2, 3, 3]},
        # Untied and a wide init: a random model that writes varied text (tied small weights
        # echo the last prompt token forever, which would make output comparisons vacuous).
        tie_word_embeddings=False, initializer_range=0.2,
        bos_token_id=None, eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"), pad_token_id=tok.pad_token_id,
    )


def _token_ids(tok) -> dict:
    ids = tok.convert_tokens_to_ids
    return dict(
        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"),
        bos_token_id=None, eos_token_id=ids("<|im_end|>"), pad_token_id=tok.pad_token_id, tie_word_embeddings=False,
    )


@hookimpl
def register_backends(register):
    register("qwen2_vl", Qwen2VLBackend)
    register("qwen2_5_vl", Qwen2_5VLBackend)
    register("mimo_vl", MiMoVLBackend)
