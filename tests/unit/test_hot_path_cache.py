"""The cached compiled build of a checkout (:mod:`clipper.compiled`): found only for exactly the
sources it was built from, never when turned off or incomplete, and then imported ahead of the
sources. (A real mypyc build of the cache, served end to end: tests/integration/test_compiled_hot_path.py.)
These tests stand the sources' own ``.py`` files in for the extension modules: the finder picks
the loader by suffix, and what is checked here is which file is imported."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import clipper
from clipper import compiled
from clipper.compiled import HOT_PATH_MODULES, MANIFEST, fingerprint

PKG = Path(clipper.__file__).resolve().parent


def _fake_cache(root: Path, fp: str, modules: tuple[str, ...] = HOT_PATH_MODULES) -> Path:
    build = root / fp
    names = {}
    for name in modules:
        rel = name.replace(".", "/") + ".py"
        (build / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(PKG.parent / rel, build / rel)
        names[name] = rel
    (build / MANIFEST).write_text(json.dumps(names))
    for d, _dirs, files in os.walk(root):  # as a build leaves it, whatever this machine's umask
        for p in [d, *(os.path.join(d, f) for f in files)]:
            os.chmod(p, os.stat(p).st_mode & ~0o022)
    return build


def _probe(cache: str) -> dict[str, str]:
    code = (
        "import json, clipper.compiled as c; d = c.use_cached_build(); "
        "import clipper.query_frontend.server as s, clipper.metrics.types as t; "
        "print(json.dumps({'dir': str(d), 'server': s.__file__, 'types': t.__file__, 'hot_path': c.hot_path()}))"
    )
    env = {**os.environ, "CLIPPER_HOT_PATH_CACHE": cache}
    run = subprocess.run(
        [sys.executable, "-I", "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def test_a_build_of_exactly_these_sources_is_imported_ahead_of_them(tmp_path: Path) -> None:
    build = _fake_cache(tmp_path, fingerprint())
    got = _probe(str(tmp_path))
    assert got["dir"] == str(build)
    assert got["server"].startswith(str(build)) and got["types"].startswith(str(build))
    assert got["hot_path"] == "compiled (cached build)"


@pytest.mark.parametrize("case", ["stale", "incomplete", "off", "empty", "group-writable", "others'"])
def test_no_usable_build_means_the_sources_run(tmp_path: Path, case: str) -> None:
    if case == "stale":  # built from other sources: any edit changes the fingerprint
        _fake_cache(tmp_path, "0" * 32)
    elif case == "incomplete":
        _fake_cache(tmp_path, fingerprint(), HOT_PATH_MODULES[:-1])
    elif case == "off":
        _fake_cache(tmp_path, fingerprint())
    elif case == "group-writable":  # somebody else could have put code there: never loaded
        build = _fake_cache(tmp_path, fingerprint())
        os.chmod(build / "clipper" / "rpc", 0o775)
    elif case == "others'":
        if os.getuid() != 0:
            pytest.skip("needs root to give a file away")
        build = _fake_cache(tmp_path, fingerprint())
        os.chown(build / "clipper" / "http" / "server.py", 65534, 65534)
    cache = "off" if case == "off" else str(tmp_path)
    got = _probe(cache)
    assert got["dir"] == "None"
    assert got["server"].startswith(str(PKG)) and got["types"].startswith(str(PKG))
    assert got["hot_path"] == "interpreted"


def test_the_fingerprint_follows_every_python_source_and_nothing_else(tmp_path: Path) -> None:
    pkg = tmp_path / "clipper"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "a.py").write_text("x = 1\n")
    (pkg / "sub" / "b.py").write_text("y = 2\n")
    first = fingerprint(pkg)
    (pkg / "sub" / "__pycache__").mkdir()
    (pkg / "sub" / "__pycache__" / "b.cpython-311.pyc").write_bytes(b"\0")
    (pkg / "c.cpython-311-x86_64-linux-gnu.so").write_bytes(b"\0")
    (pkg / "data.json").write_text("{}")
    assert fingerprint(pkg) == first
    (pkg / "sub" / "b.py").write_text("y = 3\n")  # an edit of any module, hot path or not
    assert fingerprint(pkg) != first
    (pkg / "sub" / "b.py").write_text("y = 2\n")
    assert fingerprint(pkg) == first
    (pkg / "d.py").write_text("")  # a new module
    assert fingerprint(pkg) != first


def test_a_malformed_manifest_is_no_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    build = _fake_cache(tmp_path, fingerprint())
    monkeypatch.setenv("CLIPPER_HOT_PATH_CACHE", str(tmp_path))
    assert compiled.cached_build() is not None
    for text in ("[1, 2]", "{", ""):
        (build / MANIFEST).write_text(text)
        assert compiled.cached_build() is None


def test_building_without_a_compiler_says_so(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "CC": str(tmp_path / "no-such-cc"),
        "CLIPPER_HOT_PATH_CACHE": str(tmp_path / "cache"),
    }
    run = subprocess.run([sys.executable, "-m", "clipper.compiled", "build"], env=env, capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    assert run.returncode == 1
    assert "cannot compile the hot path: no C compiler" in run.stderr
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_the_command_line(tmp_path: Path) -> None:
    env = {**os.environ, "CLIPPER_HOT_PATH_CACHE": str(tmp_path)}
    status = subprocess.run([sys.executable, "-m", "clipper.compiled", "status"], env=env, capture_output=True,
                            text=True, timeout=60)  # fmt: skip
    assert (
        status.returncode == 0 and "hot path: interpreted" in status.stdout and fingerprint() in status.stdout
    )
    bad = subprocess.run([sys.executable, "-m", "clipper.compiled", "nonsense"], env=env, capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    assert bad.returncode == 2 and "usage:" in bad.stderr


def test_a_new_build_keeps_the_newest_few_and_removes_the_rest(tmp_path: Path) -> None:
    for i in range(7):
        (tmp_path / f"{i:032x}").mkdir()
        (tmp_path / f"{i:032x}" / MANIFEST).write_text("{}")
        os.utime(tmp_path / f"{i:032x}" / MANIFEST, (1000 + i, 1000 + i))
    (tmp_path / "unrelated").mkdir()  # not a build: left alone
    current = tmp_path / f"{0:032x}"  # the build just made (or found) is never removed
    compiled._prune(tmp_path, keep=current)
    left = sorted(d.name for d in tmp_path.iterdir())
    newest = [f"{i:032x}" for i in (4, 5, 6)]  # KEEP_BUILDS - 1 others beside the current one
    assert compiled.KEEP_BUILDS == 4
    assert left == sorted([current.name, *newest, "unrelated"])


def test_what_a_frontend_started_now_would_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A benchmark that has imported the hot path itself reports its children's, not its own."""
    monkeypatch.setenv("CLIPPER_HOT_PATH_CACHE", str(tmp_path))
    assert compiled.frontend_hot_path() == compiled.hot_path() == "interpreted"
    _fake_cache(tmp_path, fingerprint())
    assert compiled.frontend_hot_path() == "compiled (cached build)"
    assert compiled.hot_path() == "interpreted"  # this process imported the sources
    monkeypatch.setenv("CLIPPER_HOT_PATH_CACHE", "off")
    assert compiled.frontend_hot_path() == "interpreted"
