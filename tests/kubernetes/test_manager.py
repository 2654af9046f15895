"""KubernetesContainerManager against the strict HTTP double of the API server (real client)."""

from __future__ import annotations

import base64
import http.server
import json
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest
import requests

from clipper_admin.exceptions import ClipperException
from clipper_admin.kubernetes import KubernetesContainerManager
from clipper_admin.kubernetes import names as n

from .conftest import api_client_for

NS = "clipper-test"
IMAGES = ("reg.example.com/clipper/query_frontend:1", "reg.example.com/clipper/management_frontend:1")


def start(cm, replicas=1):
    cm.start_clipper(IMAGES[0], IMAGES[1], None, 1024, 1, 5, 300, replicas)


def kinds(fake, cluster="c1"):
    return sorted(
        (k, name)
        for (k, ns, name), o in fake.objects.items()
        if o["metadata"].get("labels", {}).get(n.CLUSTER_LABEL) == cluster and k != "Pod"
    )


def versions(fake):
    return {key: o["metadata"].get("resourceVersion") for key, o in fake.objects.items()}


def test_start_clipper_creates_the_cluster_with_server_side_apply(make_manager, fake_k8s):
    cm = make_manager(useInternalIP=True)
    start(cm, replicas=2)
    fake = fake_k8s.fake
    assert kinds(fake) == sorted(
        [
            ("ConfigMap", "prometheus-config-at-c1"),
            ("Deployment", "metrics-at-c1"),
            ("Deployment", "mgmt-frontend-at-c1"),
            ("Deployment", "query-frontend-0-at-c1"),
            ("Deployment", "query-frontend-1-at-c1"),
            ("Deployment", "redis-at-c1"),
            ("PersistentVolumeClaim", "redis-data-at-c1"),
            ("Role", "c1-prometheus"),
            ("RoleBinding", "c1-prometheus"),
            ("Secret", "admin-token-at-c1"),
            ("Secret", "rpc-keys-at-c1"),
            ("Service", "metrics-at-c1"),
            ("Service", "mgmt-frontend-at-c1"),
            ("Service", "query-frontend-0-at-c1"),
            ("Service", "query-frontend-1-at-c1"),
            ("Service", "query-frontend-at-c1"),
            ("Service", "redis-at-c1"),
            ("ServiceAccount", "c1-prometheus"),
        ]
    )
    writes = [r for r in fake.requests if r.method != "GET"]
    assert writes and all(r.content_type == "application/apply-patch+yaml" for r in writes)
    assert all(r.query["fieldManager"] == ["clipper"] for r in writes)
    assert ("Namespace", None, NS) in fake.objects  # created: create_namespace_if_not_exists
    assert cm.num_frontend_replicas == 2
    node_port = fake.get("Service", NS, "mgmt-frontend-at-c1")["spec"]["ports"][0]["nodePort"]
    assert cm.get_admin_addr() == f"127.0.0.1:{node_port}"
    assert cm.get_query_addr().startswith("127.0.0.1:")
    assert fake.get("Service", NS, "redis-at-c1")["spec"]["type"] == "ClusterIP"
    # the admin token: generated, in a Secret, referenced (never inlined) by the management frontend
    secret = fake.get("Secret", NS, "admin-token-at-c1")
    assert base64.b64decode(secret["data"]["token"]).decode() == cm.admin_token and len(cm.admin_token) == 64
    mgmt = fake.get("Deployment", NS, "mgmt-frontend-at-c1")["spec"]["template"]["spec"]["containers"][0]
    assert cm.admin_token not in json.dumps(mgmt)
    [env] = [e for e in mgmt["env"] if e["name"] == "CLIPPER_ADMIN_TOKEN"]
    assert env["valueFrom"]["secretKeyRef"] == {"name": "admin-token-at-c1", "key": "token"}


def test_reapplying_is_idempotent(make_manager, fake_k8s):
    cm = make_manager(useInternalIP=True)
    start(cm)
    cm.deploy_model("m", "1", "doubles", "reg.example.com/m:1", num_replicas=2)
    before = versions(fake_k8s.fake)
    start(cm)
    cm.deploy_model("m", "1", "doubles", "reg.example.com/m:1", num_replicas=2)
    assert versions(fake_k8s.fake) == before


