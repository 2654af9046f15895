"""The manager's own calls on a real cluster (tests/kubernetes/e2e.py says which cluster and how it is
chosen): start_clipper with ClusterIP services reached through the manager's port-forwards, deploying
the same version twice, scaling 1 -> 2 -> 0, stopping."""

from __future__ import annotations

import pytest
import requests

from . import e2e

pytestmark = [pytest.mark.kubernetes, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster():
    from clipper_admin import __registry__, __version__

    api = e2e.api_client()
    namespace = e2e.unique("clipper-e2e")
    cm = e2e.manager(
        api,
        "e2e",
        namespace,
        useInternalIP=False,
        service_types={"management": "ClusterIP", "query": "ClusterIP", "metric": "ClusterIP"},
        prometheus_image=None,  # the original's "no Prometheus" option (test_e2e_metrics runs the default)
    )
    images = (
        f"{__registry__}/query_frontend:{__version__}",
        f"{__registry__}/management_frontend:{__version__}",
    )
    try:
        cm.start_clipper(images[0], images[1], None, 1 << 20, 1, 5, 300, 1)
        yield cm
    finally:
        cm.stop_all()
        e2e.delete_namespace(api, namespace)


def test_frontends_answer_through_the_managers_port_forward(cluster):
    assert requests.get(f"http://{cluster.get_admin_addr()}/admin/ping", timeout=10).status_code == 200
    assert requests.get(f"http://{cluster.get_query_addr()}/health", timeout=10).status_code == 200


def test_reapply_and_scale(cluster):
    from clipper_admin import __registry__, __version__

    # a model container that needs no model files (the bare closure image exits: no /model/func.pkl)
    image = f"{__registry__}/noop-container:{__version__}"
    cluster.deploy_model("e2e-model", "1", "doubles", image, num_replicas=1)
    cluster.deploy_model("e2e-model", "1", "doubles", image, num_replicas=1)
    cluster.set_num_replicas("e2e-model", "1", "doubles", image, 2)
    assert cluster.get_num_replicas("e2e-model", "1") == 2
    cluster.set_num_replicas("e2e-model", "1", "doubles", image, 0)
    assert cluster.get_num_replicas("e2e-model", "1") == 0
    cluster.stop_models({"e2e-model": ["1"]})
