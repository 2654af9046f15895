"""A Cluster manifest's ``kubernetes.resources``: validated by the schema, handed to the Kubernetes
manager by the reconciler, carried by every Deployment it creates, and not compared with a running
cluster (it applies when the cluster starts and to model replicas deployed afterwards)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from reconciler.backends import container_manager
from reconciler.desired import DesiredState
from reconciler.observed import RunningSettings
from reconciler.plan import Op, plan_cluster
from schemas.cluster import ClusterSpec

from .conftest import record_readiness_checks
from .e2e import SMALL_REQUESTS
from .memory_api import MemoryKubeApi

NS = "clipper-test"
IMAGES = ("reg.example.com/clipper/query_frontend:1", "reg.example.com/clipper/management_frontend:1")
ROLES = ("redis", "management", "query", "model", "metrics")


def spec(resources: Any) -> ClusterSpec:
    return ClusterSpec.model_validate(
        {"backend": "kubernetes", "kubernetes": {"namespace": NS, "resources": resources}}
    )


@pytest.mark.parametrize(
    "quantities",
    [
        {"cpu": "50m", "memory": "64Mi"},
        {"cpu": "1.5", "memory": "1e9", "ephemeral-storage": "2Gi"},
        {"cpu": 2, "nvidia.com/gpu": 1, "hugepages-2Mi": "128Mi"},
        {"cpu": ".5", "memory": "128M"},
    ],
)
def test_good_quantities_are_accepted(quantities):
    s = spec({"query": {"requests": quantities, "limits": quantities}})
    assert s.kubernetes is not None and s.kubernetes.resources is not None
    assert s.kubernetes.resources.query is not None
    assert s.kubernetes.resources.query.requests == quantities


@pytest.mark.parametrize(
    "resources, fragment",
    [
        ({"query": {"requests": {"cpu": "50 m"}}}, "should match pattern"),
        ({"query": {"requests": {"cpu": "-1"}}}, "should match pattern"),
        ({"query": {"requests": {"memory": "64MB"}}}, "should match pattern"),
        ({"query": {"limits": {"memory": "lots"}}}, "should match pattern"),
        ({"query": {"limits": {"cpu": -1}}}, "greater than or equal to 0"),
        ({"query": {"requests": {"CPU!": "1"}}}, "'CPU!' is not a resource name"),
        ({"query": {"requests": {"/gpu": "1"}}}, "'/gpu' is not a resource name"),
        ({"frontend": {"requests": {"cpu": "1"}}}, "frontend\n  Extra inputs are not permitted"),
        ({"query": {"request": {"cpu": "1"}}}, "request\n  Extra inputs are not permitted"),
    ],
)
def test_bad_resources_are_refused(resources, fragment):
    with pytest.raises(ValidationError, match=fragment):
        spec(resources)


def test_the_e2e_requests_match_the_schema():
    s = spec(SMALL_REQUESTS)
    assert s.kubernetes is not None and s.kubernetes.resources is not None
    assert s.kubernetes.resources.model_dump(exclude_none=True) == SMALL_REQUESTS


def manager(api: MemoryKubeApi, resources: Any) -> Any:
    desired = DesiredState(
        "c1",
        ClusterSpec.model_validate(
            {
                "backend": "kubernetes",
                "registry": "reg.example.com/clipper",
                "kubernetes": {
                    "namespace": NS,
                    "createNamespace": True,
                    "useInternalIp": True,
                    "resources": resources,
                },
            }
        ),
        {},
        {},
    )
    cm = container_manager(desired)  # constructing talks to no API
    cm._api = api  # the in-memory API instead of a kubeconfig's cluster
    cm.poll_interval_s = 0.01
    record_readiness_checks(cm)
    return cm


def container_resources(api: MemoryKubeApi) -> dict[str, dict[str, Any]]:
    """The first container's ``resources`` of each Deployment, by its role label."""
    return {
        d["metadata"]["labels"]["ai.clipper.name"]: d["spec"]["template"]["spec"]["containers"][0][
            "resources"
        ]
        for d in api.list("Deployment", NS)
    }


@pytest.fixture
def api(tmp_path, monkeypatch):
    monkeypatch.setenv("CLIPPER_HOME", str(tmp_path))
    api = MemoryKubeApi()
    api.add_node("node-1", "10.0.0.1")
    return api


def test_every_deployment_carries_the_manifests_requests(api):
    cm = manager(api, SMALL_REQUESTS)
    cm.start_clipper(IMAGES[0], IMAGES[1], None, 1024, 1, 5, 300, 1)
    cm.set_num_replicas("m", "1", "doubles", "reg.example.com/clipper/c1-m:1", 1)
    small = {"requests": {"cpu": "50m", "memory": "64Mi"}}
    assert container_resources(api) == {
        "redis": small,
        "mgmt-frontend": small,
        "query-frontend": small,
        "metrics": small,
        "model": small,
    }


def test_a_role_left_out_keeps_the_managers_default(api):
    from clipper_admin.kubernetes.settings import DEFAULT_RESOURCES

    cm = manager(api, {"query": {"limits": {"memory": "1Gi"}, "requests": {"cpu": 2}}})
    cm.start_clipper(IMAGES[0], IMAGES[1], None, 1024, 1, 5, 300, 1)
    found = container_resources(api)
    assert found["query-frontend"] == {"limits": {"memory": "1Gi"}, "requests": {"cpu": "2"}}
    assert found["mgmt-frontend"] == DEFAULT_RESOURCES["management"]
    assert found["redis"] == DEFAULT_RESOURCES["redis"]


def test_resources_are_not_compared_with_a_running_cluster(api):
    """The documented choice: a running cluster's pods are not resized, and the plan says nothing."""
    cm = manager(api, SMALL_REQUESTS)
    cm.start_clipper(IMAGES[0], IMAGES[1], None, 1024, 1, 5, 300, 1)
    running = cm.running_settings()
    assert not any(k.startswith("kubernetes.resources") for k in running)
    settings = RunningSettings(running, cm.RECONFIGURABLE)
    bigger = {role: {"requests": {"cpu": "1", "memory": "1Gi"}} for role in ROLES}
    action, warning = plan_cluster(
        "c1",
        ClusterSpec.model_validate(
            {"backend": "kubernetes", "cacheSizeBytes": 1024, "kubernetes": {"resources": bigger}}
        ),
        settings,
    )
    assert (action.op, action.changes, warning) == (Op.NOOP, (), None)


def test_the_e2e_controllers_cluster_resource_asks_for_the_small_requests():
    """The Cluster custom resource of test_e2e_controller.py is a valid manifest with SMALL_REQUESTS
    (checked here, without the real cluster that test needs)."""
    from ruamel.yaml import YAML

    from schemas.cluster import Cluster

    from .test_e2e_controller import CLUSTER_CR

    cr = Cluster.model_validate(YAML(typ="safe").load(CLUSTER_CR))
    assert cr.spec.kubernetes is not None and cr.spec.kubernetes.resources is not None
    assert cr.spec.kubernetes.resources.model_dump(exclude_none=True) == SMALL_REQUESTS
