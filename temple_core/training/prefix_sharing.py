"""Prefix-shared DPO pairs: a pair's prompt (the video and the instruction, thousands of tokens)
is computed once, not once for the chosen and once for the rejected row.

TRL's DPO batch is ``[chosen; rejected]``: two rows per pair that repeat the same prompt, for
the policy (forward and backward) and for the reference. In TEMPLE's pairs the prompt is
nearly everything (~5,700 video tokens against a few hundred answer tokens at the paper's
settings), so half of the language model's work is a copy. Here a pair is one packed row::

    [prompt[:-1]] [prompt[-1], chosen answer] [prompt[-1], rejected answer] [padding]
      segment 0          segment 1                   segment 2

with a 4D attention mask in which each answer segment attends causally to the shared part and
to itself only, and position ids copied from the concatenated rows (so each answer continues
from the prompt's end, with the model's own positions -- 3-D M-RoPE for the Qwen families).
The prompt's last token opens both answer segments: the first token of each answer is predicted
from it, and with a copy of it in each segment every answer token is predicted from the
position just before it, so the plain next-token shift reads every log-probability from its
own answer's span (the copy costs one token per answer).

TRL still sees its own batch: :class:`PackedPairs` rides along in the batch under
:data:`PACKED_KEY`, and :class:`PrefixSharedForward`'s hooks on the model swap the
``[chosen; rejected]`` inputs (and the ``labels`` TRL derives from them) for the packed ones on
the way in, and scatter the per-token outputs (TRL's fused head's log-probabilities, entropy,
... or plain logits) back to the ``[chosen; rejected]`` layout on the way out. Every token of a
concatenated row has its twin in the packed row, with the same context, so TRL's loss and
metrics are computed unchanged from the same numbers.
"""

from __future__ import annotations

from typing import Any

import torch

from temple_core.errors import TempleError

#: The keyword under which a :class:`PackedPairs` travels to the model in TRL's batch.
PACKED_KEY = "prefix_shared_pairs"

#: Per-token fields of TRL's fused LM head output (shape ``(rows, length - 1)``).
SHIFTED_FIELDS = ("log_probs", "entropy", "log_sum_sq_probs", "mean_logits", "is_top1", "label_mask")


