"""The original README hello-world flow, unchanged, on the local backend, plus every public method."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from clipper_admin import ClipperConnection, ClipperException
from clipper_admin.deployers import python as python_deployer
from clipper_admin.local.state import pid_alive

from .admin_local_fixtures import predict, start_cluster, wait_for

pytestmark = pytest.mark.slow


def feature_sum(xs):
    return [str(sum(x)) for x in xs]


def feature_sum_doubled(xs):
    return [str(2 * sum(x)) for x in xs]


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    path = tmp_path_factory.mktemp("clipper_home")
    old = os.environ.get("CLIPPER_HOME")
    os.environ["CLIPPER_HOME"] = str(path)
    yield path
    if old is None:
        os.environ.pop("CLIPPER_HOME", None)
    else:
        os.environ["CLIPPER_HOME"] = old


@pytest.fixture(scope="module")
def conn(home):
    conn = start_cluster("flow", None)
    yield conn
    conn.stop_all()


def cluster_pids(conn) -> list[int]:
    status = conn.cm.dir.read_status()
    return [p["pid"] for p in status.values() if p.get("pid")] + [conn.cm.dir.supervisor_pid()]


def test_hello_world(conn):
    conn.register_application(
        name="hello-world", input_type="doubles", default_output="-1.0", slo_micros=100000
    )
    python_deployer.deploy_python_closure(
        conn, name="sum-model", version=1, input_type="doubles", func=feature_sum
    )
    conn.link_model_to_app(app_name="hello-world", model_name="sum-model")
    out = predict(conn, "hello-world", {"input": [1.1, 2.2, 3.3]})
    assert out["default"] is False
    assert float(out["output"]) == pytest.approx(6.6)

    conn.set_num_replicas("sum-model", 2)
    assert conn.get_num_replicas("sum-model") == 2
    replicas = [r for r in conn.get_all_model_replicas(verbose=True) if r["model_name"] == "sum-model"]
    assert len(replicas) >= 2

    python_deployer.deploy_python_closure(
        conn, name="sum-model", version=2, input_type="doubles", func=feature_sum_doubled
    )
    assert conn.get_current_model_version("sum-model") == "2"
    # a version change reaches the query frontend asynchronously (within ~100 ms)
    wait_for(lambda: float(predict(conn, "hello-world", {"input": [1.0, 2.0]})["output"]) == 6.0, what="v2")

    conn.set_model_version("sum-model", "1")  # rollback
    assert conn.get_current_model_version("sum-model") == "1"
    wait_for(
        lambda: float(predict(conn, "hello-world", {"input": [1.0, 2.0, 4.0]})["output"]) == 7.0, what="v1"
    )

    conn.stop_inactive_model_versions(["sum-model"])
    assert conn.get_num_replicas("sum-model", 2) == 0
    assert conn.get_num_replicas("sum-model", 1) == 2
    models = {
        m["model_version"]: m for m in conn.get_all_models(verbose=True) if m["model_name"] == "sum-model"
    }
    assert models["1"]["is_current_version"] is True
    assert float(predict(conn, "hello-world", {"input": [5.0]})["output"]) == pytest.approx(5.0)


def test_closure_with_local_module_and_numpy(conn, tmp_path):
    (tmp_path / "np_helper_for_admin.py").write_text(
        "import numpy as np\n\ndef norm(x):\n    return float(np.linalg.norm(np.asarray(x)))\n"
    )
    script = """
import sys
from clipper_admin import ClipperConnection, LocalContainerManager
from clipper_admin.deployers import python as python_deployer
import numpy as np
import np_helper_for_admin

def predict(xs):
    return [str(np_helper_for_admin.norm(x) + np.float64(0)) for x in xs]

