"""PySpark models inside the model-container runtime.

One long-lived ``SparkSession`` per container, created once at start-up; the saved model is loaded
once with PySpark's native API, and every batch calls ``func(spark, model, inputs)``.

Model directory (see docs/internals.md): ``clipper_model.json`` carries
``{"kind": "pyspark", "pyspark": {"model_class": "<dotted class>", "model_path": "pyspark_model"}}``.
The original deployer's layout (``metadata.json`` with ``model_class`` and ``pyspark_model_data/``)
is read too, so model directories built by the original Clipper load unchanged.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


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
    if not path.exists():
        raise PySparkLoadError(f"{model_dir}: the saved PySpark model {path} is missing")
    return model_class, path


def check_java() -> None:
    """PySpark needs a Java runtime; say so plainly instead of Py4J's 'Java gateway' error."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").exists():
        return
    if shutil.which("java") is None:
        raise PySparkLoadError(
            "no Java runtime found: PySpark models need one (install default-jre-headless, or set JAVA_HOME)"
        )


def create_spark_session() -> Any:
    check_java()
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise PySparkLoadError(
            "pyspark is not installed in the model environment (pip install pyspark)"
        ) from exc
    return (
        SparkSession.builder.appName("clipper-pyspark")
        .master(os.environ.get("CLIPPER_SPARK_MASTER", "local[1]"))
        .config("spark.ui.enabled", "false")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.sql.shuffle.partitions", "1")
        .getOrCreate()
    )


def load_model(spark: Any, model_class: str, path: Path) -> Any:
    module_name, _, class_name = model_class.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise PySparkLoadError(f"cannot import the PySpark model class {model_class!r}: {exc}") from exc
    from pyspark.ml.base import Model as MlModel
    from pyspark.ml.pipeline import PipelineModel

    try:
        if isinstance(cls, type) and issubclass(cls, (MlModel, PipelineModel)):
            return cls.load(str(path))
        return cls.load(spark.sparkContext, str(path))
    except Exception as exc:
        raise PySparkLoadError(f"loading the PySpark model {model_class} from {path} failed: {exc}") from exc


def load(model_dir: Path, metadata: dict[str, Any]) -> Callable[[list], list]:
    """Start Spark, load the model once, and return the batch function the runtime calls.

    The runtime has already put the model's ``modules/`` and ``site-packages/`` on ``sys.path``.
    """
    import cloudpickle

    model_class, path = pyspark_settings(model_dir, metadata)
    with open(model_dir / "func.pkl", "rb") as fh:
        func: Callable[..., Any] = cloudpickle.load(fh)
    spark = create_spark_session()
    model = load_model(spark, model_class, path)
    log.info("loaded PySpark model %s from %s", model_class, path)

    def predict(inputs: list) -> list:
        return func(spark, model, inputs)

    return predict
