"""PySpark models on the local backend: real PySpark, real model containers (each a subprocess with
its own SparkSession), predictions over HTTP compared with the model's own in this process.

One SparkSession and one cluster for the module; the three models deploy concurrently because each
container spends most of its start-up in the JVM.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.integration.test_pyspark_helpers import (
    LABEL_NAMES,
    QUERIES,
    predict_batch,
    predict_functions,
    require_pyspark,
    write_manifests,
)

pytestmark = [pytest.mark.pyspark, pytest.mark.slow]
require_pyspark()

from clipper_admin import ClipperConnection, ClipperException  # noqa: E402
from clipper_admin.deployers import pyspark as pyspark_deployer  # noqa: E402
from tests.integration.admin_local_fixtures import new_manager  # noqa: E402

SLO_MICROS = 20_000_000


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """CLIPPER_HOME for the module (the reconciler reads it from the environment)."""
    path = tmp_path_factory.mktemp("clipper-home")
    before = os.environ.get("CLIPPER_HOME")
    os.environ["CLIPPER_HOME"] = str(path)
    yield path
    if before is None:
        os.environ.pop("CLIPPER_HOME", None)
    else:
        os.environ["CLIPPER_HOME"] = before


@pytest.fixture(scope="module")
def conn(home):
    c = ClipperConnection(new_manager("pyspark-local", home, replica_timeout=300))
    c.start_clipper()
    yield c
    c.stop_all()


@pytest.fixture(scope="module")
def deployed(conn, spark, models, tmp_path_factory):
    """The three models deployed with ``create_endpoint``, and the pipeline once more from its
    ``model.save`` directory with ``deploy_saved_pyspark_model`` (all concurrently, since each
    container spends its start-up in its JVM); app name -> expected-outputs key."""
    funcs = predict_functions()
    endpoints = {
        "spark-lr": ("lr", funcs.labelled(LABEL_NAMES), models.lr),
        "spark-pipeline": ("pipeline", funcs.pipeline_predict, models.pipeline),
        "spark-mllib": ("mllib", funcs.mllib_predict, models.mllib),
    }
    saved = tmp_path_factory.mktemp("saved") / "pipeline"
    models.pipeline.save(str(saved))

    def deploy(app):
        _, func, model = endpoints[app]
        pyspark_deployer.create_endpoint(
            conn, app, "doubles", func, model, spark.sparkContext, slo_micros=SLO_MICROS
        )

    def deploy_saved():
        conn.register_application("spark-saved", "doubles", "none", SLO_MICROS)
        pyspark_deployer.deploy_saved_pyspark_model(
            conn, "spark-saved", 1, "doubles", funcs.pipeline_predict, str(saved), "pyspark.ml.PipelineModel"
        )
        conn.link_model_to_app("spark-saved", "spark-saved")

    with ThreadPoolExecutor(len(endpoints) + 1) as pool:
        futures = [pool.submit(deploy, app) for app in endpoints] + [pool.submit(deploy_saved)]
        for future in futures:
            future.result()
    return {**{app: key for app, (key, _, _) in endpoints.items()}, "spark-saved": "pipeline"}


@pytest.mark.parametrize("app", ["spark-lr", "spark-pipeline", "spark-mllib", "spark-saved"])
def test_deployed_model_predicts_like_the_model_itself(conn, deployed, expected, app):
    assert predict_batch(conn.get_query_addr(), app, QUERIES) == expected[deployed[app]]


def test_model_directory_records_class_and_native_save(conn, deployed, home):
    model_dir = home / "pyspark-local" / "models" / "spark-mllib" / "1"
    meta = json.loads((model_dir / "clipper_model.json").read_text())
    assert meta["kind"] == "pyspark"
    assert meta["pyspark"]["model_class"] == "pyspark.mllib.classification.LogisticRegressionModel"
    assert (model_dir / meta["pyspark"]["model_path"] / "metadata").is_dir()  # mllib's save layout
    assert not any(r.startswith(("pyspark", "py4j")) for r in meta["requirements"])


def test_manifest_apply_serves_each_model(conn, deployed, spark, models, expected, tmp_path):
    """`source.pyspark` manifests (function file + saved model directory + class), applied to the
    running cluster; the reconciler loads each saved model and deploys it with our deployer."""
    from reconciler.engine import apply, default_owner, load_target

    cm = conn.cm
    cluster = f"""apiVersion: clipper.ai/v1
