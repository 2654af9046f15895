"""deploy/ (the controller's kustomization): the manifests parse and validate against the Kubernetes
schemas, refer to each other consistently, and the Role grants exactly what the controller and the
Kubernetes container manager send -- derived from the requests they make on API doubles, not listed
by hand."""

from __future__ import annotations

import http.server
import json
import re
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import kubernetes_validate
import pytest
from ruamel.yaml import YAML

from clipper import __version__
from clipper_admin.kubernetes import KubernetesContainerManager
from reconciler.cli import build_parser

from .conftest import SCHEMA_VERSIONS, api_client_for, record_readiness_checks
from .fake_apiserver import FakeKubernetes

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
NS = "ns1"
CONTROLLER = "clipper-controller"

#: granted although neither sends them: a Role may grant only what its creator holds, and the manager
#: creates Prometheus' Role with get/list/watch on pods
GRANTED_TO_DELEGATE = {("", "pods", "get"), ("", "pods", "watch")}


def load_all(path: Path) -> list[dict[str, Any]]:
    return [d for d in YAML(typ="safe", pure=True).load_all(path.read_text()) if d]


def kustomization() -> dict[str, Any]:
    [k] = load_all(DEPLOY / "kustomization.yaml")
    return k


def manifests() -> list[dict[str, Any]]:
    return [obj for res in kustomization()["resources"] for obj in load_all(DEPLOY / res)]


def one(kind: str) -> dict[str, Any]:
    [obj] = [o for o in manifests() if o["kind"] == kind]
    return obj


# --- the manifests ------------------------------------------------------------------------------


def test_the_kustomization_lists_every_crd_and_leaves_the_namespace_to_the_user():
    k = kustomization()
    crds = sorted(f"crds/{p.name}" for p in (DEPLOY / "crds").glob("*.yaml"))
    assert len(crds) == 3
    assert sorted(r for r in k["resources"] if r.startswith("crds/")) == crds
    assert set(k["resources"]) - set(crds) == {"rbac.yaml", "deployment.yaml"}
    assert "namespace" not in k
    assert all("namespace" not in o["metadata"] for o in manifests())
    # the example overlay sets one and builds on deploy/
    [overlay] = load_all(REPO / "examples" / "controller-install" / "kustomization.yaml")
    assert overlay["namespace"] and overlay["resources"] == ["../../deploy"]


@pytest.mark.parametrize("version", SCHEMA_VERSIONS)
def test_every_manifest_is_valid_kubernetes(version):
    for obj in manifests():
        assert kubernetes_validate.validate(obj, version, strict=True) == version, obj["metadata"]["name"]


