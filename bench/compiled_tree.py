"""A copy of this checkout with the prediction hot path compiled by mypyc, built the documented way.

``build(dest)`` copies what a clone holds (tracked and new files: not ``.venv``, build outputs or
caches) to ``dest``, builds a wheel from it with ``CLIPPER_COMPILE=1 pip wheel --no-build-isolation``
and lays the wheel's extension modules over the copy. Code run with ``PYTHONPATH=dest`` and ``dest``
as its working directory (so that ``python -m`` children import the copy too) then runs every module
of :data:`clipper.compiled.HOT_PATH_MODULES` compiled and everything else from the same source.

Used by ``bench/compare.py --compiled`` and ``tests/integration/test_compiled_hot_path.py``. Needs a C
compiler, the Python headers and mypy (the ``dev`` extra) in the interpreter that runs it:
:func:`missing_toolchain` says which is absent.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


class BuildError(RuntimeError):
    """The compiled build failed; the message holds the end of its output."""


def missing_toolchain() -> str | None:
    """What this interpreter lacks to compile the hot path, or None."""
    if shutil.which(os.environ.get("CC", "cc")) is None:
        return "no C compiler (apt-get install gcc)"
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").exists():
        return "no Python headers (apt-get install python3-dev)"
    try:
        import mypyc  # noqa: F401
    except ImportError:
        return "mypy is not installed (the dev extra)"
    return None


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
    from clipper.compiled import HOT_PATH_MODULES

    tree, wheels = dest / "tree", dest / "wheels"
    tree.mkdir(parents=True)
    copy_checkout(tree, repo)
    run = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-build-isolation", "--no-deps", "-w", str(wheels), str(tree)],
        env={**os.environ, "CLIPPER_COMPILE": "1"}, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    if run.returncode != 0:
        raise BuildError(f"the compiled build failed:\n{run.stdout[-3000:]}{run.stderr[-3000:]}")
    (wheel,) = wheels.glob("clipper-*.whl")
    with zipfile.ZipFile(wheel) as z:
        compiled = [n for n in z.namelist() if n.endswith(".so")]
        z.extractall(tree, compiled)
    stems = {n.split(".", 1)[0].replace("/", ".") for n in compiled}
    if not set(HOT_PATH_MODULES) <= stems:
        raise BuildError(f"not compiled: {sorted(set(HOT_PATH_MODULES) - stems)}")
    return tree