def test_models_deploy_scale_and_stop(make_manager, fake_k8s):
    fake = fake_k8s.fake
    cm = make_manager(useInternalIP=True)
    start(cm, replicas=2)
    cm.deploy_model("m", 1, "doubles", "reg.example.com/m:1", num_replicas=2)
    cm.deploy_model("m", 2, "doubles", "reg.example.com/m:2", num_replicas=1)
    cm.deploy_model("other", 1, "strings", "reg.example.com/o:1")
    assert cm.get_num_replicas("m", "1") == 2
    assert len(fake.list("Pod", NS, "ai.clipper.model_container.label=m_1")) == 4  # 2 per frontend
    dep = fake.get("Deployment", NS, "m-1-deployment-at-1-at-c1")
    assert dep["metadata"]["labels"][n.MODEL_LABEL] == "m_1"

    n_requests = len(fake.requests)
    spec_before = fake.get("Deployment", NS, "m-1-deployment-at-0-at-c1")["spec"]["template"]
    cm.set_num_replicas("m", "1", "doubles", "reg.example.com/m:1", 3)
    patches = [r for r in fake.requests[n_requests:] if r.method == "PATCH"]
    assert [(r.path.rsplit("/", 2)[-2:], r.content_type) for r in patches] == [
        (["m-1-deployment-at-0-at-c1", "scale"], "application/merge-patch+json"),
        (["m-1-deployment-at-1-at-c1", "scale"], "application/merge-patch+json"),
    ]
    assert fake.get("Deployment", NS, "m-1-deployment-at-0-at-c1")["spec"]["template"] == spec_before
    assert cm.get_num_replicas("m", "1") == 3
    cm.set_num_replicas("m", "1", "doubles", "reg.example.com/m:1", 0)  # the original timed out here
    assert cm.get_num_replicas("m", "1") == 0
    assert fake.list("Pod", NS, "ai.clipper.model_container.label=m_1") == []

    cm.stop_models({"m": ["2"]})
    assert fake.get("Deployment", NS, "m-2-deployment-at-0-at-c1") is None
    assert fake.get("Deployment", NS, "m-1-deployment-at-0-at-c1") is not None
    assert cm.get_num_replicas("m", "2") == 0
    cm.stop_all_model_containers()
    assert fake.list("Deployment", NS, "ai.clipper.name=model") == []
    assert fake.get("Deployment", NS, "mgmt-frontend-at-c1") is not None


def test_admin_token_is_kept_across_restarts_and_can_be_turned_off(make_manager, fake_k8s):
    fake = fake_k8s.fake
    cm = make_manager(useInternalIP=True)
    start(cm)
    token = cm.admin_token
    start(make_manager(useInternalIP=True))  # re-applied: clients keep their token
    again = make_manager(useInternalIP=True)
    again.connect()
    assert again.admin_token == token
    with pytest.raises(ClipperException, match="admin_token is empty"):
        make_manager(admin_token="")
    off = make_manager(cluster_name="c3", useInternalIP=True, admin_token=False)
    start(off)
    assert off.admin_token is None and fake.get("Secret", NS, "admin-token-at-c3") is None
    mgmt = fake.get("Deployment", NS, "mgmt-frontend-at-c3")["spec"]["template"]["spec"]["containers"][0]
    assert not [e for e in mgmt.get("env") or [] if e["name"] == "CLIPPER_ADMIN_TOKEN"]


def _container(fake, deployment: str) -> dict:
    return fake.get("Deployment", NS, deployment)["spec"]["template"]["spec"]["containers"][0]


def _keys_ref(container: dict) -> dict | None:
    refs = [
        e["valueFrom"]["secretKeyRef"] for e in container.get("env") or [] if e["name"] == "CLIPPER_RPC_KEYS"
    ]
    return refs[0] if refs else None


