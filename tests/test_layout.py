"""The folders show the architecture, and imports keep to it: surfaces -> conversation -> answering -> index, each
backend on its own, never back. Every import counts (inside functions and ``TYPE_CHECKING`` blocks too)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# package prefix -> prefixes it must never import
FORBIDDEN = {
    "index": ["service"],
    "index.pipeline": ["index.local", "index.postgres"],
    "index.embedding": ["index.local", "index.postgres", "index.pipeline"],
    "index.local": ["index.postgres", "index.pipeline"],
    "index.postgres": ["index.local", "index.pipeline"],
    "index.models": ["index.local", "index.postgres", "index.pipeline", "index.embedding"],
    "index.retrieval": ["index.local", "index.postgres", "index.pipeline", "index.embedding"],
    "index.archive": ["index.local", "index.postgres", "index.pipeline", "index.embedding"],
    "service.answering": ["service.conversation", "service.evaluation", "service.api", "service.cli",
                          "service.slack", "service.newsroom"],
    "service.conversation": ["service.evaluation", "service.api", "service.cli", "service.slack"],
    "service.evaluation": ["service.conversation", "service.api", "service.cli", "service.slack",
                           "service.newsroom"],
    "service.settings": ["service.answering", "service.conversation", "service.evaluation", "service.api",
                         "service.cli", "service.slack", "service.newsroom"],
    "service.schemas": ["service.answering", "service.conversation", "service.evaluation", "service.api",
                        "service.cli", "service.slack", "service.newsroom"],
}


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


MODULES = sorted(p for top in ("index", "service") for p in (ROOT / top).rglob("*.py"))


def test_every_module_is_checked():
    assert len(MODULES) > 80 and all(_module(p).split(".")[0] in ("index", "service") for p in MODULES)


@pytest.mark.parametrize("path", MODULES, ids=[_module(p) for p in MODULES])
def test_imports_run_one_way(path: Path):
    module = _module(path)
    rules = [bad for owner, forbidden in FORBIDDEN.items() if _within(module, owner) for bad in forbidden]
    wrong = sorted(name for name in _imports(path) for bad in rules if _within(name, bad))
    assert not wrong, f"{module} imports {wrong}, against the layering in tests/test_layout.py"


def test_a_rule_catches_a_backward_import(tmp_path):
    """The check itself: a module of answering that imports a surface is caught."""
    fake = ROOT / "service" / "answering" / "qa.py"
    imports = _imports(fake) | {"service.api.app"}
    rules = FORBIDDEN["service.answering"]
    assert any(_within(name, bad) for name in imports for bad in rules)
