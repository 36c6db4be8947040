"""The example third-party packages (examples/plugins/*) use only temple's public API: no
private name of temple_core (``from temple_core... import _x``, a ``_module`` in the path) and
nothing of the built-in plugins (``temple_plugins``, not part of the contract)."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = sorted(p for p in (ROOT / "examples" / "plugins").iterdir() if (p / "pyproject.toml").is_file())


def private_uses(source: str) -> list[str]:
    """Every import in ``source`` that reaches a private temple name or the built-in plugins."""
    found = []
    # The plain grep, for the common one-line form...
    found += [m.group(0) for m in re.finditer(r"from\s+temple_core[\w.]*\s+import\s+\(?\s*_\w*", source)]
    # ...and the parsed imports, for every other form (parenthesised lists, aliases, module paths).
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module:
            parts = node.module.split(".")
            if parts[0] == "temple_plugins" or (parts[0] == "temple_core" and (
                    any(p.startswith("_") for p in parts) or any(a.name.startswith("_") for a in node.names))):
                found.append(f"from {node.module} import {', '.join(a.name for a in node.names)}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "temple_plugins" or (parts[0] == "temple_core" and any(p.startswith("_") for p in parts)):
                    found.append(f"import {alias.name}")
    return found


def test_the_check_catches_private_imports():
    assert private_uses("from temple_core.models.hf import _private\n")
    assert private_uses("from temple_core.models.hf import (\n    HFChatBackend,\n    _helper,\n)\n")
    assert private_uses("from temple_core._internal import thing\n")
    assert private_uses("import temple_core.models._secret\n")
    assert private_uses("from temple_plugins.backends.qwen_vl import QwenVLBackend\n")
    assert not private_uses("from temple_core.models.hf import HFChatBackend, options_class\nimport temple_core.errors\n")


def test_example_packages_import_no_private_temple_name():
    files = [f for package in PACKAGES for f in package.rglob("*.py")]
    assert {p.name for p in PACKAGES} >= {"temple-swap-halves", "temple-llava-onevision"}
    assert any(f.name == "temple_llava_onevision.py" for f in files)
    offences = {str(f.relative_to(ROOT)): private_uses(f.read_text()) for f in files}
    assert not {f: o for f, o in offences.items() if o}