def test_the_manifests_refer_to_each_other():
    sa, role, binding, dep = (one(k) for k in ("ServiceAccount", "Role", "RoleBinding", "Deployment"))
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"]}]
    pod = dep["spec"]["template"]
    assert pod["spec"]["serviceAccountName"] == sa["metadata"]["name"] == "clipper-controller"
    selector = dep["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod["metadata"]["labels"].items()
    for obj in (sa, role, binding, dep):
        assert obj["metadata"]["labels"]["app.kubernetes.io/name"] == "clipper-controller"
    # the CRDs are the group and kinds the Role names
    crds = [o for o in manifests() if o["kind"] == "CustomResourceDefinition"]
    plurals = {c["spec"]["names"]["plural"] for c in crds}
    assert {c["spec"]["group"] for c in crds} == {"clipper.ai"} and plurals == {
        "clusters",
        "models",
        "applications",
    }
    granted = {(g, r) for g, r, _ in granted_by(role)}
    assert {("clipper.ai", p) for p in plurals} <= granted


def test_the_controller_pod_runs_this_version_unprivileged_with_probes():
    dep = one("Deployment")
    assert dep["spec"]["replicas"] == 1
    pod = dep["spec"]["template"]["spec"]
    [c] = pod["containers"]
    # the image images/build.sh builds for this version; :latest would be pulled Always
    assert c["image"] == f"clipper/controller:{__version__}" and c["imagePullPolicy"] == "IfNotPresent"
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in c["env"]}
    assert env == {"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"}
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == 10001
    sc = c["securityContext"]
    assert (
        sc["readOnlyRootFilesystem"]
        and not sc["allowPrivilegeEscalation"]
        and sc["capabilities"]["drop"] == ["ALL"]
    )
    # what it writes: temporary files and the reconciler's directory under $HOME (the image's user's)
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert set(mounts) == {"/tmp", "/home/clipper"}
    assert {v["name"] for v in pod["volumes"] if "emptyDir" in v} == set(mounts.values())
    # the probes reach the health port it is told to listen on (the CLI's default, stated anyway)
    [port] = c["ports"]
    defaults = build_parser().parse_args(["controller"])
    assert (
        c["args"][c["args"].index("--health-port") + 1]
        == str(port["containerPort"])
        == str(defaults.health_port)
    )
    # the Lease and the ServiceAccount share the name the docs and the Role's comments use
    assert defaults.lease_name == CONTROLLER == pod["serviceAccountName"]
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port["name"]}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port["name"]}
    # small: the test node has 2 CPUs for the controller and the Clipper cluster it starts
    assert c["resources"]["requests"] == {"cpu": "50m", "memory": "128Mi"}


# --- RBAC: what is sent, mapped to authorization attributes -------------------------------------

Attr = tuple[str, str, str]  # apiGroup, resource[/subresource], verb

PATH_RE = re.compile(
    r"^/(?:api/v1|apis/(?P<group>[^/]+)/[^/]+)(?:/namespaces/(?P<ns>[^/]+))?"
    r"(?:/(?P<plural>[^/]+)(?:/(?P<name>[^/]+)(?:/(?P<sub>[^/]+))?)?)?$"
)


def attributes(method: str, path: str, query: dict[str, list[str]], content_type: str | None) -> set[Attr]:
    """How the API server authorizes a request (RBAC's request attributes)."""
    m = PATH_RE.match(path)
    assert m, path
    group = m["group"] or ""
    if m["plural"] is None:  # /api/v1/namespaces/NAME: the namespace itself
        resource, name = "namespaces", m["ns"]
    else:
        resource, name = m["plural"] + (f"/{m['sub']}" if m["sub"] else ""), m["name"]
    if method == "GET":
        verb = "get" if name else ("watch" if query.get("watch") == ["true"] else "list")
    else:
        verb = {
            "POST": "create",
            "PUT": "update",
            "PATCH": "patch",
            "DELETE": "delete" if name else "deletecollection",
        }[method]
    attrs = {(group, resource, verb)}
    if content_type == "application/apply-patch+yaml":
        attrs.add(
            (group, resource, "create")
        )  # a server-side apply that creates is also authorized as create
    return attrs


def granted_by(role: dict[str, Any]) -> set[Attr]:
    out = set()
    for rule in role["rules"]:
        assert "resourceNames" not in rule and "*" not in str(rule), rule  # kept simple to check
        for g in rule["apiGroups"]:
            for r in rule["resources"]:
                out |= {(g, r, v) for v in rule["verbs"]}
    return out


