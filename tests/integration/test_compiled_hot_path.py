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

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))
from compiled_tree import BuildError, missing_toolchain  # noqa: E402
from compiled_tree import build as compiled_tree_build  # noqa: E402

# building takes ~1 min and the serving tests ~3 on 2 idle cores: more beside the rest of the suite
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

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


def _require_toolchain() -> None:
    missing = missing_toolchain()
    if missing:
        if os.environ.get("CLIPPER_REQUIRE_COMPILED") == "1":
            pytest.fail(f"cannot compile the hot path: {missing}")
        pytest.skip(f"cannot compile the hot path: {missing}")


@pytest.fixture(scope="module")
def compiled_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _require_toolchain()
    try:
        return compiled_tree_build(tmp_path_factory.mktemp("compiled"))
    except BuildError as e:
        pytest.fail(str(e))


def _in_tree(tree: Path, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    env.pop("PYTEST_ADDOPTS", None)
    return subprocess.run([sys.executable, *args], cwd=tree, env=env, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


def _one_second_of_ours(out: Path, work: Path) -> list[str]:
    """bench/compare.py's arguments for a second of load on our local cluster, kept in ``work``."""
    return ["comparison", "--only", "ours", "--duration", "1", "--warmup", "0", "--connections", "4",
            "--rounds", "1", "--hook", "on", "--out", str(out), "--workdir", str(work), "--keep"]  # fmt: skip


def _served(run: subprocess.CompletedProcess[str], out: Path, work: Path, hot_path: str) -> None:
    """That run of bench/compare.py served predictions from a frontend running ``hot_path``."""
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["machine"]["hot_path"] == hot_path
    assert report["comparison"]["results"]["ours"]["load"]["predictions"] > 0
    (log,) = work.glob("clipper-home/*/logs/query-0.log")
    assert f"hot path {hot_path}" in log.read_text()


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


def test_the_benchmark_run_from_the_compiled_tree_serves_compiled(
    compiled_tree: Path, tmp_path: Path
) -> None:
    """What ``bench/compare.py --compiled`` runs once it has built the tree: its local frontend,
    started by the benchmark with this interpreter, logs the compiled hot path."""
    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed")
    out, work = tmp_path / "result.json", tmp_path / "work"
    run = _in_tree(compiled_tree, "bench/compare.py", *_one_second_of_ours(out, work), timeout=240)
    _served(run, out, work, "compiled")


def test_a_cached_build_of_the_checkout_serves_the_local_backend_compiled(tmp_path: Path) -> None:
    """``python -m clipper.compiled build`` (what ./quickstart.sh runs) compiles this checkout's hot
    path into the cache; the local backend's query frontend, started from the editable checkout
    itself, then imports it and serves (here: the benchmark's local cluster, a second's load)."""
    _require_toolchain()
    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed")
    env = {**os.environ, "CLIPPER_HOT_PATH_CACHE": str(tmp_path / "cache")}
    env.pop("PYTEST_ADDOPTS", None)
    build = subprocess.run([sys.executable, "-m", "clipper.compiled", "build"], env=env, capture_output=True,
                           text=True, timeout=1200)  # fmt: skip
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    built = Path(build.stdout.strip())
    assert built.parent == tmp_path / "cache" and (built / "modules.json").is_file()
    out, work = tmp_path / "result.json", tmp_path / "work"
    run = subprocess.run([sys.executable, str(REPO / "bench" / "compare.py"), *_one_second_of_ours(out, work)],
                         env=env, capture_output=True, text=True, timeout=240)  # fmt: skip
    _served(run, out, work, "compiled (cached build)")
