"""Per-replica metrics and Prometheus discovery on Docker, the clipper/noop-container image, and the
Prometheus config directory's removal by a manager that did not start the cluster."""

from __future__ import annotations

import os

import pytest
import requests

from clipper_admin import ClipperConnection
from clipper_admin.container_manager import CLIPPER_DOCKER_LABEL, CLIPPER_MODEL_CONTAINER_LABEL
from clipper_admin.version import __registry__, __version__

from .helpers import predict, script_function, wait_for, wait_for_output

NOOP_IMAGE = f"{__registry__}/noop-container:{__version__}"


@pytest.fixture(scope="module")
def cluster(docker_cluster):
    return docker_cluster


def test_noop_container_answers_its_constant(cluster):
    """As the original scripts deploy it: a plain image, any input, the answer "1.0"."""
    conn, _ = cluster
    conn.register_application(name="noop-app", input_type="doubles", default_output="-1.0", slo_micros=100000)
    conn.deploy_model("noop", "1", "doubles", NOOP_IMAGE)
    conn.link_model_to_app(app_name="noop-app", model_name="noop")
    addr = conn.get_query_addr()
    wait_for_output(addr, "noop-app", {"input": [1.0, 2.0]}, "1.0")
    out = predict(addr, "noop-app", {"input_batch": [[3.0], [4.0, 5.0, 6.0]]})
    assert [(o["output"], o["default"]) for o in out["batch_predictions"]] == [(1.0, False), (1.0, False)]


def _prometheus(conn, path: str, **params) -> dict:
    r = requests.get(f"http://{conn.get_metric_addr()}/api/v1/{path}", params=params, timeout=5)
    r.raise_for_status()
    return r.json()["data"]


#: as a script defines it (``__main__``): the model image installs none of this module's imports
DOUBLE_FIRST_SRC = """
def double_first(xs):
    return [str(x[0] * 2) for x in xs]
"""


def test_every_replica_is_scraped_including_one_added_later(cluster, docker_client):
    """A closure model with 1 replica scaled to 2: Prometheus scrapes both replicas (the original's
    ``clipper_mc_*`` series, one job per replica container) and drops the one scaled away."""
    python_deployer = pytest.importorskip("clipper_admin.deployers.python")
    conn, kwargs = cluster
    if conn.cm.prom_config_path is None:
        pytest.skip("the prometheus image is not built (images/build.sh builds it unless --no-prometheus)")
    conn.register_application(
        name="scraped-app", input_type="doubles", default_output="-1.0", slo_micros=100000
    )
    python_deployer.deploy_python_closure(
        conn,
        name="scraped",
        version=1,
        input_type="doubles",
        func=script_function(DOUBLE_FIRST_SRC, "double_first"),
        num_replicas=1,
    )
    conn.link_model_to_app(app_name="scraped-app", model_name="scraped")
    conn.set_num_replicas("scraped", 2, version="1")
    replicas = {
        c.name
        for c in docker_client.containers.list(
            filters={
                "label": [
                    f"{CLIPPER_DOCKER_LABEL}={kwargs['cluster_name']}",
                    f"{CLIPPER_MODEL_CONTAINER_LABEL}=scraped_1",
                ]
            }
        )
    }
    assert len(replicas) == 2
    addr = conn.get_query_addr()
    wait_for_output(addr, "scraped-app", {"input": [1.0]}, "2.0")
    for _ in range(20):
        predict(addr, "scraped-app", {"input": [1.0]})

    def all_up():
        active = _prometheus(conn, "targets")["activeTargets"]
        health = {t["labels"]["job"]: t["health"] for t in active}
        return health if replicas | {"query"} <= {job for job, h in health.items() if h == "up"} else None

    wait_for(all_up, 120, "Prometheus to scrape the query frontend and both replicas")

    def series_per_replica():
        result = _prometheus(conn, "query", query='clipper_mc_pred_total{model_name="scraped"}')["result"]
        by_job = {s["metric"]["job"]: float(s["value"][1]) for s in result}
        if set(by_job) != replicas or sum(by_job.values()) < 1:
            return None
        return by_job

    by_job = wait_for(series_per_replica, 60, "clipper_mc_pred_total of each replica")
    for s in _prometheus(conn, "query", query='clipper_mc_pred_total{model_name="scraped"}')["result"]:
        assert s["metric"]["model_version"] == "1"
        assert s["metric"]["instance"] == f"{s['metric']['job']}:1390"
    assert sum(by_job.values()) >= 1  # the predictions above were counted by the replicas

    # scaled down: the removed replica leaves Prometheus' targets
    conn.set_num_replicas("scraped", 1, version="1")

    def one_replica_left():
        active = _prometheus(conn, "targets")["activeTargets"]
        jobs = {t["labels"]["job"] for t in active} & replicas
        return jobs if len(jobs) == 1 else None

    wait_for(one_replica_left, 60, "the removed replica to leave Prometheus' targets")


def test_stop_all_from_a_fresh_manager_removes_the_prometheus_config(make_manager, test_network):
    """How scripts clean up: ``ClipperConnection(DockerContainerManager()).stop_all()``."""
    from clipper_admin.docker.docker_container_manager import DockerContainerManager

    cm = make_manager()
    ClipperConnection(cm).start_clipper()
    if cm.prom_config_path is None:
        pytest.skip("the prometheus image is not built (images/build.sh builds it unless --no-prometheus)")
    config_dir = os.path.dirname(cm.prom_config_path)
    assert os.path.isfile(cm.prom_config_path)
    fresh = DockerContainerManager(cluster_name=cm.cluster_name, docker_network=test_network)
    assert fresh.prom_config_path is None
    ClipperConnection(fresh).stop_all()
    assert not os.path.exists(config_dir)