def manager_requests() -> set[Attr]:
    """Everything the controller makes the Kubernetes manager do: start a cluster (with Prometheus),
    read it back, deploy, scale and stop models, read logs, stop it all -- as the controller's pod does
    (the Services' ClusterIPs, its own namespace, which exists)."""
    fake = FakeKubernetes(schema_version=SCHEMA_VERSIONS[-1])
    fake._put_namespace(NS)
    with fake.serve() as server:
        cm = KubernetesContainerManager("c1", namespace=NS, api_client=api_client_for(server.url),
                                        access="cluster-ip", poll_interval_s=0.05, wait_timeout_s=30)  # fmt: skip
        record_readiness_checks(cm)
        cm.start_clipper("reg/q:1", "reg/m:1", None, 1024, 1, 5, 300, 1)
        cm.connect()
        cm.running_settings()
        cm.deploy_model("m", "1", "doubles", "reg/m:1", 1)
        cm.set_num_replicas("m", "1", "doubles", "reg/m:1", 2)
        cm.get_num_replicas("m", "1")
        with tempfile.TemporaryDirectory() as d:
            assert cm.get_logs(d)
        cm.stop_models({"m": ["1"]})
        cm.stop_all()
    return {a for r in fake.requests for a in attributes(r.method, r.path, r.query, r.content_type)}


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: list[tuple[str, str, dict[str, list[str]], str | None]]

    def _answer(self) -> None:
        url = urlparse(self.path)
        query = parse_qs(url.query)
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self.seen.append(
            (self.command, url.path, query, (self.headers.get("Content-Type") or "").split(";")[0] or None)
        )
        if query.get("watch") == ["true"]:
            body = b""  # a watch that ends at once
        elif self.command == "GET" and not re.search(
            r"/(leases|clusters|models|applications)/[^/]+$", url.path
        ):
            body = json.dumps({"items": [], "metadata": {"resourceVersion": "1"}}).encode()
        else:
            body = json.dumps({"metadata": {"name": "x", "resourceVersion": "1"}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer  # noqa: N815

    def log_message(self, *args: Any) -> None:
        pass


def controller_requests() -> set[Attr]:
    """Every verb of the controller's API port (reconciler/controller/kube.py), called once."""
    from reconciler.controller.kube import KubeClient, KubePort

    seen: list[tuple[str, str, dict[str, list[str]], str | None]] = []
    handler = type("Recorder", (_Recorder,), {"seen": seen})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        kube = KubeClient(api_client_for(f"http://127.0.0.1:{server.server_address[1]}"))
        lease = {"metadata": {"name": "clipper-controller", "resourceVersion": "1"}, "spec": {}}
        calls = {
            "list_objects": lambda: [kube.list_objects(k, NS) for k in ("Cluster", "Model", "Application")],
            "watch": lambda: [list(kube.watch(k, NS, "1", 1)) for k in ("Cluster", "Model", "Application")],
            "patch_status": lambda: [kube.patch_status(k, NS, "x", {"health": "Healthy"}) for k in ("Cluster", "Model", "Application")],
            "set_finalizers": lambda: [kube.set_finalizers(k, NS, "x", [], "1") for k in ("Cluster", "Model", "Application")],
            "get_lease": lambda: kube.get_lease(NS, "clipper-controller"),
            "create_lease": lambda: kube.create_lease(NS, lease),
            "replace_lease": lambda: kube.replace_lease(NS, lease),
            "create_event": lambda: kube.create_event(NS, {"metadata": {"generateName": "x."}}),
        }  # fmt: skip
        # a verb added to the port must be added here, and so to the Role
        assert set(calls) == {m for m in vars(KubePort) if not m.startswith("_")}
        for call in calls.values():
            call()
    finally:
        server.shutdown()
        server.server_close()
    return {a for method, path, q, ct in seen for a in attributes(method, path, q, ct)}


@pytest.fixture(scope="module")
def sent() -> Iterator[tuple[set[Attr], set[Attr]]]:
    yield manager_requests(), controller_requests()


def test_the_role_allows_everything_the_manager_and_the_controller_send(sent):
    manager, controller = sent
    granted = granted_by(one("Role"))
    assert manager - granted == set()
    assert controller - granted == set()
    # the manager in the controller's pod: no nodes, no port-forwards, nothing outside its namespace
    assert not {a for a in manager if a[1] in ("nodes", "pods/portforward", "namespaces") and a[2] != "get"}


def test_the_role_grants_nothing_else(sent):
    manager, controller = sent
    extra = granted_by(one("Role")) - manager - controller - GRANTED_TO_DELEGATE
    assert extra == set()
