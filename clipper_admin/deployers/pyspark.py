"""Deploy a PySpark model with a Python prediction function (the original ``clipper_admin.deployers.pyspark``).

A small extension of the Python closure deployer (:mod:`.python`): the function is called as
``func(spark, model, inputs)``; its pure-Python state travels by closure capture (with dependency
capture, as for any closure), while the PySpark model, which cannot be pickled, is saved with
PySpark's native API next to it and loaded once by the container inside a long-lived SparkSession.

The model directory is the closure's plus ``pyspark_model/`` (the output of ``model.save``), and
``clipper_model.json`` says ``{"kind": "pyspark", "pyspark": {"model_class": ..., "model_path":
"pyspark_model", "pyspark_version": ...}}`` (``docs/internals.md``).
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path

from ..exceptions import ClipperException
from ..version import __registry__, __version__
from .deployer_utils import deploy_model_dir, save_python_function

logger = logging.getLogger(__name__)

#: Where ``model.save`` writes inside the model directory.
MODEL_SUBDIR = "pyspark_model"
#: Distributions the PySpark container provides; a captured pin on them is dropped, not installed.
PROVIDED_DISTRIBUTIONS = ("pyspark", "py4j")
#: A PySpark replica starts a JVM and a SparkSession before it connects; on a busy machine that
#: takes far longer than a Python closure. Replica waits shorter than this are raised for the deploy.
MIN_REPLICA_TIMEOUT_S = 300.0


def default_pyspark_base_image() -> str:
    """The PySpark container for the running interpreter, e.g. ``clipper/pyspark311-container:<v>``."""
    major, minor = sys.version_info[:2]
    if major != 3:
        raise ClipperException(f"PySpark deployer only supports Python 3. Detected {major}.{minor}")
    return f"{__registry__}/pyspark3{minor}-container:{__version__}"


def pyspark_model_class(pyspark_model) -> str:
    """The dotted class of a PySpark model; ``ClipperException`` for anything else.

    The original raised ``AttributeError`` here for non-PySpark objects (its regex found nothing).
    """
    cls = type(pyspark_model)
    module = getattr(cls, "__module__", "") or ""
    if not module.startswith("pyspark.") or not callable(getattr(pyspark_model, "save", None)):
        raise ClipperException(
            f"pyspark_model must be a PySpark model (a pyspark.ml Model or PipelineModel, or a "
            f"pyspark.mllib model) with a save method; got a {module}.{cls.__qualname__}"
        )
    return f"{module}.{cls.__qualname__}"


def _is_ml_model(pyspark_model) -> bool:
    """pyspark.ml models and pipelines save with ``model.save(path)``; mllib ones with ``save(sc, path)``."""
    from pyspark.ml.base import Model
    from pyspark.ml.pipeline import PipelineModel

    return isinstance(pyspark_model, Model | PipelineModel)


def save_pyspark_model(pyspark_model, sc, path: Path) -> None:
    """Save with PySpark's native API into ``path`` (which must not exist yet)."""
    try:
        if _is_ml_model(pyspark_model):
            pyspark_model.save(str(path))
        else:
            if sc is None:
                from pyspark import SparkContext

                sc = SparkContext._active_spark_context
            if sc is None:
                raise ClipperException(
                    "sc is required to save a pyspark.mllib model (pass the running SparkContext)"
                )
            pyspark_model.save(sc, str(path))
    except ClipperException:
        raise
    except Exception as e:  # Py4J and Spark errors: report them, with the class, as ours
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ClipperException(
            f"Could not save the PySpark model ({type(pyspark_model).__qualname__}) with its native "
            f"save API: {type(e).__name__}: {first_line}"
        ) from None


def _drop_provided(requirements: list[str]) -> list[str]:
    def dist(req: str) -> str:
        for sep in ("==", ">=", "<=", "~=", "!=", ">", "<", "[", ";", " "):
            req = req.split(sep, 1)[0]
        return req.strip().lower().replace("_", "-")

    return [r for r in requirements if dist(r) not in PROVIDED_DISTRIBUTIONS]


