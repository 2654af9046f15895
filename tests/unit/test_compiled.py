"""``clipper.compiled``: how the hot path is imported, and a mypyc pitfall caught before compiling."""

from __future__ import annotations

import ast
import importlib.machinery
import importlib.util
from pathlib import Path

import pytest

from clipper import compiled
from clipper.compiled import HOT_PATH_MODULES, hot_path

REPO = Path(__file__).resolve().parents[2]


def test_an_editable_checkout_runs_the_hot_path_interpreted():
    assert hot_path() == "interpreted"


def test_a_partly_compiled_hot_path_says_how_much(monkeypatch):
    real = importlib.util.find_spec

    def find_spec(name: str):
        spec = real(name)
        if name == HOT_PATH_MODULES[0]:
            loader = importlib.machinery.ExtensionFileLoader(name, "x.so")
            return importlib.machinery.ModuleSpec(name, loader)
        return spec

    monkeypatch.setattr(compiled.importlib.util, "find_spec", find_spec)
    assert hot_path() == f"partly compiled (1 of {len(HOT_PATH_MODULES)})"


@pytest.mark.parametrize("module", HOT_PATH_MODULES)
def test_no_except_clause_rebinds_a_name_to_another_exception_type(module):
    """Compiled, a name bound by ``except A as e`` keeps A's type in the whole function: a later
    ``except B as e`` with an unrelated B raises TypeError instead of handling B (a malformed HTTP
    request or a bad JSON body answered 500). Each clause gets a name of its own."""
    path = REPO / (module.replace(".", "/") + ".py")
    tree = ast.parse(path.read_text())
    clashes = []
    for fn in ast.walk(tree):
        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            bound: dict[str, set[str]] = {}
            for node in ast.walk(fn):
                if isinstance(node, ast.ExceptHandler) and node.name and node.type is not None:
                    bound.setdefault(node.name, set()).add(ast.unparse(node.type))
            clashes += [f"{fn.name}:{fn.lineno} {n} {sorted(t)}" for n, t in bound.items() if len(t) > 1]
    assert clashes == []
