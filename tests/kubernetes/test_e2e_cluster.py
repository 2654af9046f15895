"""End-to-end on a real cluster (kind or any kubeconfig). Skipped, with the reason, when none is reachable.

On this project's offline test cluster (docs/kubernetes-test-cluster.md)::

    sudo tests/kubernetes/cluster/up.sh
    KUBECONFIG=/var/lib/clipper-k8s/admin.kubeconfig CLIPPER_K8S_E2E=1 CLIPPER_K8S_CONTEXT=clipper-k8s \
    CLIPPER_K8S_IMAGE_LOADER=containerd:/run/clipper-k8s/containerd.sock pytest -m kubernetes tests/kubernetes -v

Elsewhere:

    [CLIPPER_K8S_E2E=1] [KUBECONFIG=...] [CLIPPER_K8S_CONTEXT=kind-clipper] \
    CLIPPER_REGISTRY=<registry the nodes pull from> pytest -m kubernetes tests/kubernetes -v

Runs by itself when the context is a local cluster (kind-*, k3d-*, minikube...); any other
context needs CLIPPER_K8S_E2E=1 (it creates and deletes a namespace there). The cluster must be able to pull ``$CLIPPER_REGISTRY/{query_frontend,management_frontend,redis,
python311-closure-container}:<version>`` (for kind: ``kind load docker-image`` each of them).
"""

from __future__ import annotations

import os
import uuid

import pytest
import requests

pytestmark = [pytest.mark.kubernetes, pytest.mark.slow]


def _cluster_or_skip():
    from kubernetes import client, config

    from clipper_admin.kubernetes.images import is_local_context

    try:
        _, active = config.list_kube_config_contexts()
        context = os.environ.get("CLIPPER_K8S_CONTEXT") or (active or {}).get("name")
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"no kubeconfig: {e}")
    if os.environ.get("CLIPPER_K8S_E2E") != "1" and not is_local_context(context):
        pytest.skip(
            f"context {context!r} is not a local cluster (kind-, k3d-, minikube...); set CLIPPER_K8S_E2E=1 to use it"
        )

    try:
        cfg = client.Configuration()
        config.load_kube_config(context=os.environ.get("CLIPPER_K8S_CONTEXT"), client_configuration=cfg)
        api = client.ApiClient(cfg)
        client.VersionApi(api).get_code(_request_timeout=5)
    except Exception as e:  # noqa: BLE001 - any failure means: no reachable cluster
        pytest.skip(f"no reachable Kubernetes cluster: {e}")
    return api


@pytest.fixture(scope="module")
def cluster():
    from clipper_admin import __registry__, __version__
    from clipper_admin.kubernetes import KubernetesContainerManager

    api = _cluster_or_skip()
    namespace = f"clipper-e2e-{uuid.uuid4().hex[:6]}"
    cm = KubernetesContainerManager(
        "e2e",
        namespace=namespace,
        create_namespace_if_not_exists=True,
        api_client=api,
        context=os.environ.get("CLIPPER_K8S_CONTEXT"),
        redis_storage=None,
        wait_timeout_s=300,
        service_types={"management": "ClusterIP", "query": "ClusterIP", "metric": "ClusterIP"},
        # An offline cluster cannot pull the default prom/prometheus, and the project's
        # clipper/prometheus rejects the manager's kubernetes_sd_configs: no metrics pod here.
        prometheus_image=None,
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
        from clipper_admin.kubernetes.api import KubeApi

        KubeApi(api).delete("Namespace", namespace)


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
