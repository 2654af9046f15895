"""Fixtures shared across suites."""

from __future__ import annotations

import os

import pytest

# The processes the suites start import their hot path as the test says, never from a compiled build
# that ./quickstart.sh or a developer left in ~/.cache (clipper.compiled): the same suite on every
# machine. The tests of that cache set it themselves.
os.environ.setdefault("CLIPPER_HOT_PATH_CACHE", "off")


# The local and the Docker PySpark suites: one SparkSession, the trained models and their own
# predictions per session, shared by both modules (starting the JVM and training took ~25 s per
# module; the models are only read). Helpers are imported lazily: other suites never import PySpark.
@pytest.fixture(scope="session")
def spark():
    from tests.integration.test_pyspark_helpers import new_spark_session

    session = new_spark_session()
    yield session
    session.stop()


@pytest.fixture(scope="session")
def models(spark):
    from tests.integration.test_pyspark_helpers import train_models

    return train_models(spark)


@pytest.fixture(scope="session")
def expected(spark, models):
    from tests.integration.test_pyspark_helpers import expected_outputs, predict_functions

    return expected_outputs(spark, models, predict_functions())
