"""PySpark models inside the model-container runtime.

One long-lived ``SparkSession`` per container, created once at start-up; the saved model is loaded
once with PySpark's native API, and every batch calls ``func(spark, model, inputs)``.

Model directory (see docs/internals.md): ``clipper_model.json`` carries
``{"kind": "pyspark", "pyspark": {"model_class": "<dotted class>", "model_path": "pyspark_model"}}``.
The original deployer's layout (``metadata.json`` with ``model_class`` and ``pyspark_model_data/``)
is read too, so model directories built by the original Clipper load unchanged.

Everything that can be checked without a JVM (the class, the saved files, the function, Java being
installed) is checked before Spark starts, so a broken model fails in a second, not after a JVM start.
Environment: ``CLIPPER_SPARK_MASTER`` (default ``local[1]``), ``CLIPPER_SPARK_CONF`` (extra Spark
settings, ``key=value`` separated by commas or newlines).
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import pwd
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: Settings of the container's SparkSession: one local executor, no UI, no console progress bars
#: in the container log, everything on the loopback interface, and a driver JVM tuned to start fast
#: (C1 JIT only, serial GC): a serving container runs tiny jobs, and on a busy 2-core machine this
#: halves the start-up (bench/pyspark_startup.py). ``CLIPPER_SPARK_CONF`` overrides any of them.
SPARK_CONF = {
    "spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.sql.shuffle.partitions": "1",
    "spark.default.parallelism": "1",
}


class PySparkLoadError(RuntimeError):
    """The container cannot serve this PySpark model; the message says why and what to do."""


def pyspark_settings(model_dir: Path, metadata: dict[str, Any]) -> tuple[str, Path]:
    """The model's class name and the directory ``model.save`` wrote, from either layout."""
    spec = metadata.get("pyspark") or {}
    model_class = spec.get("model_class")
    model_path = spec.get("model_path", "pyspark_model")
    legacy = model_dir / "metadata.json"
    if not model_class and legacy.exists():
        model_class = json.loads(legacy.read_text()).get("model_class")
        model_path = "pyspark_model_data"
    if not model_class:
        raise PySparkLoadError(
            f"{model_dir}: no PySpark model class recorded (clipper_model.json 'pyspark.model_class'); "
            "deploy the model with clipper_admin.deployers.pyspark"
        )
    path = model_dir / model_path
    if not path.is_dir():
        raise PySparkLoadError(f"{model_dir}: the saved PySpark model {path} is missing")
    return model_class, path


def check_java() -> None:
    """PySpark needs a Java runtime; say so plainly instead of Py4J's 'Java gateway' error."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home:  # spark-submit uses $JAVA_HOME/bin/java when JAVA_HOME is set, PATH otherwise
        if not (Path(java_home) / "bin" / "java").is_file():
            raise PySparkLoadError(
                f"no Java runtime: JAVA_HOME={java_home} has no bin/java (PySpark models need Java 17+; "
                "fix or unset JAVA_HOME, or install default-jre-headless)"
            )
        return
    if shutil.which("java") is None:
        raise PySparkLoadError(
            "no Java runtime found: PySpark models need one (install default-jre-headless, or set JAVA_HOME)"
        )


def import_model_class(model_class: str) -> type:
    """Import the recorded class; it must be a PySpark class with a ``load`` method."""
    module_name, _, class_name = model_class.rpartition(".")
    if not module_name.startswith("pyspark"):
        raise PySparkLoadError(f"{model_class!r} is not a PySpark class")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except ImportError as exc:
        if exc.name in ("pyspark", "py4j"):  # the package itself, not a module inside it
            raise PySparkLoadError(
                "pyspark is not installed in the model environment: use the PySpark container "
                "image, or pip install 'clipper[pyspark]'"
            ) from exc
        raise PySparkLoadError(f"cannot import the PySpark model class {model_class!r}: {exc}") from exc
    except (AttributeError, ValueError) as exc:
        raise PySparkLoadError(f"cannot import the PySpark model class {model_class!r}: {exc}") from exc
    if not isinstance(cls, type) or not callable(getattr(cls, "load", None)):
        raise PySparkLoadError(f"{model_class!r} is not a PySpark model class with a load method")
    return cls


def check_user() -> None:
    """Spark needs the process's uid to have a passwd entry: without one the JVM's ``user.home`` is
    ``?`` (spark-submit: "basedir must be absolute: ?/.ivy2") and Hadoop's login fails ("invalid null
    input: name"). Said plainly instead (e.g. a pod run as an arbitrary ``runAsUser``)."""
    try:
        pwd.getpwuid(os.getuid())
    except KeyError:
        raise PySparkLoadError(
            f"uid {os.getuid()} has no entry in /etc/passwd, which Spark (Hadoop's login) needs: run the "
            "container as a user of its image (the project's images: 10001, 'clipper')"
        ) from None


