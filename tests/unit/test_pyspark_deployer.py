"""PySpark deployer and runtime checks that need no JVM: model class detection, saved-model layout,
Java detection, class import errors, requirements the image provides. Fast; real files, no mocks."""

from __future__ import annotations

import json
import os
import sys

import pytest

from clipper.container import pyspark_runtime as rt
from clipper.container.loader import ModelLoadError, load_model
from clipper_admin import ClipperException
from clipper_admin.deployers import pyspark as deployer

needs_pyspark = pytest.mark.skipif(
    __import__("importlib.util").util.find_spec("pyspark") is None, reason="pyspark is not installed"
)


class _Saveable:
    def save(self, path):  # looks like a model, but is not PySpark's
        pass


@pytest.mark.parametrize("obj", [object(), {"w": 1}, _Saveable(), None])
def test_non_pyspark_objects_are_refused_with_a_clipper_exception(obj):
    with pytest.raises(ClipperException, match="must be a PySpark model"):
        deployer.pyspark_model_class(obj)


def test_func_must_be_callable():
    with pytest.raises(ClipperException, match="func must be callable"):
        deployer.save_pyspark_function("m", "not a function", object(), None)


def test_default_base_image_follows_the_python_version():
    image = deployer.default_pyspark_base_image()
    assert image.split(":")[0].endswith(f"/pyspark3{sys.version_info.minor}-container")


def test_provided_distributions_are_not_reinstalled():
    reqs = ["numpy==1.26.4", "pyspark==4.3.0", "py4j==0.10.9.9", "PySpark>=3", "pandas==2.2.0"]
    assert deployer._drop_provided(reqs) == ["numpy==1.26.4", "pandas==2.2.0"]


def _model_dir(tmp_path, meta, saved="pyspark_model"):
    d = tmp_path / "model"
    (d / saved).mkdir(parents=True)
    (d / "clipper_model.json").write_text(json.dumps(meta))
    return d


def test_settings_from_clipper_model_json(tmp_path):
    meta = {
        "kind": "pyspark",
        "pyspark": {"model_class": "pyspark.ml.PipelineModel", "model_path": "pyspark_model"},
    }
    d = _model_dir(tmp_path, meta)
    assert rt.pyspark_settings(d, meta) == ("pyspark.ml.PipelineModel", d / "pyspark_model")


def test_settings_from_the_original_layout(tmp_path):
    d = _model_dir(tmp_path, {"kind": "pyspark"}, saved="pyspark_model_data")
    (d / "metadata.json").write_text(json.dumps({"model_class": "pyspark.mllib.tree.RandomForestModel"}))
    assert rt.pyspark_settings(d, {"kind": "pyspark"}) == (
        "pyspark.mllib.tree.RandomForestModel",
        d / "pyspark_model_data",
    )


def test_settings_errors_say_what_is_missing(tmp_path):
    d = _model_dir(tmp_path, {"kind": "pyspark"})
    with pytest.raises(rt.PySparkLoadError, match="no PySpark model class recorded"):
        rt.pyspark_settings(d, {"kind": "pyspark"})
    meta = {"pyspark": {"model_class": "pyspark.ml.PipelineModel", "model_path": "elsewhere"}}
    with pytest.raises(rt.PySparkLoadError, match="saved PySpark model .*elsewhere is missing"):
        rt.pyspark_settings(d, meta)


def test_java_home_without_java_is_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("JAVA_HOME", str(tmp_path))
    with pytest.raises(rt.PySparkLoadError, match="no Java runtime: JAVA_HOME=.* has no bin/java"):
        rt.check_java()


def test_no_java_on_path_is_reported(tmp_path, monkeypatch):
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(rt.PySparkLoadError, match="no Java runtime found"):
        rt.check_java()


def test_extra_spark_conf_is_parsed(monkeypatch):
    monkeypatch.setenv("CLIPPER_SPARK_CONF", "spark.driver.memory=512m, spark.x=a=b\nspark.y = 2")
    assert rt._extra_conf() == {"spark.driver.memory": "512m", "spark.x": "a=b", "spark.y": "2"}
    monkeypatch.setenv("CLIPPER_SPARK_CONF", "oops")
    with pytest.raises(rt.PySparkLoadError, match="not key=value"):
        rt._extra_conf()


@needs_pyspark
@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("os.path", "is not a PySpark class"),
        ("pyspark.ml.classification.NoSuchModel", "cannot import the PySpark model class"),
        ("pyspark.no_such_module.Model", "cannot import the PySpark model class"),
        ("pyspark.ml.classification.__name__", "not a PySpark model class with a load method"),
    ],
)
def test_bad_model_classes_are_reported(name, message):
    with pytest.raises(rt.PySparkLoadError, match=message):
        rt.import_model_class(name)


@needs_pyspark
def test_ml_and_mllib_classes_load_differently():
    from pyspark.ml.classification import LogisticRegressionModel as MlLR
    from pyspark.ml.pipeline import PipelineModel
    from pyspark.mllib.classification import LogisticRegressionModel as MllibLR

    assert rt.import_model_class("pyspark.ml.pipeline.PipelineModel") is PipelineModel
    assert rt.is_ml_class(MlLR) and rt.is_ml_class(PipelineModel)
    assert not rt.is_ml_class(MllibLR)


