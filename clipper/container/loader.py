"""Load a model directory (``docs/internals.md``, "Model directory") into a prediction function."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cloudpickle

PredictFunction = Callable[[Any], Any]


class ModelLoadError(Exception):
    """The model directory cannot be loaded; ``exit_code`` 3 means a missing package (ImportError)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def read_metadata(model_dir: Path) -> dict[str, Any]:
    """``clipper_model.json``, or ``{"kind": "python"}`` when the file is absent."""
    path = model_dir / "clipper_model.json"
    if not path.exists():
        return {"kind": "python"}
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"cannot read {path}: {e}") from None
    if not isinstance(meta, dict):
        raise ModelLoadError(f"{path} must hold a JSON object")
    meta.setdefault("kind", "python")
    return meta


def add_import_paths(model_dir: Path) -> None:
    """Put ``modules/`` first and ``site-packages/`` next on ``sys.path`` (when present)."""
    for sub in ("site-packages", "modules"):  # inserted in reverse: modules/ ends up first
        d = model_dir / sub
        if d.is_dir() and str(d) not in sys.path:
            sys.path.insert(0, str(d))


def load_model(model_dir: Path) -> PredictFunction:
    if not model_dir.is_dir():
        raise ModelLoadError(f"model directory {model_dir} does not exist (set CLIPPER_MODEL_PATH)")
    meta = read_metadata(model_dir)
    add_import_paths(model_dir)
    kind = meta["kind"]
    if kind == "python":
        return _load_python(model_dir)
    if kind == "pyspark":
        return _load_pyspark(model_dir, meta)
    raise ModelLoadError(f"unknown model kind {kind!r} in {model_dir / 'clipper_model.json'}")


def _load_python(model_dir: Path) -> PredictFunction:
    path = model_dir / "func.pkl"
    try:
        with path.open("rb") as f:
            func: object = cloudpickle.load(f)
    except FileNotFoundError:
        raise ModelLoadError(f"{path} not found: the model directory has no prediction function") from None
    except ImportError as e:
        raise ModelLoadError(
            f"cannot unpickle {path}: {e}. The function needs a package that is not installed "
            "in the container: list it in the model's packages.",
            exit_code=3,
        ) from None
    except Exception as e:
        raise ModelLoadError(f"cannot unpickle {path}: {type(e).__name__}: {e}") from None
    if not callable(func):
        raise ModelLoadError(f"{path} holds a {type(func).__name__}, not a callable")
    return func


def _load_pyspark(model_dir: Path, meta: dict[str, Any]) -> PredictFunction:
    try:
        from clipper.container import pyspark_runtime
    except ImportError as e:
        raise ModelLoadError(
            f"this is a PySpark model but the PySpark runtime cannot be imported ({e}); "
            "use the PySpark container image or `pip install 'clipper[pyspark]'`",
            exit_code=3,
        ) from None
    try:
        return pyspark_runtime.load(model_dir, meta)
    except ImportError as e:
        raise ModelLoadError(f"cannot load the PySpark model: {e}", exit_code=3) from None
    except Exception as e:
        raise ModelLoadError(f"cannot load the PySpark model: {type(e).__name__}: {e}") from None