def _finish_model_dir(serialization_dir: Path, model_class: str) -> None:
    """Turn a closure's model directory into a PySpark one: metadata, provided requirements dropped."""
    import pyspark

    meta_path = serialization_dir / "clipper_model.json"
    meta = json.loads(meta_path.read_text())
    requirements = _drop_provided(meta.get("requirements", []))
    (serialization_dir / "requirements.txt").write_text("".join(f"{r}\n" for r in requirements))
    meta.update(
        kind="pyspark",
        requirements=requirements,
        pyspark={
            "model_class": model_class,
            "model_path": MODEL_SUBDIR,
            "pyspark_version": pyspark.__version__,
        },
    )
    meta_path.write_text(json.dumps(meta, indent=1))


def save_pyspark_function(name, func, pyspark_model, sc, extra_requirements=None) -> str:
    """Write the model directory (closure + saved model + metadata) to a new temporary directory.

    Returns its path; the caller removes it.
    """
    if not callable(func):
        raise ClipperException(f"func must be callable, got a {type(func).__name__}")
    model_class = pyspark_model_class(pyspark_model)
    serialization_dir = Path(save_python_function(name, func, extra_requirements))
    try:
        save_pyspark_model(pyspark_model, sc, serialization_dir / MODEL_SUBDIR)
        _finish_model_dir(serialization_dir, model_class)
    except BaseException:
        shutil.rmtree(serialization_dir, ignore_errors=True)
        raise
    logger.info(f"Saved PySpark model {model_class} for {name}")
    return str(serialization_dir)


def saved_model_class(model_path) -> str | None:
    """The JVM class a ``model.save`` directory records (``metadata/part-*``), when readable."""
    for part in sorted(Path(model_path, "metadata").glob("part-*")):
        try:
            line = part.read_text().strip().splitlines()[0]
            cls: str | None = json.loads(line).get("class")
            return cls
        except (OSError, ValueError, IndexError, AttributeError):
            continue
    return None


def check_saved_model(model_path, model_class: str) -> None:
    """A saved model directory whose class matches ``model_class``, without starting Spark.

    ``ClipperException`` for a class that cannot be imported or is not a PySpark model class, a
    directory ``model.save`` did not write, or a saved model of another class.
    """
    from clipper.container.pyspark_runtime import PySparkLoadError, import_model_class

    try:
        import_model_class(model_class)
    except PySparkLoadError as e:
        raise ClipperException(str(e)) from None
    path = Path(model_path)
    if not (path / "metadata").is_dir():
        raise ClipperException(
            f"{path} is not a saved PySpark model (no metadata/ directory): pass the directory "
            "written by model.save(path) (pyspark.ml) or model.save(sc, path) (pyspark.mllib)"
        )
    saved = saved_model_class(path)
    if saved and saved.rsplit(".", 1)[-1] != model_class.rsplit(".", 1)[-1]:
        raise ClipperException(f"{path} holds a saved {saved}, but the model class given is {model_class}")


def save_saved_pyspark_function(name, func, model_path, model_class, extra_requirements=None) -> str:
    """Like :func:`save_pyspark_function` for a model already saved with ``model.save``: the
    directory is copied as it is (no SparkSession needed). Returns the new model directory."""
    if not callable(func):
        raise ClipperException(f"func must be callable, got a {type(func).__name__}")
    check_saved_model(model_path, model_class)
    serialization_dir = Path(save_python_function(name, func, extra_requirements))
    try:
        shutil.copytree(model_path, serialization_dir / MODEL_SUBDIR)
        _finish_model_dir(serialization_dir, model_class)
    except BaseException:
        shutil.rmtree(serialization_dir, ignore_errors=True)
        raise
    return str(serialization_dir)


@contextmanager
def patient_replica_wait(clipper_conn, minimum: float = MIN_REPLICA_TIMEOUT_S):
    """Give the container manager's replica wait at least ``minimum`` seconds, for a JVM start
    (restored afterwards)."""
    cm = clipper_conn.cm
    before = cm.timeouts
    cm.timeouts = before.with_replica_connect_at_least(minimum)
    try:
        yield
    finally:
        cm.timeouts = before


