"""The model backend protocol: one Video LLM family behind one small interface.

A backend component (hook ``register_backends``) is built from its recipe options
(``path`` *or* ``preset``, dtype, device, video sampling...) and loads its model lazily,
on first use. Everything model-specific lives behind these methods, so the generation
stage and the trainers never touch a processor, a chat template or a video tensor.

Conversation format (``chat``), HF-chat style::

    [{"role": "user", "content": [
        {"type": "video", "path": "a.mp4", "start": 1.0, "end": 4.5},   # seconds, both optional
        {"type": "video", "frames": [np.ndarray (H, W, 3) uint8 RGB, ...]},   # + optional "fps"
        {"type": "video", "frames": [...], "max_pixels": 401408},  # per-item pixel bounds win
        {"type": "image", "image": np.ndarray (H, W, 3) uint8 RGB},
        {"type": "text", "text": "Describe the video."}]}]

Training batches (``collate_preference`` / ``collate_sft``): ``labels`` is ``-100``
exactly over the prompt (system, user turns, visual tokens, the assistant header) and
padding, and equals ``input_ids`` elsewhere. Sequences are never truncated through
visual tokens: a sample that does not fit ``max_length`` raises
:class:`temple_core.errors.SkipSample`.

Preference batch keys::

    chosen_input_ids, chosen_attention_mask, chosen_labels, (chosen_<other per-token keys>)
    rejected_input_ids, rejected_attention_mask, rejected_labels, (rejected_<...>)
    <shared visual tensors>        # one video per pair, used by both chosen and rejected

Per-token keys other than ids/mask/labels (e.g. Qwen's ``mm_token_type_ids``) are padded
with 0. The shared keys never go to the model directly: :meth:`Backend.model_inputs` turns
them into model keyword arguments (raw visual tensors, or precomputed vision features
from :meth:`Backend.vision_features` -- the frozen tower's output is identical for chosen
and rejected, policy and reference, so trainers compute it once per pair).

Prefix sharing (``supports_prefix_sharing``): a trainer may run a pair as one packed sequence
``[prompt; chosen answer; rejected answer]`` whose answers attend to the prompt and to
themselves only (a prepared 4D attention mask) and continue the prompt's positions. What it
needs from the backend is the model's own position ids of text rows (:meth:`Backend.position_ids`:
3-D M-RoPE positions for the Qwen families, 1-D elsewhere) and a model whose attention takes a
prepared 4D mask (:meth:`Backend.prefix_sharing_unsupported` says when it does not).
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import attrs

from temple_core.errors import ModelError


@attrs.define(frozen=True)
class TextScore:
    """How likely a backend finds one answer text: the sum of its tokens' log-probabilities."""

    #: Sum over the scored tokens of log p(token | everything before it).
    logprob: float
    #: How many tokens were scored (the answer and the end-of-turn tokens).
    tokens: int
    #: Whether every scored token is the model's most likely next token (greedy decoding would write it).
    greedy: bool = False

    @property
    def mean(self) -> float:
        """The length-normalised log-likelihood (per token)."""
        return self.logprob / self.tokens if self.tokens else float("-inf")


