"""Namespaces on a real cluster (the original's ``kubernetes_namespace.py`` scenario): ``start_clipper``
into a namespace that exists and into one the manager creates, a clear error for a missing namespace it
may not create, and two clusters of the same name in two namespaces serving the same application name
in isolation (stopping one leaves the other serving)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from . import e2e

# Two whole clusters, two model images built and imported into the node: 184 to 341 s on the
# 2-core machine beside the rest of ./test.sh, past pytest-timeout's default of 300 s.
pytestmark = [pytest.mark.kubernetes, pytest.mark.slow, pytest.mark.timeout(600)]

CLUSTER = "iso"
APP = "app"
X = [1.0, 2.0]


def answer_a(xs):
    return ["a" + str(sum(x)) for x in xs]


def answer_b(xs):
    return ["b" + str(sum(x)) for x in xs]


def test_two_clusters_of_one_name_in_two_namespaces_are_isolated():
    from clipper_admin import ClipperConnection, ClipperException
    from clipper_admin.deployers.python import deploy_python_closure
    from clipper_admin.kubernetes.api import KubeApi

    api = e2e.api_client()
    existing, created = e2e.unique("clipper-e2e-ns-a"), e2e.unique("clipper-e2e-ns-b")
    kube = KubeApi(api)
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": existing}})
    try:
        # a namespace that does not exist, without create_namespace_if_not_exists: a clear error
        refused = ClipperConnection(e2e.manager(api, CLUSTER, created, create_namespace_if_not_exists=False))
        with pytest.raises(ClipperException, match=created):
            refused.start_clipper()
        assert kube.get("Namespace", created) is None

        a = ClipperConnection(e2e.manager(api, CLUSTER, existing, create_namespace_if_not_exists=False))
        b = ClipperConnection(e2e.manager(api, CLUSTER, created))

        def start_and_deploy(conn, model, func):
            conn.start_clipper()
            conn.register_application(APP, "doubles", "-1", 2_000_000)
            deploy_python_closure(conn, name=model, version="1", input_type="doubles", func=func)
            conn.link_model_to_app(APP, model)

        # both at once (they share nothing, and it halves the test's time)
        with ThreadPoolExecutor(2) as pool:
            jobs = [
                pool.submit(start_and_deploy, a, "model-a", answer_a),
                pool.submit(start_and_deploy, b, "model-b", answer_b),
            ]
            for job in jobs:
                job.result()
        qa, qb = a.get_query_addr(), b.get_query_addr()
        assert qa != qb
        e2e.wait_for(lambda: e2e.output(qa, APP, X) == "a3.0", what="cluster a answering")
        e2e.wait_for(lambda: e2e.output(qb, APP, X) == "b3.0", what="cluster b answering")
        assert [m.split(":")[0] for m in a.get_all_models()] == ["model-a"]
        assert [m.split(":")[0] for m in b.get_all_models()] == ["model-b"]
        assert {r["model_name"] for r in a.get_all_model_replicas(verbose=True)} == {"model-a"}

        # stopping one leaves the other untouched and serving
        a.stop_all()
        e2e.wait_for(lambda: not e2e.namespace_objects(api, existing), what=f"namespace {existing} emptied")
        assert e2e.output(qb, APP, X) == "b3.0"
        assert [m.split(":")[0] for m in b.get_all_models()] == ["model-b"]
        b.stop_all()
        e2e.wait_for(lambda: not e2e.namespace_objects(api, created), what=f"namespace {created} emptied")
    finally:
        for ns in (existing, created):
            e2e.delete_namespace(api, ns)
