"""Turning plain YAML data into validated attrs objects, with errors that name the recipe path.

The recipe and every component's options are attrs classes. :func:`structure` walks the data
against a class, field by field, so that an error says exactly where it is
(``generate.perturbations[1].name: unknown perturbation 'shufle' (did you mean 'shuffle'?)``).

Field types understood: ``int``, ``float``, ``bool``, ``str``, ``X | None``, ``list[X]``,
``dict[str, X]``, ``typing.Any``, ``typing.Literal[...]``, nested attrs classes, classes that
structure themselves (a ``from_recipe(structurer, data, path)`` classmethod), and components
(:func:`component_field`), which are looked up in the plugin manager and whose options are
validated against the component's own ``Options`` class.

Paths (:func:`path_field`) are relative to the recipe file's folder (``base_dir``), so a
recipe names the same files from whatever directory it is run; they are resolved to
absolute paths when the recipe is read.
"""

from __future__ import annotations

import difflib
import math
import os
import types
import typing
from pathlib import Path
from typing import Any

import attrs

from temple_core.errors import PluginError, RecipeError

_COMPONENT_KIND = "temple_component_kind"
#: Integers of a recipe fit in 64 bits (numpy, torch and the C libraries underneath take no more).
INT_LIMIT = 2**63
_PATH = "temple_path"


def component_kind(field) -> str | None:
    """The plugin kind of a :func:`component_field`, or ``None`` for any other field."""
    return field.metadata.get(_COMPONENT_KIND)


class Section:
    """Base of a recipe section's schema (``select:``, ``generate:``, ``train:``...).

    :meth:`check` runs once the whole recipe is read, for rules that span sections or need
    the plugins (e.g. "this captioner needs a backend"); it raises :class:`RecipeError`."""

    def check(self, recipe, plugins) -> None:
        return None


@attrs.define(frozen=True)
class ComponentSpec:
    """A component selected by a recipe: its kind, name and validated options."""

    kind: str
    name: str
    options: Any = None
    path: str = ""  # where in the recipe, for late errors

    def build(self, plugins):
        """Instantiate the component through the plugin manager."""
        return plugins.build(self.kind, self.name, self.options)

    def to_data(self) -> dict[str, Any]:
        data = {"name": self.name}
        if self.options is not None:
            data.update(unstructure(self.options))
        return data


def component_field(kind: str, default=attrs.NOTHING, **kwargs):
    """An attrs field holding a component of ``kind``: in YAML ``{name: x, **options}``.

    ``default`` is what the recipe means when it leaves the key out: a component name, a
    list of names (for a ``list[ComponentSpec]`` field), or ``None``.
    """
    metadata = {_COMPONENT_KIND: kind}
    if isinstance(default, list):
        names = list(default)
        return attrs.field(factory=lambda: [{"name": n} for n in names], metadata=metadata, **kwargs)
    if isinstance(default, str):
        return attrs.field(default={"name": default}, metadata=metadata, **kwargs)
    return attrs.field(default=default, metadata=metadata, **kwargs)


def path_field(default=None, *, kind: str | None = "file", **kwargs):
    """An attrs field holding a path (or a list of paths), relative to the recipe file.

    ``kind`` says what must exist when the recipe is validated: ``file``, ``dir``, ``any``,
    or ``None`` (only resolved: e.g. a model folder checked when it loads, a glob pattern)."""
    if kind not in ("file", "dir", "any", None):
        raise ValueError(f"path_field kind must be file, dir, any or None, got {kind!r}")
    return attrs.field(default=default, metadata={_PATH: kind}, **kwargs)


def is_path_field(field) -> bool:
    return _PATH in field.metadata


def non_empty(instance, attribute, value) -> None:
    """attrs validator: a list that must hold at least one item (an empty one would fail later)."""
    if value is not None and len(value) == 0:
        raise ValueError("needs at least one item (it is empty)")


def did_you_mean(word: str, choices) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, or nothing."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    if not isinstance(key, str) or not key or not key.isprintable() or key != key.strip() or "." in key:
        return f"{path}[{key!r}]"  # a key that would not read back as written: quoted
    return f"{path}.{key}" if path else key


def _type_name(tp) -> str:
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


