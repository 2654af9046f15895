"""Closures deployed from several threads at once (a ThreadPoolExecutor of deploy_python_closure calls)
find their local modules' imports with ``ast``; CPython 3.11's ``ast.parse`` is not thread-safe, so the
deployer serialises it. The garbage collector running a finalizer in the middle of a parse is what
switches threads there: this test makes that happen all the time."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from clipper_admin.deployers.dependencies import _imports_of

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [ROOT / "tests" / "docker" / "conftest.py", ROOT / "reconciler" / "controller" / "reconcile.py"]


class _Finalized:
    """Cyclic garbage whose finalizer runs Python code whenever the collector finds it."""

    def __del__(self) -> None:
        [object() for _ in range(3)]


@pytest.fixture
def collector_everywhere() -> Iterator[None]:
    before = gc.get_threshold()
    gc.set_threshold(1, 1, 1)
    try:
        yield
    finally:
        gc.collect()  # the test's finalized garbage goes now, not in a later test
        gc.set_threshold(*before)


def test_imports_are_found_from_many_threads_at_once(collector_everywhere: None) -> None:
    expected = [_imports_of(p) for p in SOURCES]
    errors: list[BaseException] = []
    wrong: list[set[str]] = []

    def work() -> None:
        for _ in range(40):
            for _ in range(20):
                garbage = _Finalized()
                garbage.cycle = garbage  # type: ignore[attr-defined]
            for source, want in zip(SOURCES, expected, strict=True):
                try:
                    got = _imports_of(source)
                except BaseException as e:  # SystemError: AST constructor recursion depth mismatch
                    errors.append(e)
                    return
                if got != want:
                    wrong.append(got)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert errors == [] and wrong == []
