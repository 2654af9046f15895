"""Shared by the PySpark suites (local and Docker): tiny models trained in the test process, the
prediction functions (source text, so cloudpickle ships them by value), and an HTTP predict helper.

No tests here; the ``test_`` prefix only keeps the file among the PySpark suite's files.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
import time
import types

import pytest
import requests

#: The prediction functions, as a file a manifest can name and as code the deployer tests exec.
#: ``labelled`` returns a closure: its ``names`` travel by closure capture (pure-Python state).
PREDICT_SRC = """\
def _vectors(inputs):
    from pyspark.ml.linalg import Vectors

    return [(Vectors.dense([float(v) for v in x]),) for x in inputs]


def ml_predict(spark, model, inputs):
    frame = spark.createDataFrame(_vectors(inputs), ["features"])
    return [str(r.prediction) for r in model.transform(frame).select("prediction").collect()]


def pipeline_predict(spark, model, inputs):
    frame = spark.createDataFrame(_vectors(inputs), ["raw"])
    return [str(r.prediction) for r in model.transform(frame).select("prediction").collect()]


def mllib_predict(spark, model, inputs):
    return [str(float(model.predict([float(v) for v in x]))) for x in inputs]


def labelled(names):
    def predict(spark, model, inputs):
        return [names[p] for p in ml_predict(spark, model, inputs)]

    return predict
