"""The plugin manager: loads built-in and third-party plugins the same way, looks components up.

Built-ins are the modules named in ``registry.yaml``; third-party plugins are the modules
exposed under the entry-point group ``temple`` (loaded with pluggy's
``load_setuptools_entrypoints``). A module that fails to import, or breaks a rule when it
registers (a component that does not meet its kind's contract, options that are not an attrs
class, a hook temple does not have, a name another plugin already took), is recorded, not
fatal: none of its components load, the other plugins do, ``temple plugins list`` shows the
failure, and a recipe asking for one of its components gets the error in its message. A name
two plugins give one kind is refused for both (which of them runs would depend on install
order): a recipe asking for it is told to uninstall one or choose with ``TEMPLE_LOAD_PLUGINS``.

``TEMPLE_LOAD_PLUGINS`` limits what loads, for reproducible runs (as ``LLM_LOAD_PLUGINS`` does
for simonw/llm): a comma-separated list of what may load -- built-in component names or
modules, ``builtin`` for all built-ins, entry-point names or distribution names for
third-party plugins. Set but empty: nothing loads. Unset: everything installed loads.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.resources
import inspect
import os
from pathlib import Path
from typing import Any, Callable

import attrs
import pluggy
import yaml

from temple_core import contracts, hookspecs
from temple_core.config import did_you_mean, options_problem
from temple_core.errors import PluginError
from temple_core.store.layout import safe_component

ENTRY_POINT_GROUP = "temple"
ENV_LOAD = "TEMPLE_LOAD_PLUGINS"
BUILTIN = "temple (built-in)"


@attrs.define
class Component:
    """One registered component: what ``temple plugins list`` shows and what recipes select."""

    kind: str
    name: str
    factory: Callable[..., Any]
    options: type | None
    summary: str
    source: str  # the distribution (or "temple (built-in)") that registered it
    module: str
    #: Its declared capabilities (``needs_backend``, ``data_kind``...), with the kind's
    #: contract defaults for those it does not declare (see temple_core.contracts).
    capabilities: dict[str, Any] = attrs.Factory(dict)
    status: str = "ok"

    def capability(self, name: str) -> Any:
        return self.capabilities[name]


@attrs.define
class FailedPlugin:
    """A plugin module that could not be loaded; its components are unknown."""

    module: str
    source: str
    error: str
    # Registry entries (built-ins) say which components the module would have given.
    declared: list[tuple[str, str]] = attrs.Factory(list)


def registry_path() -> Path:
    """``registry.yaml``: the repository's top-level file, shipped inside ``temple_plugins``."""
    return Path(str(importlib.resources.files("temple_plugins").joinpath("registry.yaml")))


def read_registry(path: Path | None = None) -> list[dict[str, str]]:
    path = path or registry_path()
    entries = yaml.safe_load(path.read_text()) or []
    for i, entry in enumerate(entries):
        missing = {"name", "kind", "module"} - set(entry)
        if missing:
            raise PluginError(f"{path}: entry {i} lacks {', '.join(sorted(missing))}")
        if entry["kind"] not in hookspecs.KINDS:
            raise PluginError(f"{path}: entry {entry['name']!r} has unknown kind {entry['kind']!r}")
    return entries


def _first_line(obj) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def _allowed() -> set[str] | None:
    value = os.environ.get(ENV_LOAD)
    if value is None:
        return None
    return {part.strip() for part in value.split(",") if part.strip()}