class Structurer:
    """Validates data against attrs classes; ``plugins`` resolves component fields."""

    def __init__(self, plugins=None, check_files: bool = True, base_dir: str | Path | None = None, collect_missing: bool = False):
        self.plugins = plugins
        self.check_files = check_files
        self.base_dir = Path(base_dir) if base_dir is not None else None
        #: With ``collect_missing``, paths that do not exist are collected here, in recipe
        #: order, instead of raised at the first (the recipe's loader raises them together
        #: with :func:`raise_missing`, so that one ``temple validate`` names every placeholder).
        self.collect_missing = collect_missing
        self.missing: list[RecipeError] = []

    def resolve_path(self, value: str) -> str:
        """``value`` (``~`` expanded) relative to the recipe's folder, as an absolute path;
        unchanged when relative and there is no recipe file (data given in code)."""
        path = Path(value).expanduser()
        if not path.is_absolute() and self.base_dir is not None:
            path = self.base_dir / path
        return os.path.normpath(path) if (path.is_absolute() or self.base_dir is not None) else value

    # -- classes -------------------------------------------------------------------------
    def structure(self, cls, data, path: str = ""):
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise RecipeError(path, f"expected a mapping of options, got {_describe(data)}")
        fields = {f.name: f for f in attrs.fields(cls) if f.init}  # init=False: not a recipe key
        types_ = attrs.resolve_types(cls)
        type_of = {f.name: f.type for f in attrs.fields(types_)}
        for key in data:
            if key not in fields:
                raise RecipeError(
                    _join(path, key),
                    f"unknown key{did_you_mean(key, fields)}; known keys: {', '.join(sorted(fields))}",
                )
        values = {}
        for name, field in fields.items():
            field_path = _join(path, name)
            if name not in data:
                if field.default is attrs.NOTHING:
                    raise RecipeError(field_path, "required key is missing")
                # Component defaults are names, resolved like recipe values so that they
                # carry validated options; other defaults are the class's own.
                if _COMPONENT_KIND in field.metadata:
                    default = field.default
                    if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
                        default = default.factory()
                    if default is not None:
                        values[name] = self.value(type_of[name], default, field_path, field)
                continue
            value = self.value(type_of[name], data[name], field_path, field)
            if field.validator is not None:
                try:
                    field.validator(None, field, value)
                except (ValueError, TypeError) as exc:
                    raise RecipeError(field_path, _validator_message(exc, value)) from None
            values[name] = value
        try:
            return cls(**values)
        except (ValueError, TypeError) as exc:  # cross-field checks in __attrs_post_init__
            raise RecipeError(path, str(exc)) from None

    # -- values --------------------------------------------------------------------------
    def value(self, tp, data, path: str, field=None):
        if field is not None and _COMPONENT_KIND in field.metadata:
            kind = field.metadata[_COMPONENT_KIND]
            if data is None:
                if type(None) in typing.get_args(tp):
                    return None
                raise RecipeError(path, f"expected a {kind} component, got nothing (null)")
            if typing.get_origin(tp) is list:
                if not isinstance(data, list):
                    raise RecipeError(path, f"expected a list of {kind} components, got {_describe(data)}")
                return [self.component(kind, item, _join(path, i)) for i, item in enumerate(data)]
            return self.component(kind, data, path)
        value = self._typed(tp, data, path)
        if field is not None and _PATH in field.metadata and value is not None:
            kind = field.metadata[_PATH]
            if isinstance(value, list):
                value = [self.path(item, _join(path, i), kind) for i, item in enumerate(value)]
            else:
                value = self.path(value, path, kind)
        return value

    def path(self, value, path: str, kind: str | None = None) -> str:
        """A path value of the recipe, resolved (and checked to exist when ``kind`` says so)."""
        if not isinstance(value, str) or not value:
            raise RecipeError(path, f"expected a path, got {_describe(value)}")
        resolved = self.resolve_path(value)
        if kind is not None and self.check_files:
            try:
                _check_exists(resolved, kind, path, value)
            except RecipeError as exc:
                if not self.collect_missing:
                    raise
                self.missing.append(exc)
        return resolved

    def _typed(self, tp, data, path: str):
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if tp is Any or tp is object:
            return data
        if origin in (typing.Union, types.UnionType):
            if data is None and type(None) in args:
                return None
            errors = []
            for option in args:
                if option is type(None):
                    continue
                try:
                    return self._typed(option, data, path)
                except RecipeError as exc:
                    errors.append(exc)
            if len(errors) == 1:
                raise errors[0]
            raise RecipeError(path, f"expected {' or '.join(_type_name(a) for a in args)}, got {_describe(data)}")
        if origin is typing.Literal:
            if data not in args:
                raise RecipeError(path, f"must be one of {', '.join(map(repr, args))}, got {data!r}{did_you_mean(data, args)}")
            return data
        if origin is list or tp is list:
            if not isinstance(data, list):
                raise RecipeError(path, f"expected a list, got {_describe(data)}")
            item_type = args[0] if args else Any
            return [self._typed(item_type, item, _join(path, i)) for i, item in enumerate(data)]
        if origin is dict or tp is dict:
            if not isinstance(data, dict):
                raise RecipeError(path, f"expected a mapping, got {_describe(data)}")
            value_type = args[1] if len(args) == 2 else Any
            out = {}
            for key, item in data.items():
                if not isinstance(key, str):
                    raise RecipeError(path, f"keys must be strings, got {key!r}")
                out[key] = self._typed(value_type, item, _join(path, key))
            return out
        if isinstance(tp, type) and hasattr(tp, "from_recipe"):
            return tp.from_recipe(self, data, path)
        if attrs.has(tp):
            return self.structure(tp, data, path)
        if tp is bool:
            if not isinstance(data, bool):
                raise RecipeError(path, f"expected true or false, got {_describe(data)}")
            return data
        if tp is int:
            if isinstance(data, bool) or not isinstance(data, int):
                raise RecipeError(path, f"expected an integer, got {_describe(data)}")
            if not -INT_LIMIT <= data < INT_LIMIT:
                raise RecipeError(path, f"integer out of range (|value| < 2**63), got {_short(data)}")
            return data
        if tp is float:
            number = data
            if isinstance(data, bool) or not isinstance(data, (int, float)):
                # YAML reads 5e-6 (no dot) as a string: accept numeric strings for floats.
                number = None
                if isinstance(data, str):
                    try:
                        number = float(data)
                    except ValueError:
                        pass
                if number is None:
                    raise RecipeError(path, f"expected a number, got {_describe(data)}")
            try:
                number = float(number)
            except OverflowError:
                number = math.inf
            if not math.isfinite(number):
                raise RecipeError(path, f"expected a finite number, got {_short(data)}")
            return number
        if tp is str:
            if not isinstance(data, str):
                raise RecipeError(path, f"expected a string, got {_describe(data)}")
            return data
        raise RecipeError(path, f"unsupported option type {tp!r} (a plugin bug)")

    # -- components ----------------------------------------------------------------------
    def component(self, kind: str, data, path: str) -> ComponentSpec:
        by_name = isinstance(data, str)  # `drop` rather than `{name: drop}`: errors name `path`
        if by_name:
            data = {"name": data}
        if not isinstance(data, dict):
            raise RecipeError(path, f"expected {{name: ..., options...}} for a {kind} component, got {_describe(data)}")
        if "name" not in data:
            raise RecipeError(_join(path, "name"), f"required key is missing (which of the {kind} to use)")
        name = data["name"]
        if not isinstance(name, str):
            raise RecipeError(_join(path, "name"), f"expected a string, got {_describe(name)}")
        options_data = {k: v for k, v in data.items() if k != "name"}
        if self.plugins is None:
            return ComponentSpec(kind, name, options_data or None, path)
        try:
            component = self.plugins.get(kind, name)
        except PluginError as exc:
            raise RecipeError(path if by_name else _join(path, "name"), str(exc)) from None
        if component.options is None:
            if options_data:
                key = next(iter(options_data))
                raise RecipeError(_join(path, key), f"{kind} '{name}' takes no options")
            return ComponentSpec(kind, name, None, path)
        options = self.structure(component.options, options_data, path)
        return ComponentSpec(kind, name, options, path)


