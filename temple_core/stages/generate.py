"""The ``generate`` stage: selected videos -> clip captions, chosen/rejected responses, pairs.

Reads ``select/videos.jsonl``; writes ``generate/captions.jsonl`` (one line per video) and
``generate/pairs.jsonl`` (one line per kept pair). SPEC §2-4.
"""

from __future__ import annotations

import attrs

from temple_core.config import ComponentSpec, Section, component_field, non_empty, path_field
from temple_core.errors import RecipeError
from temple_core.generation.prompts import prompt_file_validator, prompt_list_validator

#: Pair filters of SPEC §4, each a recipe option.


@attrs.define(kw_only=True)
class PairFilters:
    #: Drop a pair whose chosen text is contained in its rejected text. (SPEC §4)
    drop_contained: bool = True
    #: Perturbations whose pairs need the chosen text strictly longer than the rejected. (SPEC §4)
    longer_chosen: list[str] = attrs.Factory(lambda: ["drop"])
    #: Perturbations whose pairs need neither text longer than ``max_length_ratio`` x the other. (SPEC §4)
    length_ratio: list[str] = attrs.Factory(lambda: ["shuffle", "reverse"])
    #: The length ratio limit of those perturbations' pairs. (SPEC §4)
    max_length_ratio: float = attrs.field(default=1.5, validator=attrs.validators.ge(1.0))


@attrs.define(kw_only=True)
class Sampling:
    """Generation settings for the summaries (SPEC §2.4). What the release passed is set; the
    rest (null) is the checkpoint's ``generation_config.json``, as in the release -- mind
    checkpoints that set ``top_k: 1`` (Qwen2.5-VL-7B-Instruct does): their "sampled" summaries
    are greedy unless ``top_k`` is set here. The effective settings are in the stage summary."""

    #: Sample (true) or decode greedily. (SPEC §2)
    do_sample: bool = True
    #: Softmax temperature when sampling. (SPEC §2)
    temperature: float = attrs.field(default=0.7, validator=attrs.validators.gt(0.0))
    #: Nucleus sampling mass (1.0: off); null: the checkpoint's, as in the release (SPEC §2.4).
    top_p: float | None = attrs.field(
        default=None, validator=attrs.validators.optional([attrs.validators.gt(0.0), attrs.validators.le(1.0)])
    )
    #: Sample among the k likeliest tokens (0: off); null: the checkpoint's, as in the release (SPEC §2.4).
    top_k: int | None = attrs.field(default=None, validator=attrs.validators.optional(attrs.validators.ge(0)))
    #: Penalty on repeated tokens (1.0: off). (SPEC §2)
    repetition_penalty: float = attrs.field(default=1.05, validator=attrs.validators.gt(0.0))
    #: Longest response (the release allows 8,192 new tokens). (SPEC §2)
    max_new_tokens: int = attrs.field(default=8192, validator=attrs.validators.ge(1))


def _difficulties(instance, attribute, value):
    if not value:
        raise ValueError("needs at least one difficulty")
    for r in value:
        if r < 1:
            raise ValueError(f"every difficulty must be >= 1, got {r}")
    if len(set(value)) != len(value):
        raise ValueError(f"difficulties repeat: {value}")


@attrs.define(kw_only=True)
class Config(Section):
    """The recipe's ``generate:`` section."""

    #: The Video LLM that writes the captions (not needed by the ``heuristic`` captioner).
    backend: ComponentSpec | None = component_field("backends", None)
    #: Writes clip captions and the chosen/rejected summaries (SPEC §2); ``heuristic`` needs no model.
    captioner: ComponentSpec = component_field("caption_generators", "contextual")
    #: How the clip order is broken for rejected responses (SPEC §3).
    perturbations: list[ComponentSpec] = component_field("perturbations", ["drop", "shuffle", "reverse"], validator=non_empty)
    #: The difficulty factors r (SPEC §3); each yields its own split of pairs.
    difficulties: list[int] = attrs.field(factory=lambda: [16, 8, 4, 2], validator=_difficulties)
    #: Which pairs are kept (SPEC §4).
    filters: PairFilters = attrs.Factory(PairFilters)
    #: Sampling of the summaries (SPEC §2.4).
    sampling: Sampling = attrs.Factory(Sampling)
    #: Pair prompts ("describe the video in detail..."), one drawn per pair; null: the project's built-in list (SPEC §2.6).
    prompts: list[str] | None = attrs.field(default=None, validator=prompt_list_validator)
    #: A UTF-8 file of pair prompts, one per line, instead of ``prompts`` (SPEC §2.6).
    prompts_file: str | None = path_field(None, validator=prompt_file_validator("pair", lines=True))
    #: Videos whose caption steps go to the backend together.
    videos_per_batch: int = attrs.field(default=4, validator=attrs.validators.ge(1))
    #: Also write the pairs in other tools' formats (``generate/export/<name>.jsonl``).
    exporters: list[ComponentSpec] = component_field("exporters", [])

    def __attrs_post_init__(self):
        if self.prompts is not None and self.prompts_file is not None:
            raise ValueError("give prompts or prompts_file, not both")


    def check(self, recipe, plugins) -> None:
        names = [p.name for p in self.perturbations]
        if len(set(names)) != len(names):
            raise RecipeError("generate.perturbations", f"a perturbation is listed twice: {names}")
        captioner = plugins.get("caption_generators", self.captioner.name)
        if captioner.capability("needs_backend") and self.backend is None:
            raise RecipeError("generate.backend", f"captioner '{self.captioner.name}' needs a backend; add generate.backend")


def run(ctx) -> dict:
    """Caption this process's share of the selected videos, write their pairs; rank 0 merges."""
    from temple_core.generation.runner import run_stage

    return run_stage(ctx)