kind: Cluster
metadata: {{name: pyspark-local}}
spec: {{backend: local, queryPort: {cm.clipper_query_port}, managementPort: {cm.clipper_management_port},
        rpcPort: {cm.clipper_rpc_port}}}
"""
    work = tmp_path / "manifests"
    apps = write_manifests(work, cluster, spark, models, SLO_MICROS)
    target = load_target([str(work)])
    apply(target, default_owner(target))

    for app, key in apps.items():
        assert predict_batch(conn.get_query_addr(), app, QUERIES) == expected[key], app


def test_non_pyspark_model_is_refused_before_anything_runs(conn):
    funcs = predict_functions()
    with pytest.raises(ClipperException, match="must be a PySpark model"):
        pyspark_deployer.deploy_pyspark_model(
            conn, "not-spark", 1, "doubles", funcs.mllib_predict, {"w": 1}, None
        )
    assert conn.get_all_models() == [] or "not-spark" not in str(conn.get_all_models())


def test_model_that_cannot_load_fails_the_deploy_fast_with_the_reason(conn, models, tmp_path):
    """A container whose model cannot load exits with the reason; the deploy raises it, not a timeout."""
    import cloudpickle

    model_dir = tmp_path / "broken"
    model_dir.mkdir()
    models.lr.save(str(model_dir / "pyspark_model"))
    (model_dir / "func.pkl").write_bytes(cloudpickle.dumps(predict_functions().ml_predict))
    meta = {"kind": "pyspark", "pyspark": {"model_class": "pyspark.ml.classification.NoSuchModel",
                                           "model_path": "pyspark_model"}}  # fmt: skip
    (model_dir / "clipper_model.json").write_text(json.dumps(meta))
    t0 = time.monotonic()
    with pytest.raises(ClipperException, match="NoSuchModel"):
        conn.build_and_deploy_model("broken-spark", 1, "doubles", str(model_dir), "unused")
    assert time.monotonic() - t0 < conn.cm.replica_timeout  # failed on the exit, not the wait
    assert "broken-spark" not in str(conn.get_all_models())


def test_container_without_java_exits_with_the_reason(models, tmp_path):
    """`python -m clipper.container` on a PySpark model with no Java runtime: exit 1, reason logged."""
    import cloudpickle

    model_dir = tmp_path / "model"
    model_dir.mkdir()
    shutil.copytree(_saved(models, tmp_path), model_dir / "pyspark_model")
    (model_dir / "func.pkl").write_bytes(cloudpickle.dumps(predict_functions().ml_predict))
    meta = {"kind": "pyspark", "pyspark": {"model_class": "pyspark.ml.classification.LogisticRegressionModel",
                                           "model_path": "pyspark_model"}}  # fmt: skip
    (model_dir / "clipper_model.json").write_text(json.dumps(meta))
    env = {**os.environ, "JAVA_HOME": str(tmp_path / "no-jre"), "CLIPPER_MODEL_PATH": str(model_dir),
           "CLIPPER_MODEL_NAME": "m", "CLIPPER_MODEL_VERSION": "1", "CLIPPER_IP": "127.0.0.1",
           "CLIPPER_PORT": "9", "CLIPPER_INPUT_TYPE": "doubles"}  # fmt: skip
    proc = subprocess.run([sys.executable, "-m", "clipper.container"], env=env, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert "no Java runtime" in proc.stderr and "JAVA_HOME" in proc.stderr


def _saved(models, tmp_path: Path) -> Path:
    path = tmp_path / "lr-saved"
    models.lr.save(str(path))
    return path
