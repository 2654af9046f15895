"""Turning a Python closure into a model directory (``docs/internals.md``, "Model directory")."""

from __future__ import annotations

import json
import logging
import pickle
import shutil
import sys
import tempfile
import types
from pathlib import Path
from typing import Any

import cloudpickle

from ..exceptions import ClipperException
from .dependencies import classify, dumps_recording

logger = logging.getLogger(__name__)


def serialize_object(obj: object) -> bytes:
    """cloudpickle bytes of ``obj``; ``ClipperException`` naming the offending object when it cannot be."""
    try:
        data: bytes = cloudpickle.dumps(obj, protocol=pickle.DEFAULT_PROTOCOL)
        return data
    except Exception as e:
        raise ClipperException(_describe_pickling_error(obj, e)) from None


def _referenced_objects(func: Any) -> list[tuple[str, object]]:
    """(description, value) of what a function drags into its pickle: closure cells, globals, defaults."""
    out: list[tuple[str, object]] = []
    if isinstance(func, types.MethodType):
        out.append(("bound instance", func.__self__))
        func = func.__func__
    if not isinstance(func, types.FunctionType):
        return (
            [(f"attribute {k!r} of {type(func).__qualname__}", v) for k, v in vars(func).items()]
            if hasattr(func, "__dict__")
            else []
        )
    for name, cell in zip(func.__code__.co_freevars, func.__closure__ or (), strict=False):
        try:
            out.append((f"closure variable {name!r}", cell.cell_contents))
        except ValueError:
            continue
    names: set[str] = set()
    codes = [func.__code__]
    while codes:
        code = codes.pop()
        names.update(code.co_names)
        codes.extend(c for c in code.co_consts if isinstance(c, types.CodeType))
    for name in sorted(names):
        if name in func.__globals__:
            out.append((f"global variable {name!r}", func.__globals__[name]))
    for i, default in enumerate(func.__defaults__ or ()):
        out.append((f"default argument #{i + 1}", default))
    return out


def _describe_pickling_error(obj: object, error: Exception) -> str:
    what = getattr(obj, "__qualname__", None) or type(obj).__qualname__
    for description, value in _referenced_objects(obj):
        try:
            cloudpickle.dumps(value, protocol=pickle.DEFAULT_PROTOCOL)
        except Exception as e:
            return (
                f"Could not serialize the prediction function {what!r}: its {description} "
                f"(a {type(value).__module__}.{type(value).__qualname__}) cannot be pickled: {e}. "
                "Create such state inside the function, or capture only picklable data."
            )
    return f"Could not serialize the prediction function {what!r}: {type(error).__name__}: {error}"


def save_python_function(name: str, func: object, extra_requirements: list[str] | None = None) -> str:
    """Write ``func`` and what it needs into a new temporary model directory; return its path.

    The directory holds ``func.pkl`` (cloudpickle), ``modules/`` (local modules the function imports),
    ``requirements.txt`` (the pip distributions it uses, pinned to the installed versions, plus
    ``extra_requirements``) and ``clipper_model.json``. The caller removes the directory.
    """
    try:
        data, modules = dumps_recording(func)
    except Exception as e:
        raise ClipperException(_describe_pickling_error(func, e)) from None
    deps = classify(modules)
    requirements = deps.requirement_lines()
    for req in extra_requirements or []:
        if req not in requirements:
            requirements.append(req)

    serialization_dir = Path(tempfile.mkdtemp(suffix="clipper")).absolute()
    try:
        (serialization_dir / "func.pkl").write_bytes(data)
        if deps.local_modules:
            modules_dir = serialization_dir / "modules"
            modules_dir.mkdir()
            for mod_name, location in deps.local_modules.items():
                if location.is_dir():
                    shutil.copytree(
                        location, modules_dir / mod_name, ignore=shutil.ignore_patterns("__pycache__")
                    )
                else:
                    shutil.copy2(location, modules_dir / location.name)
        (serialization_dir / "requirements.txt").write_text("".join(f"{r}\n" for r in requirements))
        meta = {
            "kind": "python",
            "python": f"{sys.version_info.major}.{sys.version_info.minor}",
            "cloudpickle": cloudpickle.__version__,
            "requirements": requirements,
            "local_modules": sorted(deps.local_modules),
        }
        (serialization_dir / "clipper_model.json").write_text(json.dumps(meta, indent=1))
    except BaseException:
        shutil.rmtree(serialization_dir, ignore_errors=True)
        raise
    logger.info(
        f"Serialized {name}: requirements {requirements or 'none'}, local modules {sorted(deps.local_modules) or 'none'}"
    )
    return str(serialization_dir)


def deploy_model_dir(
    clipper_conn: Any, serialization_dir: str, name: str, version: str, input_type: str,
    base_image: str, labels: list[str] | None, registry: str | None, num_replicas: int, batch_size: int,
    pkgs_to_install: list[str] | None,
) -> None:  # fmt: skip
    """``build_and_deploy_model`` for a model directory a deployer made; the directory is removed
    afterwards, whatever happens (the original leaked it on errors). ``clipper_conn``: the caller's
    ``ClipperConnection`` (its methods keep the original's unannotated signatures)."""
    try:
        clipper_conn.build_and_deploy_model(
            name, version, input_type, serialization_dir, base_image, labels, registry, num_replicas,
            batch_size, pkgs_to_install,
        )  # fmt: skip
    finally:
        shutil.rmtree(serialization_dir, ignore_errors=True)
