"""The original hello-world flow through ``ClipperConnection(KubernetesContainerManager(...))`` on a real
cluster: start_clipper, register_application, deploy_python_closure, link, predictions through the
query Service and through the manager's port-forward, batch input, scaling up and down, a model pod
deleted under load (no request lost), a second version and a rollback, stop_inactive_model_versions, every pod's log (get_clipper_logs),
and stop_all leaving nothing of the cluster in its namespace."""

from __future__ import annotations

import pytest

from . import e2e

pytestmark = [pytest.mark.kubernetes, pytest.mark.slow]

APP = "hello-world"
MODEL = "sum-model"
X = [1.0, 2.0, 3.0]


def feature_sum(xs):
    return [str(sum(x)) for x in xs]


def feature_sum_times_ten(xs):
    return [str(10 * sum(x)) for x in xs]


@pytest.fixture(scope="module")
def conn():
    from clipper_admin import ClipperConnection

    api = e2e.api_client()
    namespace = e2e.unique("clipper-e2e-admin")
    cm = e2e.manager(api, "e2e", namespace)
    c = ClipperConnection(cm)
    try:
        c.start_clipper()
        yield c
    finally:
        c.stop_all()
        e2e.delete_namespace(api, namespace)


def model_pods(conn, version: str) -> list[dict]:
    from clipper_admin.kubernetes import names as n

    selector = n.cluster_selector(
        conn.cm.cluster_name, **{n.MODEL_LABEL: n.model_container_label(MODEL, version)}
    )
    pods = conn.cm.api.list("Pod", conn.cm.namespace, selector)
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def test_hello_world_through_the_query_service_and_a_port_forward(conn):
    from clipper_admin import ClipperConnection
    from clipper_admin.deployers.python import deploy_python_closure

    conn.register_application(APP, "doubles", "-1.0", 2_000_000)
    deploy_python_closure(conn, name=MODEL, version="1", input_type="doubles", func=feature_sum)
    conn.link_model_to_app(APP, MODEL)
    addr = conn.get_query_addr()
    # through the query Service (its node port on the node's address)
    assert not addr.startswith("127.0.0.1"), addr
    e2e.wait_for(lambda: e2e.output(addr, APP, X) == 6.0, what="the first prediction")
    # a batch
    r = e2e.predict(addr, APP, {"input_batch": [[1.0], [2.0, 2.0], [3.0, 3.0, 3.0]]})
    assert r.status_code == 200, r.text
    assert [b["output"] for b in r.json()["batch_predictions"]] == [1.0, 4.0, 9.0], r.json()
    # through a port-forward the manager opens itself (a second client of the same cluster)
    forwarded = ClipperConnection(
        e2e.manager(conn.cm.api_client, "e2e", conn.cm.namespace, access="port-forward")
    )
    try:
        forwarded.connect()
        f_addr = forwarded.get_query_addr()
        assert f_addr.startswith("127.0.0.1:"), f_addr
        assert e2e.output(f_addr, APP, X) == 6.0
        assert forwarded.get_all_apps() == [APP]
    finally:
        forwarded.cm.close()


def test_scale_up_and_down_and_a_pod_deleted_under_load(conn):
    conn.set_num_replicas(MODEL, 2, "1")
    e2e.wait_for(
        lambda: conn.get_num_replicas(MODEL, "1") == 2 and len(model_pods(conn, "1")) == 2, what="2 replicas"
    )
    e2e.wait_for(lambda: len(conn.get_all_model_replicas()) == 2, what="2 replicas connected")
    addr = conn.get_query_addr()
    victim = model_pods(conn, "1")[0]["metadata"]["name"]
    with e2e.load(addr, APP, X, threads=4) as lo:
        e2e.wait_for(lambda: len(lo.answers) > 20, 60, "answers before the deletion")
        conn.cm.api.delete("Pod", victim, conn.cm.namespace)
        # the Deployment replaces the pod; its replica connects again
        e2e.wait_for(
            lambda: (
                victim not in [p["metadata"]["name"] for p in model_pods(conn, "1")]
                and len(model_pods(conn, "1")) == 2
            ),
            what="the deleted pod replaced",
        )
        e2e.wait_for(lambda: len(conn.get_all_model_replicas()) == 2, what="2 replicas connected again")
        n = len(lo.answers)
        e2e.wait_for(lambda: len(lo.answers) > n + 20, 60, "answers after the replacement")
    assert lo.answers and lo.bad(lambda step, code, out: code == 200 and out == 6.0) == []
    conn.set_num_replicas(MODEL, 1, "1")
    e2e.wait_for(lambda: len(model_pods(conn, "1")) == 1, what="scaled down to 1 pod")
    e2e.wait_for(lambda: len(conn.get_all_model_replicas()) == 1, what="1 replica connected")
    assert conn.get_num_replicas(MODEL, "1") == 1
    assert e2e.output(addr, APP, X) == 6.0


def test_second_version_rollback_and_stop_inactive_versions(conn):
    from clipper_admin.deployers.python import deploy_python_closure

    addr = conn.get_query_addr()
    deploy_python_closure(conn, name=MODEL, version="2", input_type="doubles", func=feature_sum_times_ten)
    assert conn.get_current_model_version(MODEL) == "2"
    e2e.wait_for(lambda: e2e.output(addr, APP, X) == 60.0, what="version 2 answering")
    conn.set_model_version(MODEL, "1")  # rollback
    e2e.wait_for(lambda: e2e.output(addr, APP, X) == 6.0, what="version 1 answering again")
    conn.stop_inactive_model_versions([MODEL])
    e2e.wait_for(lambda: model_pods(conn, "2") == [], what="version 2's pods gone")
    assert conn.cm.get_num_replicas(MODEL, "2") == 0
    assert e2e.output(addr, APP, X) == 6.0


def test_get_clipper_logs_collects_each_pods_log(conn, tmp_path):
    paths = conn.get_clipper_logs(str(tmp_path))
    names = [p.rsplit("/", 1)[-1] for p in paths]
    assert any(x.startswith("query-frontend-0-at-e2e") for x in names), names
    assert any(x.startswith(f"{MODEL}-1-deployment") for x in names), names
    query_log = next(p for p in paths if "query-frontend-0-at-e2e" in p)
    assert open(query_log).read().strip(), "the query frontend's log is empty"


def test_stop_all_leaves_nothing_in_the_namespace(conn):
    conn.stop_all()
    left = e2e.wait_for(
        lambda: not e2e.namespace_objects(conn.cm.api_client, conn.cm.namespace) or None,
        what="an empty namespace",
    )
    assert left is True
