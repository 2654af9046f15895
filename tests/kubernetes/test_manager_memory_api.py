"""KubernetesContainerManager's own logic on an in-memory API facade (``api=``): no HTTP server.

What goes over the wire (server-side apply, merge patches, schemas) is tested against the strict
HTTP double in ``test_manager.py``.
"""

from __future__ import annotations

import pytest

from clipper_admin.exceptions import ClipperException
from clipper_admin.kubernetes import KubernetesContainerManager
from clipper_admin.launch import Timeouts

from .conftest import record_readiness_checks
from .memory_api import MemoryKubeApi

NS = "clipper-test"
IMAGES = ("reg.example.com/clipper/query_frontend:1", "reg.example.com/clipper/management_frontend:1")


@pytest.fixture
def api():
    api = MemoryKubeApi()
    api.add_node("node-1", "10.0.0.1")
    return api


def manager(api, **kwargs):
    kwargs.setdefault("namespace", NS)
    kwargs.setdefault("create_namespace_if_not_exists", True)
    kwargs.setdefault("useInternalIP", True)
    kwargs.setdefault("poll_interval_s", 0.01)
    kwargs.setdefault("local_cluster", False)
    cm = KubernetesContainerManager("c1", api=api, **kwargs)
    record_readiness_checks(cm)
    return cm


def start(cm, replicas=1):
    cm.start_clipper(IMAGES[0], IMAGES[1], None, 1024, 1, 5, 300, replicas)


def test_constructing_calls_nothing_and_the_first_use_checks_the_namespace(api):
    cm = manager(api, create_namespace_if_not_exists=False)
    assert api.calls == []
    with pytest.raises(ClipperException, match="Namespace .* does not exist"):
        cm.connect()
    assert api.calls == [("get", "Namespace", NS)]


def test_start_and_connect_find_the_cluster_through_its_services(api):
    cm = manager(api)
    start(cm, replicas=2)
    assert cm.get_admin_addr().startswith("10.0.0.1:") and cm.admin_token
    other = manager(api)  # another process
    other.connect()
    assert other.num_frontend_replicas == 2 and other.admin_token == cm.admin_token


def test_set_num_replicas_starts_only_images_built_for_this_cluster(api):
    """``ClipperConnection.set_num_replicas`` passes the image the management API recorded: a new
    Deployment starts only from this cluster's own tag; ``deploy_model`` keeps the original's
    prebuilt images."""
    cm = manager(api, registry="reg.example.com/clipper")
    start(cm)
    with pytest.raises(ClipperException, match="Refusing to start image 'reg.example.com/evil:1'"):
        cm.set_num_replicas("m", "1", "doubles", "reg.example.com/evil:1", 1)
    assert api.get("Deployment", "m-1-deployment-at-0-at-c1", NS) is None
    cm.set_num_replicas("m", "1", "doubles", "reg.example.com/clipper/c1-m:1", 1)
    assert api.get("Deployment", "m-1-deployment-at-0-at-c1", NS) is not None
    cm.deploy_model("p", "1", "doubles", "reg.example.com/prebuilt:1")
    assert api.get("Deployment", "p-1-deployment-at-0-at-c1", NS) is not None


def test_scaling_patches_the_scale_only(api):
    cm = manager(api)
    start(cm)
    cm.deploy_model("m", "1", "doubles", "reg.example.com/m:1", num_replicas=2)
    before = api.get("Deployment", "m-1-deployment-at-0-at-c1", NS)["spec"]["template"]
    n_calls = len(api.calls)
    cm.set_num_replicas("m", "1", "doubles", "reg.example.com/m:1", 3)
    assert ("patch_scale", "Deployment", "m-1-deployment-at-0-at-c1") in api.calls[n_calls:]
    assert not [c for c in api.calls[n_calls:] if c[0] == "apply"]
    assert api.get("Deployment", "m-1-deployment-at-0-at-c1", NS)["spec"]["template"] == before
    assert cm.get_num_replicas("m", "1") == 3
    cm.stop_models({"m": ["1"]})
    assert cm.get_num_replicas("m", "1") == 0


