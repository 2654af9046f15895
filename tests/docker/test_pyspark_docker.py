"""PySpark models on Docker: model images built FROM the PySpark container image (Java and PySpark
inside), deployed with ``deploy_pyspark_model`` and with ``clipper apply`` manifests; predictions
over HTTP equal the model's own in this process. Skipped when the engine or the image is absent.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.integration.test_pyspark_helpers import (
    LABEL_NAMES,
    QUERIES,
    predict_batch,
    predict_functions,
    require_pyspark,
    write_manifests,
)

from .conftest import _REASON

pytestmark = [pytest.mark.pyspark, pytest.mark.slow]
require_pyspark()

SLO_MICROS = 20_000_000


def _image_missing() -> str | None:
    if _REASON is not None:
        return _REASON
    import docker

    from clipper_admin.deployers.pyspark import default_pyspark_base_image

    image = default_pyspark_base_image()
    try:
        docker.from_env().images.get(image)
    except docker.errors.ImageNotFound:
        return f"image {image} not built; run images/build.sh --with-pyspark"
    return None


if (_missing := _image_missing()) is not None:
    pytest.skip(_missing, allow_module_level=True)

from clipper_admin import ClipperException  # noqa: E402
from clipper_admin.deployers import pyspark as pyspark_deployer  # noqa: E402


@pytest.fixture(scope="module")
def cluster(docker_cluster):
    return docker_cluster


def test_deploy_pyspark_model_serves_each_model_kind(cluster, spark, models, expected):
    conn, _ = cluster
    funcs = predict_functions()
    endpoints = {
        "d-lr": ("lr", funcs.labelled(LABEL_NAMES), models.lr),
        "d-pipeline": ("pipeline", funcs.pipeline_predict, models.pipeline),
        "d-mllib": ("mllib", funcs.mllib_predict, models.mllib),
    }

    def deploy(app):
        _, func, model = endpoints[app]
        pyspark_deployer.create_endpoint(
            conn, app, "doubles", func, model, spark.sparkContext, slo_micros=SLO_MICROS
        )

    with ThreadPoolExecutor(len(endpoints)) as pool:
        for future in [pool.submit(deploy, app) for app in endpoints]:
            future.result()
    for app, (key, _, _) in endpoints.items():
        assert predict_batch(conn.get_query_addr(), app, QUERIES) == expected[key], app


def test_manifest_apply_builds_images_and_serves(cluster, spark, models, expected, tmp_path):
    from reconciler.engine import apply, default_owner, load_target

    conn, kw = cluster
    cluster_yaml = f"""apiVersion: clipper.ai/v1
kind: Cluster
metadata: {{name: {kw["cluster_name"]}}}
spec:
  backend: docker
  queryPort: {kw["clipper_query_port"]}
  managementPort: {kw["clipper_management_port"]}
  rpcPort: {kw["clipper_rpc_port"]}
  redis: {{port: {kw["redis_port"]}}}
  docker: {{network: {kw["docker_network"]}, prometheusPort: {kw["prometheus_port"]}}}
"""
    apps = write_manifests(tmp_path / "manifests", cluster_yaml, spark, models, SLO_MICROS)
    target = load_target([str(tmp_path / "manifests")])
    apply(target, default_owner(target))
    for app, key in apps.items():
        assert predict_batch(conn.get_query_addr(), app, QUERIES) == expected[key], app


def test_non_pyspark_model_is_refused(cluster):
    conn, _ = cluster
    with pytest.raises(ClipperException, match="must be a PySpark model"):
        pyspark_deployer.deploy_pyspark_model(
            conn, "not-spark", 1, "doubles", predict_functions().mllib_predict, object(), None
        )


@pytest.mark.parametrize(
    ("model_class", "closure_image", "reason"),
    [
        ("pyspark.ml.classification.NoSuchModel", False, "NoSuchModel"),
        ("pyspark.ml.classification.LogisticRegressionModel", True, "pyspark is not installed"),
    ],
    ids=["unknown-class", "image-without-pyspark"],
)
def test_model_that_cannot_load_fails_the_deploy_with_the_reason(
    cluster, models, tmp_path, model_class, closure_image, reason
):
    """The container exits with the reason in its log; the deploy raises it instead of waiting."""
    import json

    import cloudpickle

    from clipper_admin.deployers.python import default_python_base_image

    conn, _ = cluster
    model_dir = tmp_path / "broken"
    model_dir.mkdir()
    models.lr.save(str(model_dir / "pyspark_model"))
    (model_dir / "func.pkl").write_bytes(cloudpickle.dumps(predict_functions().ml_predict))
    meta = {"kind": "pyspark", "pyspark": {"model_class": model_class, "model_path": "pyspark_model"}}
    (model_dir / "clipper_model.json").write_text(json.dumps(meta))
    base = default_python_base_image() if closure_image else pyspark_deployer.default_pyspark_base_image()
    name = f"broken-{len(reason)}"
    with pytest.raises(ClipperException, match=reason):
        conn.build_and_deploy_model(name, 1, "doubles", str(model_dir), base)
    assert name not in str(conn.get_all_models())