conn = ClipperConnection(LocalContainerManager("flow"))
conn.connect()
python_deployer.create_endpoint(conn, "norm", "doubles", predict)
print("deployed")
"""
    env = dict(os.environ)
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert float(predict(conn, "norm", {"input": [3.0, 4.0]})["output"]) == pytest.approx(5.0)
    model_dir = Path(conn.get_model_info("norm", 1)["container_name"].removeprefix("local:"))
    assert (model_dir / "modules" / "np_helper_for_admin.py").is_file()
    assert (model_dir / "requirements.txt").read_text().startswith("numpy==")
    app = conn.get_app_info("norm")
    assert app["default_output"] == "None" and app["latency_slo_micros"] == 3000000
    assert app["linked_models"] == ["norm"]


def numeric_sum(xs):
    return [sum(x) for x in xs]  # numbers, as in the original's own tests and docs


def test_closure_returning_numbers_answers_like_the_original(conn):
    """The original closure container str()-ed every prediction; "6.6" is re-parsed as JSON."""
    conn.register_application(name="numeric", input_type="doubles", default_output="-1.0", slo_micros=3000000)
    python_deployer.deploy_python_closure(
        conn, name="numeric-sum", version=1, input_type="doubles", func=numeric_sum
    )
    conn.link_model_to_app(app_name="numeric", model_name="numeric-sum")
    out = predict(conn, "numeric", {"input": [1.1, 2.2, 3.3]})
    assert out["default"] is False, out
    assert isinstance(out["output"], float) and out["output"] == pytest.approx(6.6)
    conn.stop_models(["numeric-sum"])
    conn.delete_application("numeric")


def test_connect_from_second_process(conn):
    script = (
        "from clipper_admin import ClipperConnection, LocalContainerManager\n"
        "c = ClipperConnection(LocalContainerManager('flow'))\n"
        "c.connect()\n"
        "print(c.get_query_addr())\n"
        "print(sorted(c.get_all_apps()))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0] == conn.get_query_addr()
    assert "hello-world" in lines[1]


def test_sigkilled_model_replica_is_restarted(conn):
    status = conn.cm.dir.read_status()
    proc_id = "model/sum-model/1/0"
    pid = status[proc_id]["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_for(
        lambda: (s := conn.cm.dir.read_status()[proc_id])["state"] == "running" and s["pid"] != pid,
        what="restart",
    )
    assert conn.get_num_replicas("sum-model") == 2
    assert float(predict(conn, "hello-world", {"input": [1.0, 1.5]})["output"]) == pytest.approx(2.5)


def test_read_methods(conn, tmp_path):
    assert "hello-world" in conn.get_all_apps()
    verbose = {a["name"]: a for a in conn.get_all_apps(verbose=True)}
    assert verbose["hello-world"] == {
        "name": "hello-world",
        "input_type": "doubles",
        "default_output": "-1.0",
        "latency_slo_micros": 100000,
        "linked_models": ["sum-model"],
    }
    assert conn.get_app_info("hello-world")["linked_models"] == ["sum-model"]
    assert conn.get_app_info("no-such-app") is None
    assert conn.get_linked_models("hello-world") == ["sum-model"]
    assert "sum-model:1" in conn.get_all_models()
    info = conn.get_model_info("sum-model", 1)
    assert info["model_name"] == "sum-model" and info["input_type"] == "doubles"
    assert info["container_name"].startswith("local:")
    assert conn.get_model_info("sum-model", 99) is None
    replicas = conn.get_all_model_replicas()
    assert any(r.startswith("sum-model:1:") for r in replicas)
    rid = next(r for r in conn.get_all_model_replicas(verbose=True) if r["model_name"] == "sum-model")
    assert conn.get_model_replica_info("sum-model", 1, rid["model_replica_id"])["model_id"] == "sum-model:1"
    assert conn.get_model_replica_info("sum-model", 1, 12345) is None
    metrics = conn.inspect_instance()
    assert isinstance(metrics, dict)
    assert conn.get_metric_addr() == conn.get_query_addr()
    assert requests.get(f"http://{conn.get_metric_addr()}/metrics", timeout=10).status_code == 200
    logs = conn.get_clipper_logs(logging_dir=str(tmp_path / "logs"))
    names = {Path(p).name for p in logs}
    assert {"flow-management.log", "flow-query-0.log", "flow-model-sum-model-1-0.log"} <= names
    assert all(Path(p).is_file() for p in logs)


def test_test_predict_function(conn):
    assert conn.test_predict_function({"input": [1.0, 2.0]}, feature_sum, "doubles") == ["3.0"]
    assert conn.test_predict_function({"input_batch": [[1, 2], [3]]}, feature_sum, "ints") == ["3", "3"]
    assert conn.test_predict_function({"input": ["a", "b"]}, lambda xs: [str(len(xs))], "strings") == ["1"]
    assert conn.test_predict_function({"input": [1, 2]}, feature_sum, "doubles") == "Invalid input type"
    assert (
        conn.test_predict_function({"input": 5}, feature_sum, "doubles") == "Invalid input type or JSON key"
    )


def test_register_link_unlink_unregister(conn):
    conn.register_model("containerless", 1, "doubles", labels=["a", "b"])
    assert conn.get_model_info("containerless", 1)["container_name"] == "NO_CONTAINER"
    assert conn.get_model_info("containerless", 1)["labels"] == ["a", "b"]
    with pytest.raises(
        ClipperException, match="^Cannot resize the replica set for containerless model containerless:1$"
    ):
        conn.set_num_replicas("containerless", 2)
    with pytest.raises(
        ClipperException, match="^Cannot add container for non-registered model containerless:7$"
    ):
        conn.set_num_replicas("containerless", 2, version=7)
    with pytest.raises(ClipperException, match="^No versions of model nothing registered with Clipper$"):
        conn.get_current_model_version("nothing")

    conn.register_application("app2", "doubles", "0", 100000)
    conn.link_model_to_app("app2", "containerless")
    with pytest.raises(ClipperException, match="already linked"):
        conn.link_model_to_app("app2", "containerless")
    conn.unlink_model_from_app("app2", "containerless")
    assert conn.get_linked_models("app2") == []
    with pytest.raises(
        ClipperException,
        match="^Received error status code: 400 and message: Cannot remove nonexistent link between app app2",
    ):
        conn.unlink_model_from_app("app2", "containerless")
    conn.unregister_application("app2")
    assert conn.get_app_info("app2") is None
    conn.register_application("app3", "doubles", "0", 100000)
    conn.delete_application("app3")
    with pytest.raises(
        ClipperException,
        match="^Received error status code: 400 and message: Application 'app3' does not exist",
    ):
        conn.unregister_application("app3")
    with pytest.raises(ClipperException, match="No application with name 'nope' exists"):
        conn.get_linked_models("nope")
    with pytest.raises(ClipperException, match="already exists"):
        conn.register_application("hello-world", "doubles", "0", 1)
    # invalid input type: a clear ClipperException, not a dropped connection
    with pytest.raises(ClipperException, match="Doubles is not a valid input string"):
        conn.register_application("app4", "Doubles", "0", 1)
    with pytest.raises(ClipperException, match="latency_slo_micros"):
        conn.register_application("app5", "doubles", "0", "fast")


def test_deploy_errors_leave_nothing_running(conn, tmp_path):
    before = conn.cm.dir.read_desired()
    with pytest.raises(ClipperException, match="Model sum-model:1 is already deployed"):
        python_deployer.deploy_python_closure(conn, "sum-model", 1, "doubles", feature_sum)
    with pytest.raises(ClipperException, match="^Doubles is not a valid input string$"):
        python_deployer.deploy_python_closure(conn, "other", 1, "Doubles", feature_sum)
    with pytest.raises(ClipperException, match="Invalid value: 1.0: a model version must be"):
        python_deployer.deploy_python_closure(conn, "other", "1.0", "doubles", feature_sum)
    with pytest.raises(ClipperException, match="num_replicas must be a non-negative integer"):
        python_deployer.deploy_python_closure(conn, "other", 1, "doubles", feature_sum, num_replicas=-1)
    # registration fails after the replica started (labels with ':' are refused by the server)
    with pytest.raises(ClipperException, match="Invalid label supplied: a:b"):
        python_deployer.deploy_python_closure(conn, "other", 1, "doubles", feature_sum, labels=["a:b"])
    # a replica that crashes at start: the error carries its log, and it is not left crash-looping
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "func.pkl").write_bytes(b"not a pickle")
    with pytest.raises(ClipperException) as e:
        conn.build_and_deploy_model("broken", 1, "doubles", str(bad), "default")
    assert "crashed while starting model broken:1" in str(e.value)
    assert "cannot unpickle" in str(e.value)
    assert conn.get_model_info("broken", 1) is None
    assert conn.get_model_info("other", 1) is None
    assert conn.cm.dir.read_desired() == before


def test_build_model_and_deploy_model(conn, tmp_path):
    from clipper_admin.deployers.deployer_utils import save_python_function

    model_dir = save_python_function("built", feature_sum)
    image = conn.build_model("built", 3, model_dir, "default")
    assert image == f"local:{conn.cm.dir.models / 'built' / '3'}"
    conn.deploy_model("built", 3, "doubles", image, labels=["x"], num_replicas=1, batch_size=4)
    assert conn.get_num_replicas("built", 3) == 1
    conn.register_application("built-app", "doubles", "none", 1000000)
    conn.link_model_to_app("built-app", "built")
    out = predict(conn, "built-app", {"input_batch": [[1.0], [2.0, 3.0]]})
    assert [float(p["output"]) for p in out["batch_predictions"]] == [1.0, 5.0]


def test_traffic_split_through_clipper_connection(conn):
    """The added ClipperConnection traffic methods on the local backend (README "Traffic splitting")."""
    conn.register_application(
        name="split-app", input_type="doubles", default_output="-1.0", slo_micros=5000000
    )
    python_deployer.deploy_python_closure(
        conn, name="split-model", version=1, input_type="doubles", func=feature_sum
    )
    python_deployer.deploy_python_closure(
        conn, name="split-model", version=2, input_type="doubles", func=feature_sum_doubled
    )
    conn.link_model_to_app(app_name="split-app", model_name="split-model")
    assert conn.get_app_traffic("split-app")["configured"] is False
    with pytest.raises(ClipperException, match="has no version '7'"):
        conn.set_app_traffic("split-app", [("split-model", "7", 1.0)])
    report = conn.set_app_traffic("split-app", [("split-model", "1", 50), ("split-model", 2, 50)])
    assert [t["model_version"] for t in report["targets"]] == ["1", "2"]

    def both_seen() -> bool:
        ratios = {
            float(predict(conn, "split-app", {"input": [float(i)]})["output"]) / i for i in range(1, 41)
        }
        return ratios == {1.0, 2.0}

    wait_for(both_seen, what="both versions answer")
    # Requests that reached the frontend before the configuration did went the plain way and are
    # not the split's: once both versions answer, the next 40 are all counted.
    for i in range(41, 81):  # inputs not seen before: no cache hit
        predict(conn, "split-app", {"input": [float(i)]})

    def counted() -> bool:
        return sum(t["stats"]["requests"] for t in conn.get_app_traffic("split-app")["targets"]) >= 40

    wait_for(counted, what="40 requests counted in the split's statistics")
    assert conn.clear_app_traffic("split-app")["configured"] is False


def test_stop_methods(conn):
    image = conn.get_model_info("built", 3)["container_name"]
    conn.deploy_model("built", 4, "doubles", image)
    conn.set_model_version("built", 3, num_replicas=2)
    assert conn.get_current_model_version("built") == "3"
    assert conn.get_num_replicas("built", 3) == 2
    conn.stop_versioned_models({"built": ["3"]})
    assert conn.get_num_replicas("built", 3) == 0
    assert conn.get_num_replicas("built", 4) == 1
    conn.stop_models(["built"])
    assert conn.get_num_replicas("built", 4) == 0
    conn.stop_all_model_containers()
    assert not any(p.startswith("model/") for p in conn.cm.dir.read_desired())


def test_stop_all_stops_every_process(conn, home):
    pids = cluster_pids(conn)
    assert len(pids) >= 3
    conn.stop_all()
    for pid in pids:
        wait_for(lambda pid=pid: not pid_alive(pid), timeout=20, what=f"pid {pid} gone")
    assert not (home / "flow" / "cluster.json").exists()
    with pytest.raises(ClipperException, match="Cluster flow does not exist"):
        ClipperConnection(conn.cm).connect()
