"""A Clipper cluster on a real Docker engine, driven through clipper_admin unchanged."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from clipper_admin.container_manager import (
    CLIPPER_DOCKER_LABEL,
    CLIPPER_MODEL_CONTAINER_LABEL,
    CLIPPER_QUERY_FRONTEND_CONTAINER_LABEL,
)

from .helpers import predict, script_function, wait_for, wait_for_output, write_model_dir

APP = "hello-world"


def feature_sum(xs):
    return [str(sum(x)) for x in xs]


def feature_sum_plus_100(xs):
    return [str(sum(x) + 100) for x in xs]


#: The README's closure, as its script defines it (``__main__``)
README_SRC = """
def feature_sum(xs):
    return [str(sum(x)) for x in xs]
"""


@pytest.fixture(scope="module")
def cluster(docker_cluster):
    conn, _ = docker_cluster
    conn.register_application(name=APP, input_type="doubles", default_output="-1.0", slo_micros=100000)
    return docker_cluster


def test_hello_world_readme_flow(cluster, tmp_path):
    """The original README: register an app, deploy a closure, link it, query it."""
    python_deployer = pytest.importorskip("clipper_admin.deployers.python")
    conn, _ = cluster
    python_deployer.deploy_python_closure(
        conn,
        name="sum-model",
        version=1,
        input_type="doubles",
        func=script_function(README_SRC, "feature_sum"),
    )
    conn.link_model_to_app(app_name=APP, model_name="sum-model")
    out = wait_for_output(conn.get_query_addr(), APP, {"input": [1.1, 2.2, 3.3]}, str(sum([1.1, 2.2, 3.3])))
    assert out["default"] is False


def test_containers_run_non_root_on_a_read_only_root_file_system(cluster, docker_client):
    """Issue 9: frontends, Redis and model containers: a non-root user, read-only /, tmpfs /tmp."""
    from clipper_admin.container_manager import CLIPPER_DOCKER_LABEL

    conn, _ = cluster
    containers = docker_client.containers.list(
        filters={"label": f"{CLIPPER_DOCKER_LABEL}={conn.cm.cluster_name}"}
    )
    assert len(containers) >= 3  # redis, management and query frontends (+ models, Prometheus)
    for c in containers:
        c.reload()
        host = c.attrs["HostConfig"]
        assert host["ReadonlyRootfs"] is True, c.name
        assert "/tmp" in (host.get("Tmpfs") or {}), c.name
        uid = c.exec_run(["id", "-u"]).output.decode().strip()
        assert uid not in ("", "0"), f"{c.name} runs as root"


def _deploy(conn, tmp_path, name, version, func, replicas=1):
    model_dir = write_model_dir(tmp_path / f"{name}-{version}", func)
    base = "clipper/python311-closure-container:" + __import__("clipper").__version__
    conn.build_and_deploy_model(name, version, "doubles", model_dir, base, num_replicas=replicas)


def test_build_and_deploy_then_version_switch_and_rollback(cluster, tmp_path, docker_client):
    conn, kwargs = cluster
    _deploy(conn, tmp_path, "switch", 1, feature_sum)
    conn.register_application(
        name="switch-app", input_type="doubles", default_output="-1.0", slo_micros=100000
    )
    conn.link_model_to_app("switch-app", "switch")
    addr = conn.get_query_addr()
    wait_for_output(addr, "switch-app", {"input": [1.0, 2.0]}, "3.0")
    # the model image is tagged <cluster>-<name>:<version> and holds the model at /model
    image = docker_client.images.get(f"{kwargs['cluster_name']}-switch:1")
    assert image.labels[CLIPPER_DOCKER_LABEL] == kwargs["cluster_name"]

    _deploy(conn, tmp_path, "switch", 2, feature_sum_plus_100)
    assert conn.get_current_model_version("switch") == "2"
    wait_for_output(addr, "switch-app", {"input": [1.0, 2.0]}, "103.0")

    conn.set_model_version("switch", "1")  # rollback: version 1's replicas are still running
    wait_for_output(addr, "switch-app", {"input": [1.0, 2.0]}, "3.0")


def test_scaling_replicas(cluster, tmp_path, docker_client):
    conn, kwargs = cluster
    _deploy(conn, tmp_path, "scaled", 1, feature_sum)
    assert conn.get_num_replicas("scaled", "1") == 1
    conn.set_num_replicas("scaled", 3, version="1")
    assert conn.get_num_replicas("scaled", "1") == 3
    labelled = docker_client.containers.list(
        filters={
            "label": [
                f"{CLIPPER_DOCKER_LABEL}={kwargs['cluster_name']}",
                f"{CLIPPER_MODEL_CONTAINER_LABEL}=scaled_1",
            ]
        }
    )
    assert len(labelled) == 3
    assert all(c.name.startswith("scaled_1-") for c in labelled)
    conn.set_num_replicas("scaled", 1, version="1")
    assert conn.get_num_replicas("scaled", "1") == 1
    # scaled-down containers are removed, not left stopped
    all_of_model = docker_client.containers.list(
        all=True, filters={"label": f"{CLIPPER_MODEL_CONTAINER_LABEL}=scaled_1"}
    )
    assert len(all_of_model) == 1


def test_killed_model_container_is_detected(cluster, tmp_path, docker_client):
    """Issue 9 on Docker: a replica killed under load loses no request (every one gets a 200: a
    prediction from the other replica or the default with its explanation)."""
    from tests.reliability.load import Load

    conn, kwargs = cluster
    _deploy(conn, tmp_path, "victim", 1, feature_sum, replicas=2)
    conn.register_application(
        name="victim-app", input_type="doubles", default_output="-1.0", slo_micros=1_000_000
    )
    conn.link_model_to_app("victim-app", "victim")
    wait_for_output(conn.get_query_addr(), "victim-app", {"input": [2.0, 2.0]}, "4.0")
    wait_for(lambda: len(conn.get_all_model_replicas()) >= 2, 60, "two connected replicas")
    replicas = docker_client.containers.list(filters={"label": f"{CLIPPER_MODEL_CONTAINER_LABEL}=victim_1"})
    with Load(f"http://{conn.get_query_addr()}/victim-app/predict", n=4) as load:
        time.sleep(1.0)
        replicas[0].kill()
        wait_for(lambda: conn.get_num_replicas("victim", "1") == 1, 30, "the backend to count one replica")
        time.sleep(1.0)
    assert load.sent == len(load.results) > 0
    assert all(a.status == 200 for a in load.results), {a.status for a in load.results}
    served = [a for a in load.results if not a.body["default"]]
    assert served and all(a.body["output"] == sum(a.request["input"]) for a in served)
    # the surviving replica keeps serving
    assert predict(conn.get_query_addr(), "victim-app", {"input": [2.0, 2.0]})["output"] in ("4.0", 4.0)


def faulty_model(xs):
    if xs[0][0] < 0:
        raise ValueError("negative input")
    return [str(sum(x)) for x in xs]


def test_model_errors_become_defaults_and_the_container_lives_on(cluster, tmp_path, docker_client):
    """Issue 9 on Docker: a function that raises gives the default with the reason, then serves on."""
    conn, _ = cluster
    _deploy(conn, tmp_path, "faulty", 1, faulty_model)
    conn.register_application(
        name="faulty-app", input_type="doubles", default_output="-1.0", slo_micros=1_000_000
    )
    conn.link_model_to_app("faulty-app", "faulty")
    wait_for_output(conn.get_query_addr(), "faulty-app", {"input": [1.0, 2.0]}, "3.0")
    bad = predict(conn.get_query_addr(), "faulty-app", {"input": [-1.0, 2.0]})
    assert bad["default"] is True and bad["output"] == -1.0
    assert "ValueError: negative input" in bad["default_explanation"]
    assert predict(conn.get_query_addr(), "faulty-app", {"input": [1.0, 2.0]})["output"] in ("3.0", 3.0)
    (container,) = docker_client.containers.list(
        filters={"label": f"{CLIPPER_MODEL_CONTAINER_LABEL}=faulty_1"}
    )
    assert container.status == "running"


def _query_frontend(conn, docker_client):
    (frontend,) = docker_client.containers.list(
        filters={
            "label": [
                f"{CLIPPER_DOCKER_LABEL}={conn.cm.cluster_name}",
                CLIPPER_QUERY_FRONTEND_CONTAINER_LABEL,
            ]
        }
    )
    return frontend


def test_the_query_frontend_runs_the_hot_path_its_image_says(cluster, docker_client):
    """images/build.sh compiles the hot path into the images when it can and labels them with the
    outcome; the frontend's start-up line says what it imported. ./test.sh builds the images with
    mypy, gcc and the headers at hand (CLIPPER_REQUIRE_COMPILED=1): there it must be compiled."""
    import os

    conn, _ = cluster
    frontend = _query_frontend(conn, docker_client)
    label = frontend.image.labels.get("ai.clipper.hot-path")
    assert label in ("compiled", "interpreted"), frontend.image.labels
    if os.environ.get("CLIPPER_REQUIRE_COMPILED") == "1":
        assert label == "compiled", "images/build.sh fell back to the pure-Python wheel: see its log"
    wait_for(lambda: b"hot path " in frontend.logs(), 30, "the query frontend's start-up line")
    assert f"hot path {label}".encode() in frontend.logs()


def test_replicas_use_the_frontends_socket_unless_they_run_as_another_user(cluster, docker_client):
    """The replicas reach the query frontend on its Unix socket, in the cluster's RPC volume; an
    image that runs as another user than the frontend cannot open the socket's directory, so its
    replicas get the CURVE TCP port instead. Both answer."""
    import io
    import uuid

    import clipper
    from clipper_admin.docker.docker_container_manager import RPC_SOCKET_PATH

    conn, _ = cluster
    cluster_name = conn.cm.cluster_name
    noop = f"clipper/noop-container:{clipper.__version__}"
    other_user = f"clipper-test-other-user:{uuid.uuid4().hex[:8]}"
    docker_client.images.build(
        fileobj=io.BytesIO(f"FROM {noop}\nUSER 10002\n".encode()), tag=other_user, rm=True
    )
    try:
        conn.register_application(
            name="sock-app", input_type="doubles", default_output="-1.0", slo_micros=5_000_000
        )
        conn.deploy_model("sock", "1", "doubles", noop)
        conn.deploy_model("sock", "2", "doubles", other_user)
        conn.link_model_to_app("sock-app", "sock")
        for version, transport in (("2", "tcp://"), ("1", f"unix://{RPC_SOCKET_PATH}")):
            conn.set_model_version("sock", version)
            wait_for_output(conn.get_query_addr(), "sock-app", {"input": [1.0]}, "1.0")
            (replica,) = docker_client.containers.list(
                filters={"label": f"{CLIPPER_MODEL_CONTAINER_LABEL}=sock_{version}"}
            )
            assert f"serving for {transport}".encode() in replica.logs(), replica.logs()[-2000:]
            env = dict(item.split("=", 1) for item in replica.attrs["Config"]["Env"])
            volumes = [m.get("Name") for m in replica.attrs["Mounts"]]
            on_socket = version == "1"
            assert (env.get("CLIPPER_RPC_SOCKET") == RPC_SOCKET_PATH) is on_socket
            assert (f"clipper-{cluster_name}-rpc" in volumes) is on_socket
        frontend = _query_frontend(conn, docker_client)
        assert f"and on {RPC_SOCKET_PATH} (owner only)".encode() in frontend.logs()
    finally:
        conn.stop_models("sock")
        docker_client.images.remove(other_user, force=True)


def test_connect_from_a_second_process(cluster):
    conn, kwargs = cluster
    code = (
        "import json, sys\n"
        "from clipper_admin import ClipperConnection, DockerContainerManager\n"
        f"cm = DockerContainerManager(cluster_name={kwargs['cluster_name']!r}, docker_network={kwargs['docker_network']!r})\n"
        "conn = ClipperConnection(cm)\n"
        "conn.connect()\n"
        "print(json.dumps({'query': conn.get_query_addr(), 'admin': cm.get_admin_addr(), 'apps': conn.get_all_apps()}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["query"] == conn.get_query_addr() == f"localhost:{kwargs['clipper_query_port']}"
    assert seen["admin"] == f"localhost:{kwargs['clipper_management_port']}"
    assert APP in seen["apps"]


def test_logs_are_written(cluster, tmp_path):
    conn, _ = cluster
    paths = conn.get_clipper_logs(logging_dir=str(tmp_path / "logs"))
    assert len(paths) >= 3  # redis, management and query frontends at least
    assert all(p.startswith(str(tmp_path / "logs")) for p in paths)


def test_prometheus_scrapes_the_query_frontend(cluster):
    conn, _ = cluster
    cm = conn.cm
    if cm.prom_config_path is None:
        pytest.skip("the prometheus image is not built (images/build.sh builds it unless --no-prometheus)")
    import requests

    def up():
        r = requests.get(f"http://{conn.get_metric_addr()}/api/v1/query", params={"query": "up"}, timeout=5)
        result = r.json()["data"]["result"]
        return any(s["value"][1] == "1" for s in result)

    wait_for(up, 60, "Prometheus to scrape the query frontend")


def exits_on_negative(xs):
    import os

    if xs[0][0] < 0:
        os._exit(4)  # what the container's watchdog does when a prediction outlives CLIPPER_PREDICT_TIMEOUT
    return [str(sum(x)) for x in xs]


def test_a_replica_that_exits_non_zero_is_restarted_by_docker(cluster, tmp_path, docker_client):
    """Issue 12 on Docker: the watchdog's exit (code 4) is followed by Docker's restart policy."""
    conn, _ = cluster
    addr = conn.get_query_addr()
    _deploy(conn, tmp_path, "crashy", 1, exits_on_negative)
    conn.register_application(
        name="crashy-app", input_type="doubles", default_output="-1.0", slo_micros=1_000_000
    )
    conn.link_model_to_app("crashy-app", "crashy")
    wait_for_output(addr, "crashy-app", {"input": [1.0, 2.0]}, "3.0")
    (container,) = docker_client.containers.list(
        filters={"label": f"{CLIPPER_MODEL_CONTAINER_LABEL}=crashy_1"}
    )
    assert container.attrs["HostConfig"]["RestartPolicy"]["Name"] == "on-failure"
    assert predict(addr, "crashy-app", {"input": [-1.0]})["default"] is True

    def restarted():
        container.reload()
        return container.attrs["RestartCount"] >= 1 and container.status == "running"

    wait_for(restarted, 60, "Docker to restart the replica")
    wait_for_output(addr, "crashy-app", {"input": [2.0, 2.0]}, "4.0")
    assert conn.get_num_replicas("crashy", "1") == 1


def test_only_the_clusters_replicas_hold_the_rpc_keys(cluster, tmp_path, docker_client):
    """Issue 12: the query frontend admits only replicas with the cluster's CURVE keys. The manager
    hands the replica part of them to the containers it starts; a process without them reaching the
    published RPC port never registers and gets no query."""
    from clipper.rpc.auth import RPC_KEYS_ENV, RpcKeys
    from tests.reliability.peers import FakeReplica

    conn, _ = cluster
    _deploy(conn, tmp_path, "keyed", 1, feature_sum)
    conn.register_application(
        name="keyed-app", input_type="doubles", default_output="-1.0", slo_micros=5_000_000
    )
    conn.link_model_to_app("keyed-app", "keyed")
    wait_for_output(conn.get_query_addr(), "keyed-app", {"input": [1.0, 2.0]}, "3.0")

    def keys_of(container) -> RpcKeys:
        container.reload()
        env = dict(item.split("=", 1) for item in container.attrs["Config"]["Env"])
        return RpcKeys.from_json(env[RPC_KEYS_ENV])

    (model,) = docker_client.containers.list(filters={"label": f"{CLIPPER_MODEL_CONTAINER_LABEL}=keyed_1"})
    replica_keys = keys_of(model)
    assert replica_keys.client_secret and replica_keys.server_secret is None
    rogue = FakeReplica(conn.cm.clipper_rpc_port, "keyed", "1", "hang")
    rogue.start()
    try:
        for i in range(30):
            out = predict(conn.get_query_addr(), "keyed-app", {"input": [float(i), 1.0]})
            assert out["default"] is False and float(out["output"]) == i + 1.0, out
        assert rogue.requests == 0 and not rogue.registered.is_set()
    finally:
        rogue.stop()