def test_deploy_times_out_with_the_original_message_after_the_replica_timeout(api):
    api.stuck.add("m-1-deployment-at-0-at-c1")
    cm = manager(api, timeouts=Timeouts(frontend_start_s=30, replica_connect_s=0.2))
    start(cm)
    with pytest.raises(
        ClipperException, match=r"Could not create a Kubernetes deployment. Model: m-1.*after 0 s"
    ):
        cm.deploy_model("m", "1", "doubles", "reg.example.com/m:1")


def test_running_settings_are_read_back_and_a_change_is_refused(api):
    from reconciler.observed import RunningSettings
    from reconciler.plan import Op, plan_cluster
    from schemas.cluster import ClusterSpec

    cm = manager(api, prometheus_image=None)
    start(cm, replicas=2)
    running = cm.running_settings()
    assert running == {
        "backend": "kubernetes",
        "frontend_replicas": 2,
        "admin_auth": "token",
        "admin_token": cm.admin_token,
        "allow_unauthenticated_replicas": False,
        "cache_size_bytes": 1024,
        "redis.host": None,
        "redis.port": 6379,
        "kubernetes.service_types.management": "NodePort",
        "kubernetes.service_types.query": "NodePort",
    }
    settings = RunningSettings(running, cm.RECONFIGURABLE)

    def plan(**fields):
        return plan_cluster("c1", ClusterSpec(backend="kubernetes", **fields), settings)[0]

    same = plan(cache_size_bytes=1024, frontend_replicas=2)
    assert same.op == Op.NOOP, same
    for fields, label in [
        ({"cache_size_bytes": 2048, "frontend_replicas": 2}, "cacheSizeBytes"),
        ({"cache_size_bytes": 1024, "frontend_replicas": 1}, "frontendReplicas"),
        ({"cache_size_bytes": 1024, "frontend_replicas": 2, "admin_auth": "none"}, "adminAuth"),
        ({"cache_size_bytes": 1024, "frontend_replicas": 2, "redis": {"host": "r.example"}}, "redis.host"),
        (
            {
                "cache_size_bytes": 1024,
                "frontend_replicas": 2,
                "kubernetes": {"serviceTypes": {"query": "LoadBalancer"}},
            },
            "kubernetes.serviceTypes.query",
        ),
    ]:
        action = plan(**fields)
        assert action.op == Op.CONFLICT, (fields, action)
        assert [c.field for c in action.changes] == [label]
        assert action.reason == (
            f"{label} cannot be changed on a running kubernetes cluster: delete the cluster and apply again"
        )


def test_frontends_are_waited_for_once_at_the_clients_addresses(api):
    """The manager checks readiness where the client will talk to the frontends, within its start
    timeout; ``ClipperConnection.start_clipper`` then does not wait a second time."""
    from clipper_admin import ClipperConnection

    cm = manager(api, timeouts=Timeouts(45.0, 60.0))
    conn = ClipperConnection(cm)
    conn.start_clipper(IMAGES[0], IMAGES[1], None, 1024, 1, 5, 300, 1)
    assert conn.connected
    [(query_addr, admin_addr, headers, timeout)] = cm.readiness_checks
    assert (query_addr, admin_addr) == (cm.get_query_addr(), cm.get_admin_addr())
    assert headers == {"Authorization": f"Bearer {cm.admin_token}"} and cm.admin_token
    assert 1.0 <= timeout <= 45.0


def test_cluster_ip_access_never_lists_nodes_nor_forwards(api):
    cm = manager(api, access="cluster-ip")
    start(cm)
    svc = api.get("Service", "mgmt-frontend-at-c1", NS)
    assert cm.get_admin_addr() == f"{svc['spec']['clusterIP']}:1338"
    assert ("list", "Node", None) not in api.calls and not cm._forwarders


def test_cluster_ip_access_to_a_headless_service_is_a_clear_error(api):
    cm = manager(api, access="cluster-ip")
    start(cm)
    api.objects[("Service", NS, "query-frontend-at-c1")]["spec"]["clusterIP"] = "None"
    cm._addresses.clear()
    with pytest.raises(ClipperException, match="has no ClusterIP .*access='auto'"):
        cm.get_query_addr()
