"""Every object the manager sends validates against the official OpenAPI schemas of two
Kubernetes minor versions (strict: unknown fields are errors)."""

from __future__ import annotations

import subprocess
import time

import kubernetes_validate
import pytest
import yaml

from clipper.rpc.auth import RpcKeys
from clipper_admin.exceptions import ClipperException
from clipper_admin.kubernetes import names as n
from clipper_admin.kubernetes import objects as o
from clipper_admin.kubernetes import prometheus_targets
from clipper_admin.kubernetes.settings import ObjectSettings, determine_resources, determine_service_types

from .conftest import SCHEMA_VERSIONS


def all_objects(s: ObjectSettings) -> list[dict]:
    return [
        o.namespace(s.namespace),
        o.redis_pvc(s),
        o.redis_deployment(s, "reg/redis:1"),
        o.redis_service(s),
        o.admin_token_secret(s, "t0ken"),
        o.mgmt_deployment(s, "reg/management_frontend:1", "redis-at-c1", 6379, n.admin_token(s.cluster)),
        o.mgmt_service(s),
        *[
            o.query_deployment(s, i, "reg/query_frontend:1", "redis-at-c1", 6379, 1024, 1, 5, 300)
            for i in range(2)
        ],
        o.rpc_keys_secret(s, RpcKeys.generate()),
        o.query_deployment(
            s, 2, "reg/query_frontend:1", "redis-at-c1", 6379, 1024, 1, 5, 300, n.rpc_keys(s.cluster)
        ),
        *[o.query_rpc_service(s, i) for i in range(2)],
        o.query_service(s),
        o.model_deployment(s, "m", "1", 0, "doubles", "reg/m:1", 3),
        o.model_deployment(s, "k", "1", 0, "doubles", "reg/k:1", 1, n.rpc_keys(s.cluster)),
        o.prometheus_service_account(s),
        o.prometheus_role(s),
        o.prometheus_role_binding(s),
        o.prometheus_configmap(s),
        o.prometheus_deployment(s, "reg/prometheus:1", "reg/management_frontend:1"),
        o.prometheus_service(s),
    ]


SETTINGS = [
    ObjectSettings(cluster="c1", namespace="ns1"),
    ObjectSettings(
        cluster="c1",
        namespace="ns1",
        service_types=determine_service_types({"query": "LoadBalancer", "redis": "NodePort"}),
        resources=determine_resources({"model": {"requests": {"cpu": 1, "nvidia.com/gpu": 1}}}),
        redis_storage=None,
    ),
]


@pytest.mark.parametrize("version", SCHEMA_VERSIONS)
@pytest.mark.parametrize("settings", SETTINGS)
def test_every_object_validates(version, settings):
    for obj in all_objects(settings):
        assert kubernetes_validate.validate(obj, version, strict=True) == version, obj["metadata"]["name"]


def test_schema_validation_is_strict():
    bad = o.mgmt_service(SETTINGS[0])
    bad["spec"]["portz"] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, SCHEMA_VERSIONS[0], strict=True)


def test_current_api_versions_only():
    versions = {obj["apiVersion"] for obj in all_objects(SETTINGS[0])}
    assert versions == {"v1", "apps/v1", "rbac.authorization.k8s.io/v1"}


def test_deployments_are_hardened_and_probed():
    for obj in all_objects(SETTINGS[0]):
        if obj["kind"] != "Deployment":
            continue
        pod = obj["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert (
            obj["spec"]["selector"]["matchLabels"].items()
            <= obj["spec"]["template"]["metadata"]["labels"].items()
        )
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert sc["runAsNonRoot"] and sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"]
            assert c["resources"]["requests"]
        role = obj["metadata"]["labels"][n.NAME_LABEL]
        if role in ("mgmt-frontend", "query-frontend"):
            (c,) = pod["containers"]
            assert c["readinessProbe"]["httpGet"]["path"] == "/health"
            assert c["livenessProbe"]["httpGet"]["path"] == "/health"