class Backend:
    """Base class of the built-in backends; third-party backends implement the same methods.

    Subclasses define ``family`` (e.g. ``"qwen2_vl"``) and an attrs ``Options`` class with at
    least ``path: str | None`` and ``preset: str | None`` (exactly one given).
    """

    family: str = ""
    #: The backend's models can run prefix-shared pairs (see the module doc): it implements
    #: :meth:`position_ids` and its models take a prepared 4D attention mask.
    supports_prefix_sharing: bool = False

    #: What every backend provides (checked when a plugin registers one; see temple_core.contracts).
    required = (
        "describe", "chat", "encode_preference", "encode_sft", "collate_preference", "collate_sft",
        "vision_features", "model_inputs", "vision_module_names", "lora_target_modules",
        "vision_lora_target_modules", "merge_and_save", "load_model",
    )
    #: Capabilities and their defaults (none yet for backends).
    capabilities: dict = {}

    def __init__(self, options):
        self.options = options
        path, preset = getattr(options, "path", None), getattr(options, "preset", None)
        if (path is None) == (preset is None):
            raise ModelError(f"{self.family}: give exactly one of 'path' (a model directory) or 'preset' (e.g. tiny-random)")
        self._model = None
        self._processor = None

    # -- identity ---------------------------------------------------------------------------
    def describe(self) -> str:
        """``<family>:<preset or path>``, written into outputs for provenance."""
        return f"{self.family}:{self.options.preset or self.options.path}"

    # -- loading ----------------------------------------------------------------------------
    @abstractmethod
    def load_model(self, path: str | None = None):
        """The model (eval mode), loaded on first call. ``path`` reloads from a saved/merged
        model directory instead (the backend then describes that directory)."""
        raise NotImplementedError

    @property
    def model(self):
        return self.load_model()

    @property
    def processor(self):
        """The tokenizer / processing class (pad token, chat template); given to TRL as
        ``processing_class``. Loaded with the model's files, lazily."""
        raise NotImplementedError

    @property
    def tokenizer(self):
        return self.processor

    # -- generation -------------------------------------------------------------------------
    #: The longest answer a caption request allows when the recipe does not say (SPEC §2.1:
    #: 2,048 new tokens; a model that reasons before it answers needs more: MiMo-VL 8,192).
    default_max_new_tokens: int = 2048

    @abstractmethod
    def chat(
        self,
        conversations: list[list[dict[str, Any]]],
        *,
        max_new_tokens: int = 512,
        do_sample: bool | None = False,
        temperature: float | None = 1.0,
        top_p: float | None = 1.0,
        top_k: int | None = None,
        repetition_penalty: float | None = 1.0,
        seed: int | None = None,
    ) -> list[str]:
        """One answer per conversation, in order. Batched: left padding, one ``generate``
        call per chunk of ``options.batch_size`` conversations. Answers are cleaned per
        family (e.g. MiMo-VL: the text after the last ``</think>``). ``seed`` fixes sampling.
        A decoding setting given as ``None`` is the checkpoint's own (``generation_config.json``)."""
        raise NotImplementedError

    # -- scoring ------------------------------------------------------------------------------
    def score_texts(self, conversation: list[dict[str, Any]], texts: list[str], *, batch_size: int | None = None) -> list[TextScore]:
        """The log-likelihood of each of ``texts`` as the assistant's answer to ``conversation``
        (one prompt with its videos/images, the format of :meth:`chat`), one :class:`TextScore`
        per text, in order. The tokens scored are those a training batch labels for an answer
        (the answer and the end of turn), so a score moves with what DPO and SFT train.

        Batched: the prompt's visual inputs are built once and the vision tower runs once for
        all texts; the texts go through the language model ``batch_size`` at a time (default
        ``options.batch_size``). Scores do not depend on the batch size (up to float rounding)."""
        raise NotImplementedError

    def generation_settings(self, **settings) -> dict[str, Any]:
        """The decoding settings ``chat(**settings)`` really uses: each ``None`` replaced by the
        checkpoint's value, plus ``greedy`` (no sampling, or sampling with ``top_k`` 1)."""
        out = dict(settings)
        out["greedy"] = not out.get("do_sample") or out.get("top_k") == 1
        return out

    def clean_description(self, text: str) -> tuple[str, str | None]:
        """A whole-video description (a summary) as pairs use it, and why it is unusable
        (``None``: usable). Family-specific (MiMo-VL, SPEC §2.5); by default the text as it is."""
        return text, None

    # -- training batches -------------------------------------------------------------------
    @abstractmethod
    def encode_preference(
        self, *, video, prompt: str, chosen: str, rejected: str, max_length: int,
        fps: float | None = None, max_frames: int | None = None, max_pixels: int | None = None,
        min_pixels: int | None = None, total_pixels: int | None = None,
    ) -> dict[str, Any]:
        """One pair, unpadded. ``video`` is a path or a video content item (see module doc).
        The video arguments are the stage's video input (docs/training.md); ``total_pixels``
        caps each frame at ``max(min(max_pixels, total_pixels / frames x 2), 1.05 x min_pixels)``.
        Raises ``SkipSample`` when prompt + answer would exceed ``max_length``."""
        raise NotImplementedError

    @abstractmethod
    def encode_sft(
        self, *, messages: list[dict[str, Any]], videos: list, max_length: int,
        fps: float | None = None, max_frames: int | None = None, max_pixels: int | None = None,
        min_pixels: int | None = None, total_pixels: int | None = None,
    ) -> dict[str, Any]:
        """One SFT sample: ``messages`` (HF-chat, ``<video>`` placeholders in text or video
        content items) and the ``videos`` paths they refer to, in order. Loss on assistant
        turns only. Raises ``SkipSample`` when it does not fit ``max_length``."""
        raise NotImplementedError

    @abstractmethod
    def collate_preference(self, encoded: list[dict[str, Any]]) -> dict[str, Any]:
        """Padded preference batch (keys: see module doc)."""
        raise NotImplementedError

    @abstractmethod
    def collate_sft(self, encoded: list[dict[str, Any]]) -> dict[str, Any]:
        """Padded SFT batch: ``input_ids``, ``attention_mask``, ``labels`` and the model's
        visual inputs -- ready for ``model(**batch)``."""
        raise NotImplementedError

    @abstractmethod
    def vision_features(self, model, shared: dict[str, Any]) -> tuple:
        """The vision tower + projector output for the shared visual tensors of a
        preference batch, one tensor per video (pair), in order (call under ``torch.no_grad``
        when the tower is frozen). :meth:`model_inputs` takes such a tuple, so features of
        several batches can be picked and put together per pair."""
        raise NotImplementedError

    @abstractmethod
    def model_inputs(self, shared: dict[str, Any], *, vision_features=None, repeat: int = 1) -> dict[str, Any]:
        """Model keyword arguments for the visual part of a batch whose text rows are the
        shared batch's rows repeated ``repeat`` times (``[chosen; rejected]``: 2). With
        ``vision_features`` the model skips its vision tower and uses them; the logits are
        the same as with the raw tensors."""
        raise NotImplementedError

    def select_videos(self, shared: dict[str, Any], indices: list[int]) -> dict[str, Any]:
        """The shared visual tensors of the pairs ``indices`` only (one video per pair), in that
        order: the same keys as ``shared``, as :meth:`collate_preference` would have built them
        for those pairs alone."""
        raise NotImplementedError

    # -- prefix sharing -------------------------------------------------------------------------
    def prefix_sharing_unsupported(self, model) -> str | None:
        """Why ``model`` cannot run prefix-shared pairs, in a few words; ``None`` when it can."""
        return None if self.supports_prefix_sharing else f"{self.family}: the backend does not declare supports_prefix_sharing"

    def position_ids(self, model, input_ids, attention_mask, extras: dict[str, Any], shared: dict[str, Any], repeat: int = 1):
        """The position ids the model's forward computes for these right-padded text rows (the
        shared batch's rows repeated ``repeat`` times, as in :meth:`model_inputs`), ``extras``
        their per-token keys (e.g. ``mm_token_type_ids``). Shape ``(..., rows, length)``: the
        leading dimensions are the model's (``(3, rows, length)`` for M-RoPE); a trainer may
        gather them along the last dimension and pass them as ``position_ids``."""
        raise NotImplementedError

    # -- surgery ----------------------------------------------------------------------------
    @abstractmethod
    def vision_module_names(self, model) -> list[str]:
        """Module names (prefixes) of the vision tower and projector: frozen in DPO."""
        raise NotImplementedError

    @abstractmethod
    def lora_target_modules(self, model) -> list[str]:
        """Full module names of every linear layer of the language model (not the lm_head)."""
        raise NotImplementedError

    @abstractmethod
    def projector_module_names(self, model) -> list[str]:
        """Module names (prefixes) of the projector between the vision tower and the language
        model (Qwen's ``merger``, InternVL's ``multi_modal_projector``): never LoRA-trained."""
        raise NotImplementedError

    @abstractmethod
    def vision_lora_target_modules(self, model) -> list[str]:
        """Full module names of the linear layers of the vision tower, *not* the projector's
        (SFT's LoRA on the tower, SPEC §5: the release's ``freeze_vit False``, aligner frozen)."""
        raise NotImplementedError

    @abstractmethod
    def merge_and_save(self, model, out_dir) -> None:
        """Merge a PEFT model's LoRA weights (a plain model is saved as it is) and write a
        directory the backend's ``path:`` loads: weights, config, tokenizer, chat template."""
        raise NotImplementedError


def linear_module_names(model, prefixes: tuple[str, ...], exclude: tuple[str, ...] = ()) -> list[str]:
    """Full names of the ``nn.Linear`` modules under ``prefixes`` (not under ``exclude``).

    Full names rather than suffixes like ``q_proj``: the vision tower has layers with the
    same short names, and a suffix would put LoRA on them too."""
    import torch

    names = []
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and name.startswith(prefixes) and not name.startswith(exclude):
            names.append(name)
    return names
