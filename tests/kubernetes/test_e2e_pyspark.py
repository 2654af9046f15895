"""A PySpark model on a real cluster: ``deploy_pyspark_model`` builds an image FROM the PySpark container
image (Java and PySpark inside), the manager imports it into the nodes' runtime, and the pod's
predictions equal the model's own in this process."""

from __future__ import annotations

import pytest

from tests.integration.test_pyspark_helpers import QUERIES, predict_batch, predict_functions, require_pyspark

from . import e2e

pytestmark = [pytest.mark.kubernetes, pytest.mark.pyspark, pytest.mark.slow]
require_pyspark()

SLO_MICROS = 20_000_000


def test_a_pyspark_model_serves_on_kubernetes(spark, models, expected):
    from clipper_admin import ClipperConnection
    from clipper_admin.deployers import pyspark as pyspark_deployer

    api = e2e.api_client()
    namespace = e2e.unique("clipper-e2e-spark")
    conn = ClipperConnection(e2e.manager(api, "spark", namespace))
    try:
        conn.start_clipper()
        pyspark_deployer.create_endpoint(
            conn, "spark-lr", "doubles", predict_functions().ml_predict, models.lr, spark.sparkContext,
            slo_micros=SLO_MICROS,
        )  # fmt: skip
        assert predict_batch(conn.get_query_addr(), "spark-lr", QUERIES) == expected["lr-raw"]
    finally:
        conn.stop_all()
        e2e.delete_namespace(api, namespace)
