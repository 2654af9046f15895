"""Dependency capture for a pickled closure: which pip distributions and which local modules it uses.

While cloudpickle serialises the function, a ``reducer_override`` hook sees every object it visits
and notes the module each one comes from (a module object itself, a function or class pickled by
reference, an instance's type). Each module is then classified:

* standard library / builtin -> nothing to do;
* belongs to an installed distribution (``importlib.metadata.packages_distributions``) -> a pinned
  requirement ``dist==version``;
* anything else importable from a file (a helper module next to the script) -> a *local* module, shipped
  in the model's ``modules/`` directory. Its own imports are scanned (``ast``) the same way.
"""

from __future__ import annotations

import ast
import io
import pickle
import sys
import sysconfig
import threading
import types
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import cloudpickle

# Provided by every model container (the runtime itself and its own dependencies).
_RUNTIME_DISTRIBUTIONS = {"clipper", "cloudpickle"}
_RUNTIME_TOP_LEVEL = {"clipper", "clipper_admin", "cloudpickle", "__main__", "__mp_main__"}


@dataclass
class Dependencies:
    requirements: dict[str, str] = field(default_factory=dict)  # distribution -> version
    local_modules: dict[str, Path] = field(default_factory=dict)  # top-level name -> file or package dir

    def requirement_lines(self) -> list[str]:
        return [f"{dist}=={version}" for dist, version in sorted(self.requirements.items())]


class _RecordingPickler(cloudpickle.Pickler):  # type: ignore[misc]  # cloudpickle ships no types
    """A cloudpickle pickler that records the top-level module of everything it pickles."""

    def __init__(self, file: io.BytesIO, protocol: int | None = None) -> None:
        super().__init__(file, protocol=protocol)
        self.seen_modules: set[str] = set()

    def reducer_override(self, obj: object) -> Any:
        if isinstance(obj, types.ModuleType):
            self._note(obj.__name__)
        elif isinstance(obj, type | types.FunctionType | types.BuiltinFunctionType):
            self._note(getattr(obj, "__module__", None))
        else:
            self._note(getattr(type(obj), "__module__", None))
        return super().reducer_override(obj)

    def _note(self, module: str | None) -> None:
        if module:
            self.seen_modules.add(module.split(".", 1)[0])


def dumps_recording(obj: object, protocol: int = pickle.DEFAULT_PROTOCOL) -> tuple[bytes, set[str]]:
    """``cloudpickle.dumps(obj)`` plus the top-level names of the modules the pickle refers to."""
    buf = io.BytesIO()
    pickler = _RecordingPickler(buf, protocol=protocol)
    pickler.dump(obj)
    return buf.getvalue(), pickler.seen_modules


def _is_stdlib(name: str) -> bool:
    return name in sys.stdlib_module_names or name in sys.builtin_module_names


def _stdlib_dirs() -> list[Path]:
    paths = sysconfig.get_paths()
    return [Path(paths[k]).resolve() for k in ("stdlib", "platstdlib") if k in paths]


def _module_location(name: str) -> Path | None:
    """The file (plain module) or directory (package) a loaded top-level module comes from."""
    module = sys.modules.get(name)
    file = getattr(module, "__file__", None)
    if not file:
        return None
    path = Path(file).resolve()
    return path.parent if path.name == "__init__.py" else path


def _in_site_packages(path: Path) -> bool:
    return any(part in ("site-packages", "dist-packages") for part in path.parts)


def classify(modules: set[str], deps: Dependencies | None = None) -> Dependencies:
    deps = deps or Dependencies()
    dist_map = metadata.packages_distributions()
    stdlib = _stdlib_dirs()
    todo = sorted(modules)
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen or name in _RUNTIME_TOP_LEVEL or _is_stdlib(name):
            continue
        seen.add(name)
        dists = [d for d in dist_map.get(name, []) if d.lower() not in _RUNTIME_DISTRIBUTIONS]
        if name in dist_map:
            for dist in dists:
                try:
                    deps.requirements[dist] = metadata.version(dist)
                except metadata.PackageNotFoundError:
                    continue
            continue
        location = _module_location(name)
        if location is None or _in_site_packages(location) or any(location.is_relative_to(d) for d in stdlib):
            continue
        deps.local_modules[name] = location
        todo.extend(sorted(_imports_of(location) - seen))
    return deps


#: ``ast.parse`` is not thread-safe in CPython 3.11 (its AST-to-object step keeps a recursion depth in
#: interpreter-wide state; a thread switch inside it, e.g. the garbage collector running a finalizer,
#: raises "SystemError: AST constructor recursion depth mismatch"): closures deployed from several
#: threads at once must not parse at the same time.
_PARSE_LOCK = threading.Lock()


def _imports_of(location: Path) -> set[str]:
    """Top-level names imported (absolutely) by a local module or package, found with ``ast``."""
    files = sorted(location.rglob("*.py")) if location.is_dir() else [location]
    names: set[str] = set()
    for file in files:
        try:
            text = file.read_text()
            with _PARSE_LOCK:
                tree = ast.parse(text, filename=str(file))
        except (OSError, SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".", 1)[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".", 1)[0])
    return {n for n in names if n in sys.modules}