def test_original_names_and_labels():
    s = SETTINGS[0]
    dep = o.model_deployment(s, "m", "2", 1, "doubles", "img", 2)
    assert dep["metadata"]["name"] == "m-2-deployment-at-1-at-c1"
    labels = dep["metadata"]["labels"]
    assert labels[n.CLUSTER_LABEL] == "c1"
    assert labels[n.MODEL_LABEL] == "m_2"
    assert labels[n.NAME_LABEL] == "model"
    env = {e["name"]: e["value"] for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["CLIPPER_IP"] == "query-frontend-1-at-c1"
    assert env["CLIPPER_PORT"] == "7000" and env["CLIPPER_INPUT_TYPE"] == "doubles"
    q = o.query_deployment(s, 1, "img", "redis-at-c1", 6379, 10, 1, 5, 300)
    args = q["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[:2] == ["--store", "redis://redis-at-c1:6379"]
    assert o.query_rpc_service(s, 1)["spec"]["selector"][n.QUERY_FRONTEND_ID_LABEL] == "1"
    assert o.prometheus_service(s)["spec"]["selector"][n.CLUSTER_LABEL] == "c1"


def test_model_pods_serve_metrics_on_the_port_prometheus_scrapes():
    """The container serves metrics only when ``CLIPPER_METRICS_PORT`` is set (a real cluster showed
    the model targets down: the pod declared and annotated 1390, the container listened nowhere)."""
    dep = o.model_deployment(SETTINGS[0], "m", "1", 0, "doubles", "reg/m:1", 1)
    template = dep["spec"]["template"]
    (container,) = template["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    (port,) = [p["containerPort"] for p in container["ports"] if p["name"] == "metrics"]
    assert (
        env["CLIPPER_METRICS_PORT"] == str(port) == template["metadata"]["annotations"]["prometheus.io/port"]
    )


def test_prometheus_reads_the_sidecars_targets_file_not_kubernetes_sd():
    """The project's Prometheus (Debian's build) rejects ``kubernetes_sd_configs``: the config uses
    file discovery only, and the sidecar writing that file lists this cluster's pods in its namespace."""
    s = SETTINGS[0]
    cfg = yaml.safe_load(o.prometheus_configmap(s)["data"]["prometheus.yml"])
    (job,) = cfg["scrape_configs"]
    assert set(job) == {"job_name", "file_sd_configs"}
    assert job["file_sd_configs"][0]["files"] == ["/prometheus-targets/pods.json"]
    dep = o.prometheus_deployment(s, "reg/prometheus:1", "reg/management_frontend:1")
    pod = dep["spec"]["template"]["spec"]
    prom, sidecar = pod["containers"]
    assert prom["image"] == "reg/prometheus:1" and sidecar["image"] == "reg/management_frontend:1"
    assert sidecar["command"][:3] == ["python", "-m", prometheus_targets.__name__]
    flags = sidecar["command"][3:]
    assert flags[flags.index("--namespace") + 1] == "ns1" and flags[flags.index("--cluster") + 1] == "c1"
    mounts = {c["name"]: {m["name"]: m for m in c["volumeMounts"]} for c in (prom, sidecar)}
    assert mounts["metrics"]["targets"]["readOnly"] and not mounts["targets"]["targets"].get("readOnly")
    assert {"name": "targets", "emptyDir": {}} in pod["volumes"]
    assert pod["serviceAccountName"] == n.prometheus_rbac("c1") and pod["automountServiceAccountToken"]
    # least privilege: reading pods is all the sidecar does
    assert o.prometheus_role(s)["rules"] == [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}
    ]


@pytest.mark.parametrize(
    "bad",
    [["NodePort"], {"bogus": "NodePort"}, {"query": "ExternalName"}, {"query": "Nodeport"}],
)
def test_service_types_rejected(bad):
    with pytest.raises(ClipperException):
        determine_service_types(bad)


def test_resources_rejected():
    with pytest.raises(ClipperException, match="unknown role"):
        determine_resources({"gpu": {}})
    with pytest.raises(ClipperException):
        determine_resources({"model": {"requestz": {}}})


def test_model_pods_have_a_liveness_probe_on_the_watchdog_file():
    dep = o.model_deployment(SETTINGS[0], "m", "1", 0, "doubles", "img", 1)
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["CLIPPER_LIVENESS_FILE"] == o.MODEL_LIVENESS_FILE
    assert env["CLIPPER_LIVENESS_FILE"].startswith("/tmp/")  # the writable emptyDir
    assert c["livenessProbe"]["exec"]["command"] == ["sh", "-c", o.MODEL_LIVENESS_CHECK]


@pytest.mark.parametrize(
    "content, alive",
    [
        (None, True),  # starting up, or an original container that writes no file
        ("{future}\n", True),  # what the container's watchdog keeps writing
        ("{past}\n", False),  # the deadline passed: the model holds the interpreter
    ],
)
def test_the_model_liveness_check_itself(tmp_path, content, alive):
    path = tmp_path / "clipper-alive"
    if content is not None:
        now = int(time.time())
        path.write_text(content.format(future=now + 60, past=now - 60))
    check = o.MODEL_LIVENESS_CHECK.replace(o.MODEL_LIVENESS_FILE, str(path))
    assert (subprocess.run(["sh", "-c", check], timeout=10).returncode == 0) is alive