def _extra_conf() -> dict[str, str]:
    raw = os.environ.get("CLIPPER_SPARK_CONF", "")
    out = {}
    for item in raw.replace("\n", ",").split(","):
        if item.strip():
            key, sep, value = item.partition("=")
            if not sep:
                raise PySparkLoadError(f"CLIPPER_SPARK_CONF: {item.strip()!r} is not key=value")
            out[key.strip()] = value.strip()
    return out


def create_spark_session() -> Any:
    """The container's one SparkSession (``getOrCreate``: a session already running is reused)."""
    check_java()
    check_user()
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # the driver binds to loopback only
    # Spark's Python workers (UDFs, RDD functions) run ``python3`` from PATH unless told otherwise:
    # from an unactivated virtual environment that is another interpreter, without PySpark or the
    # model's packages. The container's own interpreter is the one that has them.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName("clipper-pyspark").master(
        os.environ.get("CLIPPER_SPARK_MASTER", "local[1]")
    )
    for key, value in {**SPARK_CONF, **_extra_conf()}.items():
        builder = builder.config(key, value)
    try:
        spark = builder.getOrCreate()
    except Exception as exc:  # Py4J/JVM start-up failures
        raise PySparkLoadError(f"cannot start Spark: {type(exc).__name__}: {_first_line(exc)}") from exc
    spark.sparkContext.setLogLevel(os.environ.get("CLIPPER_SPARK_LOG_LEVEL", "WARN"))
    return spark


def is_ml_class(cls: type) -> bool:
    """``pyspark.ml`` models and pipelines load with ``Class.load(path)``; mllib ones with ``(sc, path)``."""
    from pyspark.ml.base import Model as MlModel
    from pyspark.ml.pipeline import PipelineModel

    return issubclass(cls, MlModel | PipelineModel)


def load_model(spark: Any, cls: type[Any], path: Path) -> Any:
    try:
        if is_ml_class(cls):
            return cls.load(str(path))
        return cls.load(spark.sparkContext, str(path))
    except Exception as exc:
        raise PySparkLoadError(
            f"loading the PySpark model {cls.__module__}.{cls.__qualname__} from {path} failed: "
            f"{type(exc).__name__}: {_first_line(exc)}"
        ) from exc


def warm_up(spark: Any) -> None:
    """Run one tiny DataFrame job before connecting, so the first batches do not pay for the
    scheduler's and the code generator's first use (they would miss a tight latency objective)."""
    try:
        spark.createDataFrame([(0.0,)], ["x"]).selectExpr("x + 1 AS y").collect()
    except Exception as exc:  # not fatal: the model is loaded
        log.warning("Spark warm-up job failed: %s", _first_line(exc))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def _load_function(model_dir: Path) -> Callable[..., Any]:
    import cloudpickle

    path = model_dir / "func.pkl"
    if not path.is_file():
        raise PySparkLoadError(f"{path} not found: the model directory has no prediction function")
    with path.open("rb") as fh:
        func: object = cloudpickle.load(fh)
    if not callable(func):
        raise PySparkLoadError(f"{path} holds a {type(func).__name__}, not a callable")
    return func


def load(model_dir: Path, metadata: dict[str, Any]) -> Callable[[list[Any]], list[Any]]:
    """Start Spark, load the model once, and return the batch function the runtime calls.

    The runtime has already put the model's ``modules/`` and ``site-packages/`` on ``sys.path``.
    """
    model_class, path = pyspark_settings(model_dir, metadata)
    cls = import_model_class(model_class)
    func = _load_function(model_dir)
    check_java()
    saved_with = (metadata.get("pyspark") or {}).get("pyspark_version")
    import pyspark

    if saved_with and saved_with.split(".")[:2] != pyspark.__version__.split(".")[:2]:
        log.warning(
            "the model was saved with PySpark %s; this container runs %s", saved_with, pyspark.__version__
        )
    t0 = time.monotonic()
    spark = create_spark_session()
    t1 = time.monotonic()
    model = load_model(spark, cls, path)
    t2 = time.monotonic()
    warm_up(spark)
    log.info(
        "PySpark model %s loaded from %s (SparkSession %.1f s, model load %.1f s, warm-up %.1f s)",
        model_class, path, t1 - t0, t2 - t1, time.monotonic() - t2,
    )  # fmt: skip

    return batch_function(func, spark, model)


def batch_function(func: Callable[..., Any], spark: Any, model: Any) -> Callable[[Any], Any]:
    """``func(spark, model, inputs)`` per batch. Its predictions become outputs exactly as a closure's
    (:func:`clipper.container.codec.encode_outputs`: ``str()`` of each, as the original PySpark
    container did), so ``[model.predict(v) for v in vectors]`` (floats) answers ``"1.0"``."""

    def predict(inputs: Any) -> Any:
        return func(spark, model, inputs)

    return predict
