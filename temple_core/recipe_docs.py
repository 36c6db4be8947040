"""Write docs/recipes.md from the code: every recipe key, its type, default and explanation.

The explanation of a key is the ``#:`` comment above its attrs field (or the class
docstring for a section), so the reference cannot drift from what the validator accepts:
``tests/core/test_recipe_docs.py`` fails when docs/recipes.md is not what this prints.

    python -m temple_core.recipe_docs > docs/recipes.md
"""

from __future__ import annotations

import ast
import re
import inspect
import textwrap
from typing import Any

import attrs

from temple_core.config import component_kind
from temple_core.hookspecs import KINDS
from temple_core.recipe import Recipe, VideosConfig
from temple_core.stages import STAGE_NAMES, STAGES


def _field_comments(cls) -> dict[str, str]:
    """The ``#:`` comment lines right above each field of ``cls`` or of the class it extends."""
    comments: dict[str, str] = {}
    for klass in reversed(cls.__mro__):  # a subclass's comment wins over its base's
        if attrs.has(klass):
            comments.update(_own_field_comments(klass))
    return comments


def _own_field_comments(cls) -> dict[str, str]:
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    lines = source.splitlines()
    comments: dict[str, str] = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            text = []
            row = node.lineno - 2
            while row >= 0 and lines[row].strip().startswith("#:"):
                text.insert(0, lines[row].strip()[2:].strip())
                row -= 1
            comments[node.target.id] = " ".join(text)
    return comments


def _type_text(tp) -> str:
    text = getattr(tp, "__name__", None) if isinstance(tp, type) else None
    text = text or str(tp).replace("typing.", "")
    text = re.sub(r"\b(?:[a-z_][a-z_0-9]*\.)+([A-Z]\w*)", r"\1", text).replace("NoneType", "None")
    return text.replace("|", "\\|")  # inside a Markdown table cell


def _default_text(field) -> str:
    default = field.default
    if default is attrs.NOTHING:
        return "required"
    if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
        try:
            default = default.factory()
        except TypeError:
            return "(computed)"
    if attrs.has(type(default)):
        return "(section)"
    if isinstance(default, dict) and set(default) == {"name"}:
        default = default["name"]
    if isinstance(default, list) and default and all(isinstance(d, dict) and set(d) == {"name"} for d in default):
        default = [d["name"] for d in default]
    return f"`{default!r}`" if default is not None else "`None`"


def _source(comment: str) -> str:
    """Where a default comes from: the SPEC section its comment cites, else the release when
    it cites docs/method.md's table of the release's rules, else temple's own choice."""
    found = re.search(r"SPEC (§\d+(?:\.\d+)*(?:[–-]\d+)?)", comment)
    if found:
        return f"SPEC {found.group(1)}"
    return "release" if "docs/method.md" in comment else "temple"


def _table(cls, prefix: str, out: list[str], nested: list[tuple[Any, str]]) -> None:
    comments = _field_comments(cls)
    types = {f.name: f.type for f in attrs.fields(attrs.resolve_types(cls))}
    out.append("| key | type | default | source | meaning |")
    out.append("|---|---|---|---|---|")
    for field in attrs.fields(cls):
        kind = component_kind(field)
        tp = types[field.name]
        if kind:
            type_text = f"{kind} component"
        elif attrs.has(tp):
            type_text = "section"
            nested.append((tp, f"{prefix}.{field.name}"))
        else:
            type_text = _type_text(tp)
        meaning = comments.get(field.name, "").replace("|", "\\|")
        out.append(f"| `{prefix}.{field.name}` | {type_text} | {_default_text(field)} | {_source(meaning)} | {meaning} |")
    out.append("")


def render(plugins=None) -> str:
    if plugins is None:
        from temple_core.plugins import get_plugin_manager

        plugins = get_plugin_manager()
    out = [
        "# Recipe reference",
        "",
        "Generated from the code by `python -m temple_core.recipe_docs`; every key below is",
        "validated before a run starts. Numbers from SPEC.md are defaults, and every one can be",
        "changed in the recipe. *source* says where a default comes from: the section of",
        "SPEC.md (the method's numbers), `release` (a rule of the authors' release that SPEC.md",
        "does not spell out, listed in docs/method.md) or `temple` (the framework's own choice). A component",
        "key (`{name: ..., options...}`) takes the options of the component it names, listed",
        "under *Components* below; a training stage's options are written inside its entry.",
        "",
        "Beyond each key's own rule, every recipe is refused (one line naming the line or the",
        "key, exit code 2) when a key is given twice in one mapping, when it nests more than",
        "100 levels or its aliases expand to more than 1,000,000 values, when it is not UTF-8",
        "text, when a number is not finite or does not fit in 64 bits, and when `run_dir` is",
        "empty, `/` or your home folder.",
        "",
        "## Top level",
        "",
    ]
    nested: list[tuple[Any, str]] = []
    comments = _field_comments(Recipe)
    out += ["| key | type | default | meaning |", "|---|---|---|---|"]
    for field in attrs.fields(Recipe):
        if field.name == "source":
            continue
        if field.name in STAGE_NAMES:
            out.append(f"| `{field.name}` | section | absent: stage not run | see below |")
        else:
            type_text = "section" if field.name == "videos" else _type_text(field.type)
            out.append(f"| `{field.name}` | {type_text} | {_default_text(field)} | {comments.get(field.name, '')} |")
    out.append("")
    out += ["## `videos`", ""]
    _table(VideosConfig, "videos", out, nested)
    for spec in STAGES:
        module = inspect.getmodule(spec.run)
        out += [f"## `{spec.name}`", "", inspect.getdoc(module).split("\n\n")[0], ""]
        _table(spec.config, spec.name, out, nested)
        while nested:
            cls, prefix = nested.pop(0)
            out += [f"### `{prefix}`", ""]
            _table(cls, prefix, out, nested)
    out += ["## Components", "", "Options of every installed component, by kind.", ""]
    for kind in KINDS:
        for name in plugins.names(kind):
            component = plugins.get(kind, name)
            if component.source != "temple (built-in)":
                continue  # third-party plugins document themselves
            out += [f"### {kind}: `{name}`", "", component.summary, ""]
            if component.options is None:
                out += ["No options.", ""]
                continue
            _table(component.options, name, out, nested)
            while nested:
                cls, prefix = nested.pop(0)
                _table(cls, prefix, out, nested)
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    import os

    os.environ.setdefault("TEMPLE_LOAD_PLUGINS", "builtin")
    print(render(), end="")
