"""Deploy one model version from its manifest source (python, pyspark or image)."""

from __future__ import annotations

import importlib
import importlib.util
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from reconciler.desired import DesiredModel
from reconciler.errors import ReconcilerError


def load_function(ref: str, base_dir: Path) -> Any:
    """Import ``file.py:func`` (relative to ``base_dir``) or ``package.module:func``."""
    target, attr = ref.rsplit(":", 1)
    try:
        if target.endswith(".py"):
            path = (base_dir / target).resolve()
            mod_name = f"_clipper_model_{abs(hash(str(path)))}"
            spec = importlib.util.spec_from_file_location(mod_name, path)
            module = importlib.util.module_from_spec(spec)
            # not in sys.modules: cloudpickle then pickles the function by value
            sys.path.insert(0, str(path.parent))
            try:
                spec.loader.exec_module(module)
            finally:
                sys.path.remove(str(path.parent))
        else:
            module = importlib.import_module(target)
        obj = module
        for part in attr.split("."):
            obj = getattr(obj, part)
    except Exception as e:  # user code: report whatever it raises, with the reference
        raise ReconcilerError(f"cannot load {ref}: {type(e).__name__}: {e}") from e
    if not callable(obj):
        raise ReconcilerError(f"{ref} is not callable")
    return obj


def _python_model_dir(func: Any, ref: str, base_dir: Path) -> Path:
    """A model directory (func.pkl, modules/) for backends whose python deployer is missing."""
    import cloudpickle

    from reconciler.desired import _function_files

    tmp = Path(tempfile.mkdtemp(prefix="clipper-model-"))
    (tmp / "func.pkl").write_bytes(cloudpickle.dumps(func))
    files = _function_files(ref, base_dir)
    if len(files) > 1:
        (tmp / "modules").mkdir()
        for f in files[1:]:
            shutil.copy2(f, tmp / "modules" / f.name)
    return tmp


def deploy_version(conn: Any, m: DesiredModel, labels: list[str], registry: str | None) -> None:
    """Build (when needed) and deploy ``m.version`` with ``m.replicas`` replicas; registers it."""
    spec = m.loaded.obj.spec
    src = spec.source
    pkgs = list(spec.packages) or None
    if src.image is not None:
        conn.deploy_model(m.name, m.version, m.input_type, src.image, labels, m.replicas, m.batch_size)
        return
    base_dir = m.loaded.base_dir
    if src.pyspark is not None:
        _deploy_pyspark(conn, m, labels, registry, pkgs)
        return
    func = load_function(src.python.function, base_dir)
    try:
        from clipper_admin.deployers import python as python_deployer
    except ImportError:
        python_deployer = None
    if python_deployer is not None and hasattr(python_deployer, "deploy_python_closure"):
        python_deployer.deploy_python_closure(
            conn, m.name, m.version, m.input_type, func, base_image=spec.base_image or "default",
            labels=labels, registry=registry, num_replicas=m.replicas, batch_size=m.batch_size,
            pkgs_to_install=pkgs,
        )  # fmt: skip
        return
    model_dir = _python_model_dir(func, src.python.function, base_dir)
    try:
        conn.build_and_deploy_model(
            m.name, m.version, m.input_type, str(model_dir), spec.base_image or "default", labels,
            registry, m.replicas, m.batch_size, pkgs,
        )  # fmt: skip
    finally:
        shutil.rmtree(model_dir, ignore_errors=True)


def _deploy_pyspark(conn: Any, m: DesiredModel, labels: list[str], registry: str | None, pkgs) -> None:
    """The saved model is checked and shipped as it is: no JVM starts in the CLI process."""
    spec = m.loaded.obj.spec
    src = spec.source.pyspark
    try:
        from clipper_admin.deployers import pyspark as pyspark_deployer
    except ImportError as e:
        raise ReconcilerError(
            f"Model/{m.name}: pyspark models need clipper_admin.deployers.pyspark ({e})"
        ) from e
    func = load_function(src.function, m.loaded.base_dir)
    pyspark_deployer.deploy_saved_pyspark_model(
        conn, m.name, m.version, m.input_type, func,
        str((m.loaded.base_dir / src.model_path).resolve()), src.model_class,
        base_image=spec.base_image or "default", labels=labels, registry=registry,
        num_replicas=m.replicas, batch_size=m.batch_size, pkgs_to_install=pkgs,
    )  # fmt: skip
