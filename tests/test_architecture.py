"""The rooms of the package stay as docs/architecture.md draws them: no import circles,
no import inside a function to dodge one, and the layering contract in pyproject.toml."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "emotion2vec_ui"
HEAVY_MARK = "heavy:"  # the comment that says why an import waits inside a function


def _module_graph() -> dict[str, set[str]]:
    graph = grimp.build_graph("emotion2vec_ui", cache_dir=None)
    return {module: graph.find_modules_directly_imported_by(module) for module in graph.modules}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle between the package's modules (a list of modules), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for imported in sorted(graph.get(module, ())):
            if state.get(imported) == 1:
                return path[path.index(imported):] + [imported]
            if imported not in state and (found := visit(imported)):
                return found
        path.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state and (found := visit(module)):
            return found
    return None


def test_no_module_imports_itself_round_a_circle():
    graph = _module_graph()
    # A package's __init__ that re-exports its modules is not a circle of the code's own.
    graph = {module: {m for m in imported if not (module.startswith(m + ".") and m != module)}
             for module, imported in graph.items()}
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_the_circle_finder_finds_a_circle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def _imports_inside_functions(path: Path) -> list[tuple[int, str]]:
    """(line, text) of each import inside a function body, other than those marked heavy."""
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(node):
                if isinstance(inner, (ast.Import, ast.ImportFrom)):
                    text = lines[inner.lineno - 1]
                    if HEAVY_MARK not in text:
                        found.append((inner.lineno, text.strip()))
    return sorted(set(found))


def test_imports_wait_inside_functions_only_for_heavy_dependencies():
    """torch, onnxruntime, ray, PyAV, funasr and the speaker encoder load on first use, with a
    comment that says so; everything else, the package's own modules above all, is imported
    at the top of the module."""
    hidden = {str(path.relative_to(ROOT)): found for path in sorted(PACKAGE.rglob("*.py"))
              if (found := _imports_inside_functions(path))}
    assert hidden == {}


def test_the_layering_contract_holds():
    lint = Path(sys.executable).with_name("lint-imports")
    if not lint.exists():
        pytest.fail("lint-imports is missing: pip install import-linter (requirements-test.txt)")
    run = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "Rooms import downward only KEPT" in run.stdout
