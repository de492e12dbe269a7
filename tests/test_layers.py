"""The layering contract: every import of every module, inside functions included.

splice     the composition root: may import everything; nothing imports it
training   may import agent, evals, serving, retrieval
evals      may import agent
serving    may import agent
retrieval  may import agent
agent      the base: no other project package, and none of the heavy libraries
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("splice", "training", "evals", "serving", "retrieval", "agent")
ALLOWED = {
    "splice": {"training", "evals", "serving", "retrieval", "agent"},
    "training": {"agent", "evals", "serving", "retrieval"},
    "evals": {"agent"},
    "serving": {"agent"},
    "retrieval": {"agent"},
    "agent": set(),
}
# The base layer stays light: the engine, index, HTTP and UI libraries live above it.
AGENT_FORBIDDEN_LIBS = {"vllm", "faiss", "httpx", "torch", "rich", "typer"}


def _modules() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute top-level name) of every import in the file, at any depth."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package_parts = path.relative_to(ROOT).with_suffix("").parts[:-1]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name.split(".")[0]) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the file's package
                base = package_parts[: len(package_parts) - node.level + 1]
                top = base[0] if base else (node.module or "").split(".")[0]
            else:
                top = (node.module or "").split(".")[0]
            found.append((node.lineno, top))
    return found


def _violations() -> list[str]:
    bad = []
    for path in _modules():
        owner = path.relative_to(ROOT).parts[0]
        for line, top in _imports(path):
            where = f"{path.relative_to(ROOT)}:{line}"
            if top in PACKAGES and top != owner and top not in ALLOWED[owner]:
                bad.append(f"{where} {owner} -> {top}")
            if owner == "agent" and top in AGENT_FORBIDDEN_LIBS:
                bad.append(f"{where} agent imports {top}")
    return bad


def test_every_import_follows_the_layers() -> None:
    assert _violations() == []


def test_the_checker_sees_imports_inside_functions(tmp_path: Path) -> None:
    # A check that cannot fail proves nothing: a function-level and a relative
    # import across layers must both be caught.
    pkg = tmp_path / "serving"
    pkg.mkdir()
    mod = pkg / "bad.py"
    mod.write_text("def f():\n    from retrieval import x\n    from ..training import y\n")
    global ROOT
    saved = ROOT
    ROOT = tmp_path
    try:
        assert _imports(mod) == [(2, "retrieval"), (3, "training")]
        (tmp_path / "agent").mkdir()
        (tmp_path / "agent" / "a.py").write_text("import torch\n")
        assert sorted(_violations()) == [
            "agent/a.py:1 agent imports torch",
            "serving/bad.py:2 serving -> retrieval",
            "serving/bad.py:3 serving -> training",
        ]
    finally:
        ROOT = saved


@pytest.mark.parametrize("package", PACKAGES[1:])
def test_nothing_imports_the_composition_root(package: str) -> None:
    hits = [
        f"{p.relative_to(ROOT)}:{line}"
        for p in (ROOT / package).rglob("*.py")
        for line, top in _imports(p)
        if top == "splice"
    ]
    assert hits == []