def test_rpc_keys_reach_only_the_clusters_pods_and_unauthenticated_replicas_are_opt_in(
    make_manager, fake_k8s
):
    """Issue 12: a Secret holds the cluster's RPC keys, generated once (a re-apply keeps them: running
    replicas hold them); the query frontend references its part, each model pod the replica part."""
    import base64
    import json

    fake = fake_k8s.fake
    cm = make_manager(useInternalIP=True)
    start(cm)
    secret = fake.get("Secret", NS, "rpc-keys-at-c1")
    start(make_manager(useInternalIP=True))
    assert fake.get("Secret", NS, "rpc-keys-at-c1")["data"] == secret["data"]
    parts = {k: json.loads(base64.b64decode(v)) for k, v in secret["data"].items()}
    assert set(parts["frontend"]) == {"server_public", "client_public", "server_secret"}
    assert set(parts["replica"]) == {"server_public", "client_public", "client_secret"}
    query = _container(fake, "query-frontend-0-at-c1")
    assert _keys_ref(query) == {"name": "rpc-keys-at-c1", "key": "frontend"}
    assert query["args"][-2:] == ["--rpc-auth", "curve"]
    later = make_manager(useInternalIP=True)  # another process
    later.connect()
    later.deploy_model("m", "1", "doubles", "reg.example.com/m:1")
    model = _container(fake, n.model_deployment("m", "1", 0, "c1"))
    assert _keys_ref(model) == {"name": "rpc-keys-at-c1", "key": "replica"}

    open_cm = make_manager(cluster_name="c3", useInternalIP=True, allow_unauthenticated_replicas=True)
    start(open_cm)
    assert fake.get("Secret", NS, "rpc-keys-at-c3") is None
    query = _container(fake, "query-frontend-0-at-c3")
    assert _keys_ref(query) is None and query["args"][-2:] == ["--rpc-auth", "none"]
    later = make_manager(cluster_name="c3", useInternalIP=True)  # learns the opt-in from the cluster
    later.connect()
    later.deploy_model("m", "1", "doubles", "reg.example.com/m:1")
    assert _keys_ref(_container(fake, n.model_deployment("m", "1", 0, "c3"))) is None


def test_stop_all_removes_only_this_cluster(make_manager, fake_k8s):
    fake = fake_k8s.fake
    other = make_manager(cluster_name="c2", useInternalIP=True)
    start(other)
    cm = make_manager(useInternalIP=True)
    start(cm)
    cm.deploy_model("m", "1", "doubles", "reg.example.com/m:1")
    cm.stop_all()
    assert kinds(fake, "c1") == []
    assert ("Deployment", "mgmt-frontend-at-c2") in kinds(fake, "c2")
    assert ("Namespace", None, NS) in fake.objects


def test_get_logs_writes_one_file_per_container_of_this_cluster(make_manager, fake_k8s, tmp_path):
    other = make_manager(cluster_name="c2", useInternalIP=True, prometheus_image=None)
    start(other)
    cm = make_manager(useInternalIP=True, prometheus_image=None)
    start(cm)
    paths = cm.get_logs(str(tmp_path / "logs"))
    assert sorted(os.path.basename(p).split("-")[0] for p in paths) == ["mgmt", "query", "redis"]
    for p in paths:
        assert open(p).read().startswith("log of ")
        # pod names are "<role>-at-<cluster>-<random suffix>": the cluster part, not a substring
        assert "-at-c1-" in os.path.basename(p) and "-at-c2-" not in os.path.basename(p)


def test_get_logs_skips_a_pod_whose_log_cannot_be_read(make_manager, fake_k8s, tmp_path):
    """A pod going away between the listing and the read (a real cluster answers 400/404 then) costs
    its own log only."""
    from kubernetes.client.exceptions import ApiException

    cm = make_manager(useInternalIP=True, prometheus_image=None)
    start(cm)
    read = cm.api.pod_log

    def pod_log(name, namespace, container=None):
        if name.startswith("redis-"):
            raise ApiException(status=400, reason="BadRequest")
        return read(name, namespace, container)

    cm.api.pod_log = pod_log
    paths = cm.get_logs(str(tmp_path / "logs"))
    assert sorted(os.path.basename(p).split("-")[0] for p in paths) == ["mgmt", "query"]