def _validator_message(exc: Exception, value) -> str:
    text = str(exc.args[0]) if exc.args else str(exc)
    # attrs messages start with the field name in quotes; the recipe path already says it.
    if text.startswith("'") and "' must" in text:
        text = text.split("' ", 1)[1]
    if text.startswith("must") and str(value) not in text:
        text = f"{text} (got {value!r})"
    return text


def _short(value) -> str:
    """``repr`` of a value, cut short (a 400-digit integer is not worth printing whole)."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:20]}...({len(text)} characters)"


def _describe(data) -> str:
    if data is None:
        return "nothing (null)"
    if isinstance(data, bool):
        return f"a boolean ({data})"
    if isinstance(data, dict):
        return "a mapping"
    if isinstance(data, list):
        return "a list"
    return f"{type(data).__name__} {_short(data)}"


_SUPPORTED = "int, float, bool, str, X | None, list[X], dict[str, X], Literal[...], Any, attrs classes"


def options_problem(cls) -> str | None:
    """What makes ``cls`` unusable as a component's options class, found when the plugin
    registers rather than when a recipe first sets the field: a field type a recipe cannot
    give. ``None`` when it is fine. (Defaults are not checked: a default that its check
    refuses is how some options say a recipe must set them, e.g. lmms_eval's empty ``tasks``.)"""
    try:
        resolved = attrs.resolve_types(cls)
    except Exception as exc:  # a forward reference that names nothing
        return f"its field types cannot be resolved ({type(exc).__name__}: {exc})"
    for field in _recipe_fields(resolved):
        if field.type is None:
            return f"field {field.name!r} has no type annotation, so a recipe's value for it cannot be checked"
        bad = _unsupported(field.type)
        if bad is not None:
            return f"field {field.name!r} is typed {bad}, which a recipe cannot give (supported: {_SUPPORTED})"
    return None


def _unsupported(tp) -> str | None:
    """The part of a field type :meth:`Structurer._typed` cannot read, as text; else None."""
    if tp is Any or tp is object or tp in (bool, int, float, str, type(None)):
        return None
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return next((bad for bad in map(_unsupported, args) if bad is not None), None)
    if origin is typing.Literal:
        return None
    if origin is list or tp is list:
        return _unsupported(args[0]) if args else None
    if origin is dict or tp is dict:
        if args and args[0] is not str:
            return str(tp)
        return _unsupported(args[1]) if len(args) == 2 else None
    if isinstance(tp, type) and hasattr(tp, "from_recipe"):
        return None
    if attrs.has(tp):
        return next((bad for f in _recipe_fields(attrs.resolve_types(tp)) if (bad := _unsupported(f.type)) is not None), None)
    return str(tp) if args else _type_name(tp)


def _recipe_fields(cls) -> list:
    """The fields a recipe gives values for (not ``init=False`` ones, not component fields,
    which name a plugin and are read by :meth:`Structurer.component`)."""
    return [f for f in attrs.fields(cls) if f.init and _COMPONENT_KIND not in f.metadata]


def _check_exists(resolved: str, kind: str, path: str, written: str) -> None:
    target = Path(resolved)
    shown = written if written == resolved else f"{written} ({resolved})"
    if kind == "dir" and not target.is_dir():
        raise RecipeError(path, f"no such directory: {shown}")
    if kind == "file" and not target.is_file():
        raise RecipeError(path, f"no such file: {shown}")
    if kind == "any" and not target.exists():
        raise RecipeError(path, f"no such file or directory: {shown}")


def structure(cls, data, path: str = "", plugins=None, check_files: bool = True, base_dir=None):
    """Validate ``data`` against attrs class ``cls``; raises :class:`RecipeError`."""
    return Structurer(plugins, check_files, base_dir).structure(cls, data, path)


def raise_missing(missing: list[RecipeError]) -> None:
    """One error for every path problem (missing files and folders, folders without videos):
    the first as usual (its recipe path first), then the others, one per line."""
    if not missing:
        return
    first, rest = missing[0], missing[1:]
    if not rest:
        raise first
    lines = "".join(f"\n  {exc}" for exc in rest)
    raise RecipeError(first.path, f"{first.message}\n  and {len(rest)} more problem(s) with the recipe's paths:{lines}")


def unstructure(obj) -> Any:
    """The plain-data form of a validated object (for ``recipe.yaml`` as run)."""
    if hasattr(obj, "to_data"):  # ComponentSpec, train stages: their recipe form
        return obj.to_data()
    if attrs.has(type(obj)):
        return {f.name: unstructure(getattr(obj, f.name)) for f in attrs.fields(type(obj))}
    if isinstance(obj, (list, tuple)):
        return [unstructure(v) for v in obj]
    if isinstance(obj, dict):
        return {k: unstructure(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj
