"""A copy of this checkout with the prediction hot path compiled by mypyc, built the documented way.

``build(dest)`` copies what a clone holds (tracked and new files: not ``.venv``, build outputs or
caches) to ``dest``, builds a wheel from it with ``CLIPPER_COMPILE=1 pip wheel --no-build-isolation``
and lays the wheel's extension modules over the copy. Code run with ``PYTHONPATH=dest`` and ``dest``
as its working directory (so that ``python -m`` children import the copy too) then runs every module
of :data:`clipper.compiled.HOT_PATH_MODULES` compiled and everything else from the same source.

Used by ``bench/compare.py --compiled`` and ``tests/integration/test_compiled_hot_path.py``. Needs a C
compiler, the Python headers and mypy (the ``dev`` extra) in the interpreter that runs it:
:func:`missing_toolchain` (:mod:`clipper.compiled`'s) says which is absent.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

# the build itself is the product's (clipper.compiled builds the cache of a checkout the same way)
from clipper.compiled import BuildError, compile_wheel, missing_toolchain

__all__ = ["BuildError", "build", "copy_checkout", "missing_toolchain"]

REPO = Path(__file__).resolve().parents[1]


def copy_checkout(dest: Path, repo: Path = REPO) -> None:
    """The tracked and new files of ``repo`` (what a clone holds), not .venv, build outputs or caches."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=repo,
                           capture_output=True, check=True).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, files):
        src = repo / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


def build(dest: Path, repo: Path = REPO, timeout: float = 900) -> Path:
    """The compiled copy of ``repo`` in ``dest/tree`` (``dest`` must be empty or absent); returns it."""
    tree = dest / "tree"
    tree.mkdir(parents=True)
    copy_checkout(tree, repo)
    compile_wheel(tree, tree, timeout)
    return tree
