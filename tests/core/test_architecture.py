"""The floor plan: the core's import graph has no cycle, and no module imports another
package's private names.

Both are read from the source with ``ast``. The graph has an edge for every import a module
makes, at module level or late (inside a function): a late import only postpones a cycle.
``from package import module`` is an edge to the module, not to the package. A private
name is one starting with ``_`` imported from temple's packages.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"temple_core": ROOT / "temple_core", "temple_plugins": ROOT / "plugins"}


def modules() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([package, *parts])] = path
    return found


def is_package(name: str, known: dict[str, Path]) -> bool:
    return known[name].name == "__init__.py"


def imports(path: Path, name: str, known: dict[str, Path], lazy: bool = True) -> set[str]:
    """The project modules ``path`` imports (``lazy``: also inside functions), without those
    under ``if TYPE_CHECKING`` (annotations only, never run)."""
    tree = ast.parse(path.read_text())
    out: set[str] = set()
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for n in ast.walk(node)}
    nodes = ast.walk(tree) if lazy else iter(tree.body)
    for node in nodes:
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name in known)
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module
            if node.level:
                anchor = name if is_package(name, known) else name.rpartition(".")[0]
                for _ in range(node.level - 1):
                    anchor = anchor.rpartition(".")[0]
                base = f"{anchor}.{node.module}"
            submodules = {f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known}
            out.update(submodules)
            if base in known and len(submodules) < len(node.names):
                out.add(base)  # names defined in the module (or package) itself
    out.discard(name)
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_import_graph_has_no_cycle():
    known = modules()
    graph = {name: imports(path, name, known) for name, path in known.items()}
    found = cycles(graph)
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_no_module_imports_a_private_name_of_another_package():
    offenders = []
    roots = [ROOT / "temple_core", ROOT / "plugins", ROOT / "examples", ROOT / "benchmarks", ROOT / "tests"]
    for root in roots:
        for path in root.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    private = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
                    if private and node.module.split(".")[0] in ("temple_core", "temple_plugins"):
                        offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: from {node.module} import {', '.join(private)}")
    assert not offenders, "\n".join(offenders)


def test_the_video_package_is_layered():
    """decoding <- worker <- source: the decode worker and the in-process pass share one
    decoding module, and nothing below imports what is above it."""
    known = modules()
    graph = {n: imports(p, n, known) for n, p in known.items() if n.startswith("temple_core.video.")}
    assert not {m for m in graph["temple_core.video.decoding"] if m.startswith("temple_core.video")}
    assert not {m for m in graph["temple_core.video.worker"] if m.startswith("temple_core.video.s")}
    assert "temple_core.video.decoding" in graph["temple_core.video.worker"]
    assert {"temple_core.video.decoding", "temple_core.video.worker"} <= graph["temple_core.video.source"]


def test_docs_show_the_contracts():
    """docs/plugins.md's contract section is what ``python -m temple_core.contracts`` prints."""
    from temple_core.contracts import CONTRACTS, render_markdown

    text = (ROOT / "docs" / "plugins.md").read_text()
    section = text.split("<!-- contracts: generated -->\n", 1)[1].split("<!-- contracts: end -->", 1)[0]
    assert section == render_markdown(), "regenerate: python -m temple_core.contracts"
    hookspecs = (ROOT / "temple_core" / "hookspecs.py").read_text()
    for kind, contract in CONTRACTS.items():
        assert f"register_{kind}" in hookspecs and contract.__qualname__ in hookspecs, kind