def deploy_pyspark_model(
    clipper_conn,
    name,
    version,
    input_type,
    func,
    pyspark_model,
    sc,
    base_image="default",
    labels=None,
    registry=None,
    num_replicas=1,
    batch_size=-1,
    pkgs_to_install=None,
):
    """Deploy a Python function that uses a PySpark model.

    The function must take three arguments: a ``SparkSession``, the PySpark model and a batch of
    inputs; it returns one string per input. The model is saved with PySpark's native API
    (``model.save(path)`` for ``pyspark.ml`` models and pipelines, ``model.save(sc, path)`` for
    ``pyspark.mllib`` models), its class recorded, and loaded once when the container starts, in a
    SparkSession that every prediction reuses. Pure-Python state of ``func`` is captured by
    cloudpickle, with its pip requirements and local modules, as by
    :func:`clipper_admin.deployers.python.deploy_python_closure`.

    Parameters
    ----------
    clipper_conn : :py:meth:`clipper_admin.ClipperConnection`
    name : str
        The model name.
    version : str or int
        The model version.
    input_type : str
        One of "integers", "floats", "doubles", "bytes", or "strings".
    func : function
        ``func(spark, model, inputs)`` returning a list of strings of ``len(inputs)``.
    pyspark_model : A PySpark model object
        A ``pyspark.ml`` ``Model``/``PipelineModel`` or a ``pyspark.mllib`` model.
    sc : SparkContext
        The current SparkContext (needed to save ``pyspark.mllib`` models).
    base_image : str, optional
        "default" picks ``<registry>/pyspark3<minor>-container:<version>`` (Java and PySpark
        included). Ignored by the local backend, which runs the model with the local Python.
    labels : list(str), optional
    registry : str, optional
        A registry to push the model image to (Docker/Kubernetes).
    num_replicas : int, optional
    batch_size : int, optional
        Maximum batch size, or -1 for adaptive batching.
    pkgs_to_install : list(str), optional
        Extra pip requirements installed into the model at build time.

    Raises
    ------
    ClipperException
        For a non-PySpark ``pyspark_model``, a function that cannot be pickled, a model that
        cannot be saved, or replicas that exit while starting (their log says why, e.g. no Java
        runtime or a model that fails to load).
    """
    serialization_dir = save_pyspark_function(name, func, pyspark_model, sc)
    _deploy_dir(clipper_conn, serialization_dir, name, version, input_type, base_image, labels,
                registry, num_replicas, batch_size, pkgs_to_install)  # fmt: skip


def deploy_saved_pyspark_model(
    clipper_conn,
    name,
    version,
    input_type,
    func,
    model_path,
    model_class,
    base_image="default",
    labels=None,
    registry=None,
    num_replicas=1,
    batch_size=-1,
    pkgs_to_install=None,
):
    """Deploy a model that is already saved (a ``model.save`` directory) with its class name.

    What a ``source.pyspark`` manifest describes. No SparkSession is started here: the class and
    the saved directory are checked (:func:`check_saved_model`), the directory is copied into the
    model, and the container loads it. Other parameters as :func:`deploy_pyspark_model`.
    """
    serialization_dir = save_saved_pyspark_function(name, func, model_path, model_class)
    _deploy_dir(clipper_conn, serialization_dir, name, version, input_type, base_image, labels,
                registry, num_replicas, batch_size, pkgs_to_install)  # fmt: skip


def _deploy_dir(clipper_conn, serialization_dir, name, version, input_type, base_image, labels,
                registry, num_replicas, batch_size, pkgs_to_install) -> None:  # fmt: skip
    """Build and deploy a model directory made here (a JVM start: a patient replica wait)."""
    if base_image == "default":
        try:
            base_image = default_pyspark_base_image()
        except BaseException:
            shutil.rmtree(serialization_dir, ignore_errors=True)
            raise
    with patient_replica_wait(clipper_conn):
        deploy_model_dir(clipper_conn, serialization_dir, name, version, input_type, base_image, labels,
                         registry, num_replicas, batch_size, pkgs_to_install)  # fmt: skip
    logger.info(f"PySpark model deployed as model {name}:{version}")


def create_endpoint(
    clipper_conn,
    name,
    input_type,
    func,
    pyspark_model,
    sc,
    default_output="None",
    version=1,
    slo_micros=3000000,
    labels=None,
    registry=None,
    base_image="default",
    num_replicas=1,
    batch_size=-1,
    pkgs_to_install=None,
):
    """Register an application, deploy the PySpark model as a model of the same name, and link them.

    See :func:`deploy_pyspark_model` for the parameters.
    """
    clipper_conn.register_application(name, input_type, default_output, slo_micros)
    deploy_pyspark_model(
        clipper_conn,
        name,
        version,
        input_type,
        func,
        pyspark_model,
        sc,
        base_image,
        labels,
        registry,
        num_replicas,
        batch_size,
        pkgs_to_install,
    )
    clipper_conn.link_model_to_app(name, name)
