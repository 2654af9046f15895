"""Build one model version from its manifest source (python, pyspark or image) into an image.

The rollout itself (start replicas, wait, register) is :class:`reconciler.execute.Executor`'s, on
the cluster port."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import shutil
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from reconciler.desired import DesiredModel
from reconciler.errors import ReconcilerError
from reconciler.port import ClusterPort, ModelBuild
from reconciler.sources import model_source_files


def _forget_local_modules(path: Path) -> None:
    """Drop the local modules ``path`` imports from ``sys.modules``, so that they are imported
    again as they are on disk now (``clipper watch`` loads a model again after its modules changed)."""
    local = set(model_source_files(path))
    for name, mod in list(sys.modules.items()):
        file = getattr(mod, "__file__", None)
        if file and Path(file).resolve() in local:
            del sys.modules[name]


def load_function(ref: str, base_dir: Path) -> Callable[..., object]:
    """Import ``file.py:func`` (relative to ``base_dir``) or ``package.module:func``."""
    target, attr = ref.rsplit(":", 1)
    try:
        if target.endswith(".py"):
            path = (base_dir / target).resolve()
            mod_name = f"_clipper_model_{abs(hash(str(path)))}"
            spec = importlib.util.spec_from_file_location(mod_name, path)
            if spec is None or spec.loader is None:
                raise ImportError(f"{path} is not a Python module")
            module = importlib.util.module_from_spec(spec)
            # not in sys.modules: cloudpickle then pickles the function by value
            _forget_local_modules(path)
            sys.path.insert(0, str(path.parent))
            try:
                spec.loader.exec_module(module)
            finally:
                sys.path.remove(str(path.parent))
        else:
            module = importlib.import_module(target)
        obj: object = module
        for part in attr.split("."):
            obj = getattr(obj, part)
    except Exception as e:  # user code: report whatever it raises, with the reference
        raise ReconcilerError(f"cannot load {ref}: {type(e).__name__}: {e}") from e
    if not callable(obj):
        raise ReconcilerError(f"{ref} is not callable")
    return obj


@dataclass(frozen=True)
class Artifact:
    """What a version's replicas run: an image, and how long the backend must give them to start."""

    image: str
    min_start_timeout_s: float | None = None


def build_version(cluster: ClusterPort, m: DesiredModel, registry: str | None) -> Artifact:
    """The image of ``m.version``: the manifest's ``source.image``, or one built from its function
    (python) or its saved model (pyspark) by the deployers' model-directory functions. Nothing is
    started or registered here."""
    assert m.loaded is not None, "a desired model always comes from a manifest"
    src = m.loaded.obj.spec.source
    if src.image is not None:
        return Artifact(str(src.image))
    with model_build(m, registry) as (build, min_timeout):
        return Artifact(cluster.build_model(build), min_timeout)


@contextlib.contextmanager
def model_build(m: DesiredModel, registry: str | None) -> Iterator[tuple[ModelBuild, float | None]]:
    """The model directory of a python or pyspark ``m`` (its function serialized by the deployers),
    as the :class:`ModelBuild` to build, and the least time its replicas need to start (a JVM's);
    the directory is removed afterwards. ``clipper apply`` (:func:`build_version`) and ``clipper
    build`` (:mod:`reconciler.build`) both build from it."""
    assert m.loaded is not None, "a desired model always comes from a manifest"
    spec = m.loaded.obj.spec
    src = spec.source
    if src.image is not None:
        raise ReconcilerError(f"Model/{m.name}: its source is an image ({src.image}): nothing to build")
    base_dir = m.loaded.base_dir
    base_image = spec.base_image or "default"
    min_timeout: float | None = None
    if src.pyspark is not None:
        pyspark = _pyspark_deployer(m)
        func = load_function(src.pyspark.function, base_dir)
        if base_image == "default":
            base_image = pyspark.default_pyspark_base_image()
        model_dir = pyspark.save_saved_pyspark_function(
            m.name, func, str((base_dir / src.pyspark.model_path).resolve()), src.pyspark.model_class
        )
        min_timeout = pyspark.MIN_REPLICA_TIMEOUT_S  # a JVM start
    else:
        from clipper_admin.deployers.deployer_utils import save_python_function
        from clipper_admin.deployers.python import default_python_base_image

        func = load_function(src.python.function, base_dir)
        if base_image == "default":
            base_image = default_python_base_image()
        model_dir = save_python_function(m.name, func)
    try:
        yield (
            ModelBuild(m.name, m.version, model_dir, base_image, registry, tuple(spec.packages)),
            min_timeout,
        )
    finally:
        shutil.rmtree(model_dir, ignore_errors=True)


def _pyspark_deployer(m: DesiredModel) -> ModuleType:
    try:
        from clipper_admin.deployers import pyspark
    except ImportError as e:
        raise ReconcilerError(
            f"Model/{m.name}: pyspark models need clipper_admin.deployers.pyspark ({e})"
        ) from e
    return pyspark