class PackedPairs:
    """The index maps between a ``[chosen; rejected]`` batch and its packed rows, and the packed
    model inputs. Built from the concatenated batch's ``input_ids``, ``attention_mask`` and
    ``completion_mask`` (rows ``0..B-1`` chosen, ``B..2B-1`` rejected, right-padded): the prompt
    of pair ``b`` is the tokens before row ``b``'s first completion token, and must be the same
    tokens in both rows."""

    def __init__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, completion_mask: torch.Tensor):
        rows, length = input_ids.shape
        if rows % 2:
            raise TempleError("prefix sharing: a [chosen; rejected] batch has an even number of rows")
        pairs = rows // 2
        device = input_ids.device
        lengths = attention_mask.sum(-1).tolist()
        completion = completion_mask.bool()
        spans = []
        for b in range(pairs):
            c, r = b, pairs + b
            starts = [int(completion[i].nonzero()[0]) if completion[i].any() else None for i in (c, r)]
            if None in starts or starts[0] != starts[1] or starts[0] < 1:
                raise TempleError(f"prefix sharing: pair {b} has no common prompt before its answers")
            prompt = starts[0]
            if not torch.equal(input_ids[c, :prompt], input_ids[r, :prompt]):
                raise TempleError(f"prefix sharing: pair {b}'s chosen and rejected rows differ in the prompt")
            answers = (int(lengths[c]) - prompt, int(lengths[r]) - prompt)
            for i, n in zip((c, r), answers):
                if not bool(completion[i, prompt : prompt + n].all()) or int(completion[i].sum()) != n:
                    raise TempleError(f"prefix sharing: row {i}'s answer is not one span at the end of the row")
            spans.append((prompt, *answers))
        packed_length = max(p + 1 + lc + lr for p, lc, lr in spans)
        source = torch.full((pairs, packed_length), -1, dtype=torch.long)
        segment = torch.full((pairs, packed_length), -1, dtype=torch.long)
        inverse = torch.full((rows, length), -1, dtype=torch.long)
        for b, (p, lc, lr) in enumerate(spans):
            c, r = b, pairs + b
            # prompt[:-1] and the chosen segment: the chosen row's first p + lc tokens as they are.
            source[b, : p + lc] = c * length + torch.arange(p + lc)
            segment[b, : p - 1] = 0
            segment[b, p - 1 : p + lc] = 1
            # the rejected segment: the rejected row's tokens from prompt[-1] on.
            start = p + lc
            source[b, start : start + 1 + lr] = r * length + torch.arange(p - 1, p + lr)
            segment[b, start : start + 1 + lr] = 2
            inverse[c, : p + lc] = b * packed_length + torch.arange(p + lc)
            inverse[r, : p - 1] = b * packed_length + torch.arange(p - 1)
            inverse[r, p - 1 : p + lr] = b * packed_length + torch.arange(start, start + 1 + lr)
        self.pairs, self.rows, self.length, self.packed_length = pairs, rows, length, packed_length
        self.spans = spans
        self.source = source.to(device)
        self.segment = segment.to(device)
        self.inverse = inverse.to(device)
        # Shifted (next-token) outputs: view position t scores token t + 1; its twin scores the
        # packed twin of token t + 1 from the packed position before it. Only answer tokens.
        target = self.inverse[:, 1:]
        flat_shifted = (target // packed_length) * (packed_length - 1) + target % packed_length - 1
        self.shifted_inverse = torch.where(completion[:, 1:] & (target >= 0), flat_shifted, -1)
        self.model_kwargs: dict[str, Any] = {}
        self._mask: torch.Tensor | None = None

    # -- layouts --------------------------------------------------------------------------------
    def to_packed(self, view: torch.Tensor, fill) -> torch.Tensor:
        """A ``(..., 2B, L)`` tensor of the concatenated rows -> ``(..., B, N)`` packed rows."""
        lead = view.shape[:-2]
        flat = view.reshape(*lead, self.rows * self.length)
        out = flat[..., self.source.clamp(min=0)]
        return torch.where(self.source >= 0, out, torch.as_tensor(fill, dtype=view.dtype, device=view.device))

    def _gather(self, packed: torch.Tensor, index: torch.Tensor, width: int) -> torch.Tensor:
        trailing = packed.shape[2:]
        flat = packed.reshape(self.pairs * width, *trailing)
        out = flat[index.clamp(min=0)]
        keep = (index >= 0).view(*index.shape, *([1] * len(trailing)))
        return torch.where(keep, out, torch.zeros((), dtype=out.dtype, device=out.device))

    def shifted_to_view(self, packed: torch.Tensor) -> torch.Tensor:
        """A next-token output ``(B, N - 1, ...)`` -> ``(2B, L - 1, ...)``, zero off the answers."""
        return self._gather(packed, self.shifted_inverse, self.packed_length - 1)

    def to_view(self, packed: torch.Tensor) -> torch.Tensor:
        """A per-token output ``(B, N, ...)`` (e.g. logits) -> ``(2B, L, ...)``, zero on padding."""
        return self._gather(packed, self.inverse, self.packed_length)

    def attention_mask(self) -> torch.Tensor:
        """``(B, 1, N, N)`` boolean, True where query ``q`` attends key ``k``: causally, to the
        shared part and to its own segment; a padding position attends to itself only (no row
        of the mask is empty). Built once (the policy and the reference forward share it)."""
        if self._mask is None:
            self._mask = self._build_mask()
        return self._mask

    def _build_mask(self) -> torch.Tensor:
        seg = self.segment
        index = torch.arange(self.packed_length, device=seg.device)
        causal = index[None, :] <= index[:, None]
        keys, queries = seg[:, None, :], seg[:, :, None]
        mask = causal & ((keys == 0) | (keys == queries)) & (keys >= 0) & (queries >= 0)
        mask |= torch.eye(self.packed_length, dtype=torch.bool, device=seg.device)
        return mask[:, None]

    # -- outputs --------------------------------------------------------------------------------
    def unpack_output(self, output):
        """The model's output on packed rows -> the same output type on the concatenated rows."""
        changes = {}
        for name in SHIFTED_FIELDS:
            value = getattr(output, name, None)
            if isinstance(value, torch.Tensor):
                changes[name] = self.shifted_to_view(value)
        logits = getattr(output, "logits", None)
        if isinstance(logits, torch.Tensor):
            changes["logits"] = self.to_view(logits)
        for name, value in changes.items():
            output[name] = value
        return output


class PrefixSharedForward:
    """Forward hooks on the module TRL calls (the PEFT model): a call that carries a
    :class:`PackedPairs` under :data:`PACKED_KEY` runs on the packed rows; any other call is
    untouched. Both the policy forward and the reference forward (adapter disabled, the same
    module) go through it."""

    def __init__(self, module: torch.nn.Module):
        self.module = module
        self.active: PackedPairs | None = None
        self.handles = [
            module.register_forward_pre_hook(self._pre, with_kwargs=True),
            module.register_forward_hook(self._post, with_kwargs=True, always_call=True),
        ]

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()

    def _pre(self, module, args, kwargs):
        packed = kwargs.pop(PACKED_KEY, None)
        self.active = packed
        if packed is None:
            return None
        kwargs.update(packed.model_kwargs)
        kwargs["attention_mask"] = self._mask_for(module, packed)
        if kwargs.get("labels") is not None:
            kwargs["labels"] = packed.to_packed(kwargs["labels"], -100)
        return args, kwargs

    def _post(self, module, args, kwargs, output):
        packed, self.active = self.active, None
        if packed is None:
            return None
        return packed.unpack_output(output)

    @staticmethod
    def _mask_for(module, packed: PackedPairs) -> torch.Tensor:
        mask = packed.attention_mask()
        config = module.config.get_text_config()
        if config._attn_implementation == "eager":
            # Eager attention adds the mask to the scores: an additive float mask, as transformers' eager_mask.
            dtype = module.get_input_embeddings().weight.dtype
            return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, torch.finfo(dtype).min)
        return mask
