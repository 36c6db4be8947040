"""``--model temple`` for lmms-eval: lmms-eval's tasks scored through temple's own backends.

So that a benchmark sees a checkpoint exactly as temple trains and evaluates it: the same
video decoding, frame sampling (``fps``, ``max_frames``), resizing (``max_pixels``), chat
template and answer cleaning (MiMo-VL's ``</think>``). Model arguments::

    --model temple --model_args backend=qwen2_vl,path=/runs/x/train/4-sft/merged,fps=2,max_frames=64,max_pixels=250000

(``preset=tiny-random`` instead of ``path`` for the test models; ``device``, ``dtype``,
``batch_size`` as the backend's options). ``generate_until`` runs the backend's batched
``chat`` (greedy unless the task asks to sample; cut at the task's ``until`` strings);
``loglikelihood`` runs ``score_texts`` (the continuation's tokens as temple scores an answer:
the continuation and the end of turn; one vision pass per document). Only importable where
lmms-eval is installed (it needs torchvision: a separate environment, see
scripts/lmms_eval_bridge.sh).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lmms_eval.api.instance import GenerationResult, Instance
from lmms_eval.api.model import lmms

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif")
_FLOATS = ("fps",)
_INTS = ("max_frames", "max_pixels", "min_pixels", "batch_size")


class TempleLMM(lmms):
    """lmms-eval model wrapping a temple backend (see the module doc)."""

    is_simple = True

    def __init__(self, backend: str = "qwen2_vl", path: str | None = None, preset: str | None = None, batch_size=1,
                 device: str | None = None, max_batch_size=None, **options: Any) -> None:
        super().__init__()
        from temple_core.config import Structurer
        from temple_core.plugins import get_plugin_manager

        data: dict[str, Any] = {"name": backend}
        if path:
            data["path"] = str(Path(path).expanduser())
        if preset:
            data["preset"] = preset
        if device:
            data["device"] = device
        for key, value in options.items():
            if value is None:
                continue
            data[key] = float(value) if key in _FLOATS else int(value) if key in _INTS else value
        self.batch_size_per_gpu = int(batch_size or 1)
        data["batch_size"] = self.batch_size_per_gpu
        plugins = get_plugin_manager()
        self.backend = Structurer(plugins).component("backends", data, "--model_args").build(plugins)

    @property
    def batch_size(self) -> int:
        return self.batch_size_per_gpu

    # -- visual items -----------------------------------------------------------------------
    @staticmethod
    def _items(visuals) -> list[dict[str, Any]]:
        import numpy as np

        if visuals is None:
            return []
        if not isinstance(visuals, (list, tuple)):
            visuals = [visuals]
        items = []
        for visual in visuals:
            if isinstance(visual, (list, tuple)):
                items += TempleLMM._items(visual)
            elif isinstance(visual, (str, Path)):
                kind = "image" if str(visual).lower().endswith(IMAGE_SUFFIXES) else "video"
                if kind == "image":
                    from PIL import Image

                    items.append({"type": "image", "image": np.asarray(Image.open(visual).convert("RGB"))})
                else:
                    items.append({"type": "video", "path": str(visual)})
            elif hasattr(visual, "convert"):  # a PIL image
                items.append({"type": "image", "image": np.asarray(visual.convert("RGB"))})
            elif visual is not None:
                raise TypeError(f"temple: unsupported visual {type(visual).__name__}")
        return items

    def _conversation(self, context: str, doc_to_visual, doc_id, task, split) -> list[dict[str, Any]]:
        visuals = doc_to_visual(self.task_dict[task][split][doc_id]) if doc_to_visual is not None else None
        text = context.replace("<image>", "").strip()
        return [{"role": "user", "content": [*self._items(visuals), {"type": "text", "text": text}]}]

    # -- lmms-eval's interface --------------------------------------------------------------
    def generate_until(self, requests: list[Instance]) -> list[str]:
        out: list[str | None] = [None] * len(requests)
        groups: dict[str, list[int]] = {}
        for i, request in enumerate(requests):
            groups.setdefault(repr(sorted(request.args[1].items(), key=lambda kv: kv[0])), []).append(i)
        for indices in groups.values():
            kwargs = dict(requests[indices[0]].args[1])
            until = kwargs.pop("until", None)
            until = [until] if isinstance(until, str) else list(until or [])
            sampling = {"max_new_tokens": int(kwargs.get("max_new_tokens", 128))}
            temperature = float(kwargs.get("temperature", 0) or 0)
            if kwargs.get("do_sample") or temperature > 0:
                sampling.update(do_sample=True, temperature=temperature or 1.0, top_p=float(kwargs.get("top_p", 1.0) or 1.0))
            conversations = [self._conversation(requests[i].args[0], *requests[i].args[2:6]) for i in indices]
            answers = self.backend.chat(conversations, **sampling)
            for i, answer in zip(indices, answers):
                for stop in until:
                    if stop and stop in answer:
                        answer = answer.split(stop, 1)[0]
                out[i] = answer
        return [a if a is not None else "" for a in out]

    def loglikelihood(self, requests: list[Instance]) -> list[tuple[float, bool]]:
        out: list[tuple[float, bool] | None] = [None] * len(requests)
        # One vision pass per (document, context): its options are scored together.
        groups: dict[tuple, list[int]] = {}
        for i, request in enumerate(requests):
            context, _, _, doc_id, task, split = request.args
            groups.setdefault((task, split, doc_id, context), []).append(i)
        for (task, split, doc_id, context), indices in groups.items():
            first = requests[indices[0]].args
            conversation = self._conversation(context, first[2], doc_id, task, split)
            texts = []
            for i in indices:
                target = requests[i].args[1]
                texts.append(target if isinstance(target, str) else target(self.task_dict[task][split][doc_id]))
            for i, score in zip(indices, self.backend.score_texts(conversation, [t.strip() for t in texts], batch_size=self.batch_size)):
                out[i] = (score.logprob, score.greedy)
        # lmms-eval 0.7.3's evaluator passes every response through ``unwrap_generation_output``,
        # which turns a (float, bool) into its string (and ``multiple_choice`` tasks then fail to
        # unpack it); a ``GenerationResult`` is passed through untouched, so the pair rides in one.
        return [GenerationResult(text=o if o is not None else (float("-inf"), False)) for o in out]

    def generate_until_multi_round(self, requests) -> list[str]:
        raise NotImplementedError("temple: multi-round generation is not supported")