def test_connect_from_a_second_process(make_manager, fake_k8s):
    cm = make_manager(useInternalIP=True)
    start(cm, replicas=2)
    cm.deploy_model("m", "1", "doubles", "reg.example.com/m:1", num_replicas=3)
    script = textwrap.dedent(
        f"""
        import json
        from kubernetes.client import ApiClient, Configuration
        from clipper_admin.kubernetes import KubernetesContainerManager
        cfg = Configuration(); cfg.host = {fake_k8s.url!r}
        cm = KubernetesContainerManager("c1", namespace={NS!r}, useInternalIP=True, api_client=ApiClient(cfg))
        cm.connect()
        print(json.dumps({{"frontends": cm.num_frontend_replicas, "replicas": cm.get_num_replicas("m", "1"),
                          "admin": cm.get_admin_addr(), "query": cm.get_query_addr()}}))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {
        "frontends": 2,
        "replicas": 3,
        "admin": cm.get_admin_addr(),
        "query": cm.get_query_addr(),
    }


def test_proxy_addresses_like_the_original(make_manager, fake_k8s):
    start(make_manager())
    cm = KubernetesContainerManager("c1", kubernetes_proxy_addr=f"127.0.0.1:{fake_k8s.port}", namespace=NS)
    cm.connect()
    assert cm.get_admin_addr() == (
        f"127.0.0.1:{fake_k8s.port}/api/v1/namespaces/{NS}/services/mgmt-frontend-at-c1:1338/proxy"
    )


def test_load_balancer_address(make_manager):
    cm = make_manager(service_types={"query": "LoadBalancer"}, useInternalIP=True)
    start(cm)
    assert cm.get_query_addr() == "127.0.0.1:1337"


@pytest.fixture
def in_a_pod(monkeypatch, fake_k8s):
    """No kubeconfig, ``KUBERNETES_SERVICE_HOST`` set: the manager loads the in-cluster configuration
    (here pointing at the API double)."""
    from kubernetes import config as k8s_config
    from kubernetes.config.config_exception import ConfigException

    def no_kubeconfig(**kwargs):
        raise ConfigException("Invalid kube-config file. No configuration found.")

    def in_cluster_config(client_configuration):
        client_configuration.host = fake_k8s.url

    monkeypatch.setattr(k8s_config, "load_kube_config", no_kubeconfig)
    monkeypatch.setattr(k8s_config, "load_incluster_config", in_cluster_config)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")


def test_in_a_pod_auto_access_uses_the_services_cluster_ips(make_manager, fake_k8s, in_a_pod):
    """The controller's case: NodePort Services, no usable node address, no port-forward either."""
    cm = make_manager(api_client=None)
    start(cm)
    assert cm.in_cluster
    fake = fake_k8s.fake
    ips = {name: fake.get("Service", NS, name)["spec"]["clusterIP"] for name in
           ("mgmt-frontend-at-c1", "query-frontend-at-c1", "metrics-at-c1")}  # fmt: skip
    assert cm.get_admin_addr() == f"{ips['mgmt-frontend-at-c1']}:1338"
    assert cm.get_query_addr() == f"{ips['query-frontend-at-c1']}:1337"
    assert cm.get_metric_addr() == f"{ips['metrics-at-c1']}:9090"
    assert [c[:2] for c in cm.readiness_checks] == [(cm.get_query_addr(), cm.get_admin_addr())]
    assert not [r for r in fake.requests if r.path.endswith("/portforward") or "/nodes" in r.path]


def test_outside_a_pod_auto_access_is_unchanged_by_the_environment(make_manager, fake_k8s, monkeypatch):
    """``KUBERNETES_SERVICE_HOST`` alone (a given client or kubeconfig) does not mean in-cluster."""
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    cm = make_manager(useInternalIP=True)
    start(cm)
    node_port = fake_k8s.fake.get("Service", NS, "mgmt-frontend-at-c1")["spec"]["ports"][0]["nodePort"]
    assert not cm.in_cluster and cm.get_admin_addr() == f"127.0.0.1:{node_port}"


def test_cluster_ip_access_on_request(make_manager, fake_k8s):
    cm = make_manager(access="cluster-ip")
    start(cm)
    svc = fake_k8s.fake.get("Service", NS, "query-frontend-at-c1")
    assert cm.get_query_addr() == f"{svc['spec']['clusterIP']}:1337"


class _Pong(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        body = f"PONG {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def pong_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Pong)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_port_forward_when_no_node_address_is_usable(make_manager, fake_k8s, pong_server):
    """Only InternalIP node addresses and useInternalIP=False: the manager forwards itself."""
    fake_k8s.fake.port_targets[("mgmt-frontend-at-c1-", 1338)] = ("127.0.0.1", pong_server)
    cm = make_manager()
    start(cm)
    addr = cm.get_admin_addr()
    node_port = fake_k8s.fake.get("Service", NS, "mgmt-frontend-at-c1")["spec"]["ports"][0]["nodePort"]
    assert addr.startswith("127.0.0.1:") and not addr.endswith(f":{node_port}")
    for _ in range(2):  # each connection gets its own forward
        r = requests.get(f"http://{addr}/admin/ping", timeout=10)
        assert r.status_code == 200 and r.text == "PONG /admin/ping"
    assert any(r.path.endswith("/portforward") for r in fake_k8s.fake.requests)


def test_missing_namespace_is_a_clear_error_on_first_use(fake_k8s):
    cm = KubernetesContainerManager("c1", namespace="nope", api_client=api_client_for(fake_k8s.url))
    assert fake_k8s.fake.requests == []  # constructing a manager talks to no API
    with pytest.raises(ClipperException, match="create_namespace_if_not_exists=True"):
        cm.connect()


def test_unreachable_api_is_a_clear_error_on_first_use():
    from clipper.net import free_port

    api = api_client_for(f"http://127.0.0.1:{free_port()}")
    api.configuration.retries = 0
    cm = KubernetesContainerManager("c1", api_client=api)  # nothing sent yet: no error
    with pytest.raises(ClipperException, match="unreachable"):
        cm.connect()


def test_connect_to_missing_cluster_is_a_clear_error(make_manager):
    with pytest.raises(ClipperException, match="no Clipper cluster named 'c1'"):
        make_manager().connect()


def test_refuses_local_image_on_remote_cluster_without_registry(make_manager, fake_k8s):
    cm = make_manager(useInternalIP=True, local_cluster=False)
    start(cm)
    with pytest.raises(ClipperException, match="cannot pull it: no registry is configured"):
        cm.deploy_model("m", "1", "doubles", f"{cm.cluster_identifier}-m:1")
    assert fake_k8s.fake.get("Deployment", NS, "m-1-deployment-at-0-at-c1") is None
    with pytest.raises(ClipperException, match="without a registry"):
        cm.build_model("m", "1", "/nonexistent", "base:1")
    # with a registry, or on a local cluster, the same image is accepted
    local = make_manager(useInternalIP=True, local_cluster=True)
    local.connect()
    local.deploy_model("m", "1", "doubles", f"{cm.cluster_identifier}-m:1")


def test_bad_constructor_arguments():
    with pytest.raises(ClipperException, match="unknown keys"):
        KubernetesContainerManager(
            "c1", service_types={"web": "NodePort"}, kubernetes_proxy_addr="127.0.0.1:1"
        )
    with pytest.raises(ClipperException, match="access"):
        KubernetesContainerManager("c1", access="ssh")


def test_start_clipper_returns_once_the_frontends_answer_through_the_forward(
    make_manager, fake_k8s, pong_server
):
    """The readiness check runs for real, through the port-forwards clients use (no second wait)."""
    fake = fake_k8s.fake
    cm = make_manager(answering=True, wait_timeout_s=5)
    with pytest.raises(ClipperException, match="still initializing after"):
        start(cm)  # nothing answers behind the pods yet
    fake.port_targets[("mgmt-frontend-at-c1-", 1338)] = ("127.0.0.1", pong_server)
    fake.port_targets[("query-frontend-0-at-c1-", 1337)] = ("127.0.0.1", pong_server)
    cm = make_manager(answering=True)
    start(cm)
    forwarded = " ".join(r.path for r in fake.requests if r.path.endswith("/portforward"))
    assert "/pods/mgmt-frontend-at-c1-" in forwarded and "/pods/query-frontend-0-at-c1-" in forwarded


def test_manager_requests_during_a_port_forward_handshake_stay_plain_requests(
    make_manager, fake_k8s, pong_server
):
    """The client's portforward swaps its ApiClient's call_api for a WebSocket one until the
    handshake ends: the manager's own requests from another thread meanwhile must not be sent as
    port-forwards (CI saw "Missing required parameter `ports`" from a deploy during one)."""
    fake_k8s.fake.port_targets[("mgmt-frontend-at-c1-", 1338)] = ("127.0.0.1", pong_server)
    cm = make_manager()
    start(cm)
    addr = cm.get_admin_addr()
    fake_k8s.fake.portforward_delay = 0.5
    answers: list[str] = []

    def through_the_forward() -> None:
        answers.append(requests.get(f"http://{addr}/admin/ping", timeout=10).text)

    clients = [threading.Thread(target=through_the_forward) for _ in range(3)]
    for t in clients:
        t.start()
    deadline = time.monotonic() + 1.0
    listed = 0
    while time.monotonic() < deadline:  # all along the handshakes
        assert cm.api.get("Service", "mgmt-frontend-at-c1", NS) is not None
        listed += 1
    for t in clients:
        t.join(timeout=15)
    assert answers == ["PONG /admin/ping"] * 3
    assert listed > 3
