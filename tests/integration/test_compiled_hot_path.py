"""The hot path compiled with mypyc (:mod:`clipper.compiled`) serves exactly as interpreted.

A wheel is built the documented way (``CLIPPER_COMPILE=1 pip wheel --no-build-isolation``) from a
copy of this checkout; its extension modules are laid over that copy, and the serving tests run
there, in a pytest of their own, against the compiled modules (the frontends they start inherit
``PYTHONPATH``). Compiled code checks annotations at run time: an annotation that lies (a list
where a tuple is declared) or an ``except`` clause that rebinds a name to an unrelated exception
type passes mypy and the interpreted suite, and fails here.

Needs a C compiler and the Python headers (``./test.sh`` installs them): skipped without them
unless ``CLIPPER_REQUIRE_COMPILED=1`` (set by ``./test.sh``), which makes a missing one a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import zipfile
from pathlib import Path

import pytest

from clipper.compiled import HOT_PATH_MODULES

# building takes ~1 min and the serving tests ~3 on 2 idle cores: more beside the rest of the suite
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

REPO = Path(__file__).resolve().parents[2]
# The tests of the serving path that use the real objects (the unit tests' fakes are duck-typed:
# compiled code accepts only the declared classes).
SERVING_TESTS = [
    "tests/integration/test_serving_plane.py",
    "tests/integration/test_traffic.py",
    "tests/integration/test_admin_local_flow.py",
    "tests/integration/test_admin_local_errors.py",
    "tests/integration/test_container_rpc.py",
    "tests/integration/test_container_runtime.py",
    "tests/unit/test_http_server.py",
    "tests/unit/test_metrics.py",
    "tests/unit/test_rpc_server.py",
    "tests/unit/test_rpc_stream.py",
    "tests/reliability",
    "tests/fuzz",
]


def _missing_toolchain() -> str | None:
    if shutil.which(os.environ.get("CC", "cc")) is None:
        return "no C compiler (apt-get install gcc)"
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").exists():
        return "no Python headers (apt-get install python3-dev)"
    try:
        import mypyc  # noqa: F401
    except ImportError:
        return "mypy is not installed (the dev extra)"
    return None


def _copy_checkout(dest: Path) -> None:
    """The tracked and new files (what a clone holds), not .venv, build outputs or caches."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO,
                           capture_output=True, check=True).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, files):
        src = REPO / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


@pytest.fixture(scope="module")
def compiled_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    missing = _missing_toolchain()
    if missing:
        if os.environ.get("CLIPPER_REQUIRE_COMPILED") == "1":
            pytest.fail(f"cannot compile the hot path: {missing}")
        pytest.skip(f"cannot compile the hot path: {missing}")
    base = tmp_path_factory.mktemp("compiled")
    tree, wheels = base / "tree", base / "wheels"
    tree.mkdir()
    _copy_checkout(tree)
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-build-isolation", "--no-deps", "-w", str(wheels), str(tree)],
        env={**os.environ, "CLIPPER_COMPILE": "1"}, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    (wheel,) = wheels.glob("clipper-*.whl")
    with zipfile.ZipFile(wheel) as z:
        compiled = [n for n in z.namelist() if n.endswith(".so")]
        z.extractall(tree, compiled)
    stems = {n.split(".", 1)[0].replace("/", ".") for n in compiled}
    assert set(HOT_PATH_MODULES) <= stems, f"not compiled: {set(HOT_PATH_MODULES) - stems}"
    return tree


def _in_tree(tree: Path, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    env.pop("PYTEST_ADDOPTS", None)
    return subprocess.run([sys.executable, *args], cwd=tree, env=env, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


def test_the_compiled_tree_imports_every_hot_path_module_compiled(compiled_tree: Path) -> None:
    code = "from clipper.compiled import hot_path; print(hot_path())"
    assert _in_tree(compiled_tree, "-c", code, timeout=60).stdout.strip() == "compiled"
    here = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert here.stdout.strip() == "interpreted", here.stderr  # this checkout: editable, never compiled


def test_the_serving_tests_pass_against_the_compiled_hot_path(compiled_tree: Path) -> None:
    # a short base: the local backend's Unix socket path must fit in 107 bytes (else it uses TCP)
    base = tempfile.mkdtemp(prefix="clipper-compiled-")
    try:
        run = _in_tree(compiled_tree, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--basetemp", base,
                       *SERVING_TESTS, timeout=1500)  # fmt: skip
    finally:
        shutil.rmtree(base, ignore_errors=True)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and " failed" not in run.stdout