@needs_pyspark
def test_loader_reports_a_bad_class_before_starting_spark(tmp_path):
    meta = {
        "kind": "pyspark",
        "pyspark": {"model_class": "pyspark.ml.NoSuchModel", "model_path": "pyspark_model"},
    }
    d = _model_dir(tmp_path, meta)
    (d / "func.pkl").write_bytes(b"")
    with pytest.raises(ModelLoadError, match="NoSuchModel"):
        load_model(d)


def _saved_dir(tmp_path, java_class):
    d = tmp_path / "saved"
    (d / "metadata").mkdir(parents=True)
    (d / "metadata" / "part-00000").write_text(
        json.dumps({"class": java_class, "sparkVersion": "4.3.0"}) + "\n"
    )
    return d


@needs_pyspark
def test_saved_model_directory_is_checked_without_spark(tmp_path):
    d = _saved_dir(tmp_path, "org.apache.spark.ml.classification.LogisticRegressionModel")
    deployer.check_saved_model(d, "pyspark.ml.classification.LogisticRegressionModel")
    assert deployer.saved_model_class(d) == "org.apache.spark.ml.classification.LogisticRegressionModel"
    with pytest.raises(
        ClipperException, match="holds a saved .*LogisticRegressionModel, but the model class"
    ):
        deployer.check_saved_model(d, "pyspark.ml.classification.RandomForestClassificationModel")
    with pytest.raises(ClipperException, match="cannot import the PySpark model class"):
        deployer.check_saved_model(d, "pyspark.ml.classification.NoSuchModel")
    with pytest.raises(ClipperException, match="not a saved PySpark model"):
        deployer.check_saved_model(tmp_path, "pyspark.ml.classification.LogisticRegressionModel")


@needs_pyspark
def test_saved_model_directory_becomes_a_pyspark_model_directory(tmp_path):
    d = _saved_dir(tmp_path, "org.apache.spark.ml.PipelineModel")
    out = deployer.save_saved_pyspark_function(
        "m", lambda spark, model, xs: xs, d, "pyspark.ml.PipelineModel"
    )
    try:
        model_dir = __import__("pathlib").Path(out)
        meta = json.loads((model_dir / "clipper_model.json").read_text())
        assert meta["kind"] == "pyspark"
        assert meta["pyspark"]["model_class"] == "pyspark.ml.PipelineModel"
        assert (model_dir / meta["pyspark"]["model_path"] / "metadata" / "part-00000").is_file()
        assert (model_dir / "func.pkl").is_file()
        assert rt.pyspark_settings(model_dir, meta)[0] == "pyspark.ml.PipelineModel"
    finally:
        __import__("shutil").rmtree(out, ignore_errors=True)


def test_a_uid_without_a_passwd_entry_is_refused_with_the_reason(monkeypatch):
    """Spark cannot run as a uid the image does not know (the JVM's user.home is "?", Hadoop's login
    fails deep in a Java stack): the runtime says so before starting the JVM."""
    import pwd

    rt.check_user()  # this test's own uid has an entry

    def unknown(uid):
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    monkeypatch.setattr(pwd, "getpwuid", unknown)
    with pytest.raises(rt.PySparkLoadError, match=r"no entry in /etc/passwd.*10001"):
        rt.check_user()
    with pytest.raises(rt.PySparkLoadError, match="no entry in /etc/passwd"):
        rt.create_spark_session()


def test_spark_workers_run_the_containers_own_interpreter(monkeypatch):
    """Spark's Python workers run ``python3`` from PATH unless told otherwise: from an unactivated
    virtual environment (``.venv/bin/clipper apply``) that is the system's, without PySpark or the
    model's packages ("No module named 'numpy'" in the first UDF). The runtime points them at its own
    interpreter unless the user chose one."""
    from pyspark.sql import SparkSession

    class Builder:
        def appName(self, _name):
            return self

        def master(self, _master):
            return self

        def config(self, _key, _value):
            return self

        def getOrCreate(self):
            raise RuntimeError("no JVM in a unit test")

    monkeypatch.setattr(rt, "check_java", lambda: None)
    monkeypatch.setattr(rt, "check_user", lambda: None)
    monkeypatch.setattr(SparkSession, "builder", Builder())
    monkeypatch.setenv("PYSPARK_PYTHON", "unset below; restored afterwards")
    monkeypatch.delenv("PYSPARK_PYTHON")
    with pytest.raises(rt.PySparkLoadError, match="cannot start Spark"):
        rt.create_spark_session()
    assert os.environ["PYSPARK_PYTHON"] == sys.executable

    monkeypatch.setenv("PYSPARK_PYTHON", "/opt/python/bin/python3")  # the user's choice stays
    with pytest.raises(rt.PySparkLoadError):
        rt.create_spark_session()
    assert os.environ["PYSPARK_PYTHON"] == "/opt/python/bin/python3"
