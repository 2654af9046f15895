"""The prediction hot path, optionally compiled to C extension modules with mypyc.

The query frontend's per-request work (HTTP, parsing, admission, batching, the RPC encoding and
its socket, completion, metrics) is plain, fully annotated Python.
``CLIPPER_COMPILE=1 pip install --no-build-isolation`` (``setup.py``; needs mypy, clipper's
dependencies, a C compiler and the Python headers) compiles the modules below with mypyc: the same
source, about a quarter more predictions per second from one frontend process, 40 % less CPU per
request in process (``bench/README.md``). ``images/build.sh`` builds the images' wheel so when it
can. Every other install (editable ones included, so that an edit takes effect at once) runs them
interpreted. Compiled code checks the annotations at run time, so they must be true
(``tests/integration/test_compiled_hot_path.py`` runs the serving tests against a compiled build;
``docs/internals.md`` lists the rules).

**A cached build for a checkout.** An editable install (``./quickstart.sh``'s) can still run its
query frontend and model replicas compiled: ``python -m clipper.compiled build`` compiles this
checkout's hot path into a cache outside it (``$CLIPPER_HOT_PATH_CACHE``, else
``$XDG_CACHE_HOME/clipper/hot-path``, else ``~/.cache/clipper/hot-path``), in a directory named by
the *fingerprint* of every ``.py`` file of the ``clipper`` package (and of the interpreter's ABI).
``python -m clipper.query_frontend`` and ``python -m clipper.container`` call
:func:`use_cached_build` before they import the hot path: when the cache holds a build of exactly
the sources they run, they import those extension modules (a finder ahead of the usual ones);
after any edit of the package the fingerprint differs and they run interpreted until the next build,
so an edit is never shadowed by a stale build. ``CLIPPER_HOT_PATH_CACHE=off`` turns the cache off.
The frontend's start-up line says which hot path runs (``compiled (cached build)``).
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

HOT_PATH_MODULES = (
    "clipper.http.server",
    "clipper.metrics.types",
    "clipper.query_frontend.batching",
    "clipper.query_frontend.cache",
    "clipper.query_frontend.processor",
    "clipper.query_frontend.queues",
    "clipper.query_frontend.requests",
    "clipper.query_frontend.responses",
    "clipper.query_frontend.routes",
    "clipper.query_frontend.server",
    "clipper.query_frontend.traffic",
    "clipper.query_frontend.workers",
    "clipper.rpc.protocol",
    "clipper.rpc.server",
    "clipper.rpc.stream",
)


log = logging.getLogger(__name__)

CACHE_ENV = "CLIPPER_HOT_PATH_CACHE"
CACHE_OFF = "off"  # CLIPPER_HOT_PATH_CACHE=off: never use a cached build
MANIFEST = "modules.json"  # in a cached build: module name -> extension file; written last
CACHED = "compiled (cached build)"
KEEP_BUILDS = 4  # a new build removes the cache's older ones beyond this many (~3.5 MB each)


class BuildError(RuntimeError):
    """The hot path could not be compiled; the message says why (and holds the build's output)."""


def hot_path() -> str:
    """``compiled``, ``compiled (cached build)``, ``interpreted`` or ``partly compiled (N of M)``:
    how the hot path's modules are (or would be) imported in this process (found, not imported)."""
    if any(isinstance(f, _CachedExtensions) for f in sys.meta_path):
        return CACHED
    compiled = 0
    for name in HOT_PATH_MODULES:
        spec = importlib.util.find_spec(name)
        if spec is not None and isinstance(spec.loader, importlib.machinery.ExtensionFileLoader):
            compiled += 1
    if compiled == len(HOT_PATH_MODULES):
        return "compiled"
    if compiled == 0:
        return "interpreted"
    return f"partly compiled ({compiled} of {len(HOT_PATH_MODULES)})"


def frontend_hot_path() -> str:
    """What a query frontend (or replica) started now from this installation imports: a cached
    build of these sources when there is one (:func:`use_cached_build`), else what :func:`hot_path`
    finds. (A process that has imported the hot path itself, such as a benchmark, asks this.)"""
    if not _installed_compiled() and _cached_build() is not None:
        return CACHED
    return hot_path()


def cache_root() -> Path:
    env = os.environ.get(CACHE_ENV)
    if env and env != CACHE_OFF:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "clipper" / "hot-path"


def fingerprint(package: Path | None = None) -> str:
    """What a cached build is valid for: every ``.py`` file of the ``clipper`` package (names and
    bytes; a compiled module bakes in the types of what it imports, so any edit counts) and the
    interpreter's version and extension ABI."""
    pkg = package or Path(__file__).resolve().parent
    h = hashlib.sha256()
    h.update(f"{sys.version}\0{sysconfig.get_config_var('EXT_SUFFIX')}\0".encode())
    for path in sorted(pkg.rglob("*.py")):
        h.update(path.relative_to(pkg).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:32]


def _installed_compiled() -> bool:
    """Whether the package itself holds every hot path module compiled (a compiled install):
    looked up on disk, since importing a parent package may import its modules."""
    root = Path(__file__).resolve().parent.parent
    suffixes = importlib.machinery.EXTENSION_SUFFIXES
    return all(
        any((root / (name.replace(".", "/") + suffix)).is_file() for suffix in suffixes)
        for name in HOT_PATH_MODULES
    )


def cached_build() -> Path | None:
    """The directory of a usable cached build of these sources, or None."""
    found = _cached_build()
    return found[0] if found is not None else None


def _cached_build(root: Path | None = None) -> tuple[Path, dict[str, Path]] | None:
    """A usable cached build of exactly these sources: its directory and extension modules."""
    if os.environ.get(CACHE_ENV) == CACHE_OFF:
        return None
    build = (root or cache_root()) / fingerprint()
    try:
        names = json.loads((build / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(names, dict):
        return None
    files = {str(k): build / str(v) for k, v in names.items()}
    if not set(HOT_PATH_MODULES) <= files.keys() or not all(f.is_file() for f in files.values()):
        return None
    if not all(_private(p, build) for p in [build / MANIFEST, *files.values()]):
        log.warning("ignoring the cached build %s: writable by others or not owned by this user", build)
        return None
    return build, files


def _private(path: Path, build: Path) -> bool:
    """Whether ``path`` and every directory from it up to ``build``'s parent belong to this user (or
    root) and are writable by nobody else: code is loaded from there, so nobody else may have put it
    there (the checks ssh makes of its keys)."""
    uid = os.getuid()
    for p in [path, *path.parents]:
        try:
            st = p.stat()
        except OSError:
            return False
        if st.st_uid not in (uid, 0) or st.st_mode & 0o022:
            return False
        if p == build.parent:
            return True
    return False


class _CachedExtensions(importlib.abc.MetaPathFinder):
    """Finds the hot path's modules (and mypyc's shared library) among a cached build's files."""

    def __init__(self, files: dict[str, Path]) -> None:
        self.files = files

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        f = self.files.get(fullname)
        return importlib.util.spec_from_file_location(fullname, f) if f is not None else None


def use_cached_build(root: Path | None = None) -> Path | None:
    """Import the hot path from a cached build of these exact sources, if there is one (see the
    module docstring); returns its directory, or None (interpreted, or already imported)."""
    if (
        any(n in sys.modules for n in HOT_PATH_MODULES)
        or any(isinstance(f, _CachedExtensions) for f in sys.meta_path)
        or _installed_compiled()
    ):
        return None
    found = _cached_build(root)
    if found is None:
        return None
    build, files = found
    sys.meta_path.insert(0, _CachedExtensions(files))
    return build


def missing_toolchain() -> str | None:
    """What this interpreter lacks to compile the hot path, or None."""
    if shutil.which(os.environ.get("CC", "cc")) is None:
        return "no C compiler (apt-get install gcc)"
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").exists():
        return "no Python headers (apt-get install python3-dev)"
    absent = [m for m in ("mypy", "setuptools", "wheel") if importlib.util.find_spec(m) is None]
    if absent:  # the build runs without isolation, with this interpreter's packages
        return f"{', '.join(absent)} not installed (pip install mypy setuptools wheel, or the dev extra)"
    return None


def compile_wheel(tree: Path, dest: Path, timeout: float = 1200) -> list[str]:
    """Build ``tree`` (a project: setup.py, pyproject.toml, the package) with ``CLIPPER_COMPILE=1``
    and extract the wheel's extension modules into ``dest``; returns their paths inside it."""
    with tempfile.TemporaryDirectory(prefix="clipper-wheel-") as wheels:
        run = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "-q", "--no-build-isolation", "--no-deps", "-w", wheels, str(tree)],
            env={**os.environ, "CLIPPER_COMPILE": "1"}, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        if run.returncode != 0:
            raise BuildError(f"the compiled build failed:\n{run.stdout[-3000:]}{run.stderr[-3000:]}")
        (wheel,) = Path(wheels).glob("clipper-*.whl")
        with zipfile.ZipFile(wheel) as z:
            compiled = [n for n in z.namelist() if n.endswith(".so")]
            z.extractall(dest, compiled)
    stems = {_module_name(n) for n in compiled}
    if not set(HOT_PATH_MODULES) <= stems:
        raise BuildError(f"not compiled: {sorted(set(HOT_PATH_MODULES) - stems)}")
    return compiled


def _module_name(so_path: str) -> str:
    return so_path.split(".", 1)[0].replace("/", ".")


def build_cache(root: Path | None = None) -> Path:
    """Compile this checkout's hot path into the cache (see the module docstring); returns the
    build's directory (at once when it is there already). Raises :class:`BuildError`."""
    pkg = Path(__file__).resolve().parent
    project = pkg.parent
    if not (project / "setup.py").is_file() or not (project / "pyproject.toml").is_file():
        raise BuildError(
            f"{pkg} is not in a checkout (no setup.py beside it): an installed package is compiled "
            "when installed (CLIPPER_COMPILE=1 pip install --no-build-isolation ., README)"
        )
    missing = missing_toolchain()
    if missing:
        raise BuildError(f"cannot compile the hot path: {missing}")
    root = root or cache_root()
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    with tempfile.TemporaryDirectory(prefix="clipper-hot-path-") as tmp:
        src = Path(tmp) / "src"
        shutil.copytree(pkg, src / "clipper", ignore=shutil.ignore_patterns("__pycache__", "*.so"))
        for name in ("setup.py", "pyproject.toml", "README.md"):
            shutil.copy2(project / name, src / name)
        fp = fingerprint(src / "clipper")  # of what is compiled, even if the checkout changes meanwhile
        build = root / fp
        if (build / MANIFEST).is_file():
            return build
        staging = Path(tempfile.mkdtemp(prefix=f".{fp}-", dir=root))
        try:
            compiled = compile_wheel(src, staging)
            for d, _dirs, names in os.walk(staging):  # see _private: writable by this user alone
                for p in [d, *(os.path.join(d, n) for n in names)]:
                    os.chmod(p, os.stat(p).st_mode & ~0o022)
            (staging / MANIFEST).write_text(json.dumps({_module_name(n): n for n in compiled}, indent=1))
            try:
                staging.rename(build)
            except OSError:  # another build of the same sources finished first
                if not (build / MANIFEST).is_file():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    _prune(root, keep=build)
    return build


def _prune(root: Path, keep: Path) -> None:
    """Remove the oldest builds beyond :data:`KEEP_BUILDS` (by when they were built), never ``keep``."""
    builds = sorted(
        (d for d in root.iterdir() if d.is_dir() and (d / MANIFEST).is_file() and d != keep),
        key=lambda d: (d / MANIFEST).stat().st_mtime,
        reverse=True,
    )
    for old in builds[KEEP_BUILDS - 1 :]:
        shutil.rmtree(old, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """``python -m clipper.compiled [build|status]``."""
    args = sys.argv[1:] if argv is None else argv
    if args == ["build"]:
        try:
            print(build_cache())
        except BuildError as e:
            print(f"clipper.compiled: {e}", file=sys.stderr)
            return 1
        return 0
    if args in ([], ["status"]):
        built = cached_build()
        print(f"hot path: {frontend_hot_path()} (cache {cache_root()}, sources {fingerprint()}"
              f"{', built' if built else ', not built'})")  # fmt: skip
        return 0
    print("usage: python -m clipper.compiled [build|status]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