"""

#: Two features; the label says whether they sum to more than 1. Near the boundary on purpose.
QUERIES = [[0.1, 0.2], [0.9, 0.9], [0.45, 0.6], [0.3, 0.65], [1.5, 0.0], [0.0, 0.0]]
LABEL_NAMES = {"0.0": "small", "1.0": "large"}


def require_pyspark() -> None:
    """Skip the calling module (with the reason) when PySpark or a Java runtime is missing."""
    pytest.importorskip("pyspark", reason="pyspark is not installed (pip install 'clipper[pyspark]')")
    java_home = os.environ.get("JAVA_HOME")
    if not (java_home and os.path.isfile(os.path.join(java_home, "bin", "java"))) and not shutil.which(
        "java"
    ):
        pytest.skip("no Java runtime (install default-jre-headless)", allow_module_level=True)


def predict_functions() -> types.SimpleNamespace:
    """The functions of PREDICT_SRC, defined outside any importable module (pickled by value)."""
    namespace: dict = {"__name__": "clipper_pyspark_test_predict"}
    exec(compile(PREDICT_SRC, "<pyspark predict>", "exec"), namespace)
    return types.SimpleNamespace(**{k: v for k, v in namespace.items() if not k.startswith("__")})


def new_spark_session():
    import logging

    from pyspark.sql import SparkSession

    logging.getLogger("py4j").setLevel(logging.WARNING)  # no INFO lines at exit into closed streams

    # the workers run this interpreter (with PySpark and numpy), not the python3 first on PATH
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName("clipper-pyspark-tests").master("local[1]")
    for key, value in {
        "spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC",  # starts faster
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.sql.shuffle.partitions": "1",
        "spark.default.parallelism": "1",
    }.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def _points(n: int = 40, seed: int = 7) -> list[tuple[float, list[float]]]:
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        x = [round(rnd.uniform(0, 1.2), 3), round(rnd.uniform(0, 1.2), 3)]
        out.append((1.0 if x[0] + x[1] > 1.0 else 0.0, x))
    return out


def train_models(spark) -> types.SimpleNamespace:
    """A pyspark.ml LogisticRegression, a Pipeline (StandardScaler + LogisticRegression) and a
    pyspark.mllib LogisticRegressionWithLBFGS model, on the same tiny generated data."""
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.feature import StandardScaler
    from pyspark.ml.linalg import Vectors
    from pyspark.mllib.classification import LogisticRegressionWithLBFGS
    from pyspark.mllib.regression import LabeledPoint

    points = _points()
    frame = spark.createDataFrame([(y, Vectors.dense(x)) for y, x in points], ["label", "features"])
    lr = LogisticRegression(maxIter=5).fit(frame)
    raw = frame.withColumnRenamed("features", "raw")
    pipeline = Pipeline(
        stages=[
            StandardScaler(inputCol="raw", outputCol="features"),
            LogisticRegression(maxIter=5),
        ]
    ).fit(raw)
    mllib = LogisticRegressionWithLBFGS.train(
        spark.sparkContext.parallelize([LabeledPoint(y, x) for y, x in points]), iterations=10, intercept=True
    )
    return types.SimpleNamespace(lr=lr, pipeline=pipeline, mllib=mllib)


def expected_outputs(spark, models, funcs) -> dict[str, list[str]]:
    """What each model predicts for QUERIES, computed in this process by the model itself."""
    from pyspark.ml.linalg import Vectors

    def transformed(model, column):
        frame = spark.createDataFrame([(Vectors.dense(q),) for q in QUERIES], [column])
        return [str(r.prediction) for r in model.transform(frame).select("prediction").collect()]

    lr = transformed(models.lr, "features")
    return {
        "lr": [LABEL_NAMES[p] for p in lr],
        "lr-raw": lr,
        "pipeline": transformed(models.pipeline, "raw"),
        "mllib": [str(float(models.mllib.predict(q))) for q in QUERIES],
    }


def predict_batch(query_addr: str, app: str, inputs, timeout: float = 180.0) -> list[str]:
    """POST ``input_batch`` until every answer is a real prediction (not the default output).

    A just-linked app answers 404 or defaults for a moment, and a fresh JVM's first Spark job may
    miss the latency objective; the first real answer is returned. Fails on an error answer.
    """
    url = f"http://{query_addr}/{app}/predict"
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            r = requests.post(url, data=json.dumps({"input_batch": inputs}), timeout=60,
                              headers={"Content-Type": "application/json"})  # fmt: skip
        except requests.RequestException as e:
            last = repr(e)
            time.sleep(0.5)
            continue
        last = f"{r.status_code} {r.text[:500]}"
        if r.status_code == 200:
            answers = r.json()["batch_predictions"]
            if all(not a.get("default") for a in answers):
                # an output that parses as JSON comes back as JSON ("1.0" -> 1.0), as in the original
                return [
                    a["output"] if isinstance(a["output"], str) else json.dumps(a["output"]) for a in answers
                ]
            for a in answers:
                assert "Model error" not in str(a.get("default_explanation", "")), a
        time.sleep(0.3)
    raise AssertionError(f"{app}: no real prediction within {timeout:.0f} s; last answer: {last}")


#: Manifest sources of the three models: model name -> (function, saved model dir, class, expected key).
MANIFEST_MODELS = {
    "m-lr": ("predict.py:ml_predict", "lr-model", "pyspark.ml.classification.LogisticRegressionModel", "lr-raw"),
    "m-pipeline": ("predict.py:pipeline_predict", "pipeline-model", "pyspark.ml.pipeline.PipelineModel", "pipeline"),
    "m-mllib": ("predict.py:mllib_predict", "mllib-model", "pyspark.mllib.classification.LogisticRegressionModel", "mllib"),
}  # fmt: skip


def write_manifests(work, cluster_yaml: str, spark, models, slo_micros: int) -> dict[str, str]:
    """A manifest directory: the cluster, and per model a ``source.pyspark`` Model (predict.py and the
    directory ``model.save`` wrote) with its Application. Returns app name -> expected-outputs key."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "predict.py").write_text(PREDICT_SRC)
    models.lr.save(str(work / "lr-model"))
    models.pipeline.save(str(work / "pipeline-model"))
    models.mllib.save(spark.sparkContext, str(work / "mllib-model"))
    docs = [cluster_yaml]
    apps = {}
    for name, (function, path, cls, key) in MANIFEST_MODELS.items():
        docs.append(f"""apiVersion: clipper.ai/v1
kind: Model
metadata: {{name: {name}}}
spec:
  inputType: doubles
  source: {{pyspark: {{function: "{function}", modelPath: {path}, modelClass: {cls}}}}}
---
apiVersion: clipper.ai/v1
kind: Application
metadata: {{name: {name}-app}}
spec: {{inputType: doubles, defaultOutput: "none", latencySloMicros: {slo_micros}, model: {name}}}
""")
        apps[f"{name}-app"] = key
    (work / "pyspark.yaml").write_text("---\n".join(docs))
    return apps