class PluginManager:
    """Every component of every kind, keyed by ``(kind, name)``."""

    def __init__(self, load: bool = True):
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.components: dict[tuple[str, str], Component] = {}
        self.failed: list[FailedPlugin] = []
        #: ``(kind, name)`` given by two plugins -> the error a recipe asking for it gets.
        self.conflicts: dict[tuple[str, str], str] = {}
        if load:
            self.load_builtins()
            self.load_entry_points()

    # -- loading -------------------------------------------------------------------------
    def load_builtins(self) -> None:
        allowed = _allowed()
        by_module: dict[str, list[dict[str, str]]] = {}
        for entry in read_registry():
            by_module.setdefault(entry["module"], []).append(entry)
        for module_name, entries in by_module.items():
            if allowed is not None and "builtin" not in allowed and module_name not in allowed and not (
                {e["name"] for e in entries} & allowed
            ):
                continue
            declared = [(e["kind"], e["name"]) for e in entries]
            summaries = {(e["kind"], e["name"]): e.get("summary", "") for e in entries}
            try:
                module = importlib.import_module(module_name)
            except Exception as exc:  # a broken plugin must not take the others down
                self.failed.append(FailedPlugin(module_name, BUILTIN, f"{type(exc).__name__}: {exc}", declared))
                continue
            self.add_module(module, BUILTIN, summaries=summaries)

    def load_entry_points(self) -> None:
        allowed = _allowed()
        for dist in importlib.metadata.distributions():
            for ep in dist.entry_points:
                if ep.group != ENTRY_POINT_GROUP:
                    continue
                if allowed is not None and ep.name not in allowed and dist.metadata["name"] not in allowed:
                    continue
                if self.pm.get_plugin(ep.name) is not None or self.pm.is_blocked(ep.name):
                    continue
                source = f"{dist.metadata['name']} {dist.version}"
                try:
                    module = ep.load()
                except Exception as exc:
                    self.failed.append(FailedPlugin(ep.value, source, f"{type(exc).__name__}: {exc}"))
                    continue
                self.add_module(module, source, name=ep.name)

    def add_module(self, module, source: str, name: str | None = None, summaries=None) -> FailedPlugin | None:
        """Register a plugin module (or object with hookimpls) and collect its components.

        All or nothing: a module that breaks a rule is recorded in :attr:`failed` (and
        returned) with none of its components; the error names the module and the rule."""
        module_name = getattr(module, "__name__", str(module))
        if name is None:
            name = module_name
        # pluggy refuses a second registration of the same object; a module exposed both in
        # the registry and as an entry point is loaded once.
        if self.pm.is_registered(module):
            return None
        pending: dict[tuple[str, str], Component] = {}
        declared: list[tuple[str, str]] = []
        try:
            _check_hooks(self.pm, module, module_name)
            self.pm.register(module, name=name)  # pluggy checks each hook's arguments here
            for kind in hookspecs.KINDS:
                hook = getattr(self.pm.hook, f"register_{kind}")
                impls = [impl for impl in hook.get_hookimpls() if impl.plugin is module]
                for impl in impls:
                    impl.function(register=self._registrar(kind, source, module_name, summaries or {}, pending, declared))
        except Exception as exc:  # a broken plugin must not take the others down
            if self.pm.is_registered(module):
                self.pm.unregister(module)
            error = str(exc) if isinstance(exc, PluginError) else f"{module_name}: {type(exc).__name__}: {' '.join(str(exc).split())}"
            failed = FailedPlugin(module_name, source, error, declared)
            self.failed.append(failed)
            return failed
        self.components.update(pending)
        return None

    def _registrar(self, kind: str, source: str, module_name: str, summaries, pending, declared):
        def register(name: str, factory: Callable[..., Any], options: type | None = None, summary: str | None = None):
            if not isinstance(name, str) or not name:
                raise PluginError(f"{module_name}: a {kind} component needs a non-empty string name")
            declared.append((kind, name))
            try:  # names become paths: an exporter's file, a training stage's default folder
                safe_component(name, f"{kind} component name")
            except ValueError as exc:
                raise PluginError(f"{module_name}: {exc}") from None
            if options is None:
                options = getattr(factory, "Options", None)
            if options is not None and not attrs.has(options):
                raise PluginError(f"{module_name}: options of {kind} '{name}' must be an attrs class")
            problem = options_problem(options) if options is not None else None
            if problem is not None:
                raise PluginError(f"{module_name}: options of {kind} '{name}': {problem}")
            key = (kind, name)
            if key in pending:
                raise PluginError(f"{module_name}: registers two {kind} components named '{name}'")
            other = self.components.get(key)
            if other is not None or key in self.conflicts:
                first = f"{other.source} ({other.module})" if other is not None else "another plugin"
                message = (
                    f"two {kind} components are named '{name}': one from {first}, one from {source} ({module_name})"
                )
                if other is not None and BUILTIN in (other.source, source):
                    third = source if other.source == BUILTIN else other.source
                    hint = (f"uninstall {third.rsplit(' ', 1)[0]} to use the built-in, or keep the built-ins "
                            f"alone with {ENV_LOAD}=builtin")
                else:
                    hint = f"uninstall one of them, or list the one to keep in {ENV_LOAD} (with builtin)"
                self.components.pop(key, None)
                self.conflicts[key] = f"{message}; {hint}"
                raise PluginError(message)
            try:
                capabilities = contracts.check_component(kind, name, factory)
            except TypeError as exc:
                raise PluginError(f"{module_name}: {exc}") from None
            if "suffix" in capabilities:  # generate/export/<name>.<suffix>
                try:
                    safe_component(f"{name}.{capabilities['suffix']}", f"{kind} '{name}' output file name")
                except ValueError as exc:
                    raise PluginError(f"{module_name}: {exc}") from None
            text = summary or summaries.get(key) or _first_line(factory)
            pending[key] = Component(kind, name, factory, options, text, source, module_name, capabilities)

        return register

    # -- lookup --------------------------------------------------------------------------
    def names(self, kind: str) -> list[str]:
        return sorted(name for (k, name) in self.components if k == kind)

    def get(self, kind: str, name: str) -> Component:
        if kind not in hookspecs.KINDS:
            raise PluginError(f"unknown plugin kind '{kind}'; kinds: {', '.join(hookspecs.KINDS)}")
        component = self.components.get((kind, name))
        if component is not None:
            return component
        if (kind, name) in self.conflicts:
            raise PluginError(self.conflicts[(kind, name)])
        for failed in self.failed:
            if (kind, name) in failed.declared or (not failed.declared and name in failed.module):
                raise PluginError(
                    f"{kind} '{name}' is provided by plugin {failed.module} ({failed.source}), "
                    f"which failed to load: {failed.error}"
                )
        known = self.names(kind)
        # A failed plugin may have offered this name after the component that failed it.
        failures = "".join(f"; note: plugin {f.module} ({f.source}) failed to load: {f.error}" for f in self.failed)
        raise PluginError(
            f"unknown {kind[:-1].replace('_', ' ')} '{name}'{did_you_mean(name, known)}; "
            f"available: {', '.join(known) or 'none'}{failures}"
        )

    def build(self, kind: str, name: str, options=None):
        """Instantiate a component: ``factory(options)`` with its validated options (their
        defaults when ``None``), or ``factory()`` for a component that declares no options."""
        component = self.get(kind, name)
        if component.options is None:
            built = component.factory()
        else:
            built = component.factory(options if options is not None else component.options())
        try:
            contracts.check_built(kind, name, built)
        except TypeError as exc:
            raise PluginError(f"{component.module}: {exc}") from None
        return built

    def listing(self, kind: str | None = None) -> list[dict[str, str]]:
        """Rows for ``temple plugins list``: loaded components, then failed plugins."""
        rows = [
            {
                "kind": c.kind,
                "name": c.name,
                "summary": c.summary,
                "source": c.source,
                "module": c.module,
                "status": c.status,
            }
            for c in sorted(self.components.values(), key=lambda c: (hookspecs.KINDS.index(c.kind), c.name))
            if kind is None or c.kind == kind
        ]
        for failed in self.failed:
            declared = failed.declared or [("?", "?")]
            for k, name in declared:
                if kind is None or k in (kind, "?"):  # a plugin that failed before saying its kinds may be of this one
                    rows.append(
                        {
                            "kind": k,
                            "name": name,
                            "summary": "",
                            "source": failed.source,
                            "module": failed.module,
                            "status": f"failed: {failed.error}",
                        }
                    )
        return rows


def _check_hooks(pm, module, module_name: str) -> None:
    """A module must implement at least one temple hook, and only temple hooks: a misspelt
    hook (``register_perturbation``) would otherwise register nothing, silently."""
    hooks = {f"register_{kind}" for kind in hookspecs.KINDS}
    implemented = []
    for attr in dir(module):
        opts = pm.parse_hookimpl_opts(module, attr)
        if opts is not None:
            implemented.append(opts.get("specname") or attr)  # @hookimpl(specname=...) names its hook
    unknown = [hook for hook in implemented if hook not in hooks]
    if unknown:
        raise PluginError(
            f"{module_name}: {unknown[0]} is not a temple hook{did_you_mean(unknown[0], sorted(hooks))}; "
            f"hooks: {', '.join(sorted(hooks))}"
        )
    if not implemented:
        raise PluginError(f"{module_name}: implements no temple hook (a @hookimpl function register_<kind>(register))")


_DEFAULT: PluginManager | None = None


def get_plugin_manager(reload: bool = False) -> PluginManager:
    """The process-wide plugin manager (loaded once)."""
    global _DEFAULT
    if _DEFAULT is None or reload:
        _DEFAULT = PluginManager()
    return _DEFAULT
