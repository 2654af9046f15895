"""``clipper diff`` / ``clipper apply`` on the kubernetes backend, against the strict API double.

The CLI runs as a real subprocess that finds the "cluster" through a kubeconfig written into
``tmp_path``. The pods the double invents are stood in for by real local processes: a management
frontend and a query frontend (SQLite store) behind the double's pod port-forward (the manifest's
services are ClusterIP / NodePort without a usable node address, so the manager forwards itself),
and one ``python -m clipper.container`` per model pod, started when its Deployment (or scale) shows
up in the double and pointed at the local query frontend's RPC port, as a pod would be.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from clipper_admin.kubernetes import KubernetesContainerManager
from clipper_admin.kubernetes import names as n
from tests.integration.cluster_fixtures import Cluster, make_model_dir, wait_for

from .conftest import SCHEMA_VERSIONS
from .fake_apiserver import FakeKubernetes

CLUSTER = "kube-rt"
NS = "clipper-rt"
CONTEXT = "fake-ctx"
IMAGE = "registry.example.com/clipper/sum-model:1"
CLI_TIMEOUT = 90

MANIFESTS = """\
apiVersion: clipper.ai/v1
kind: Cluster
metadata: {{name: {cluster}}}
spec:
  backend: {backend}
{settings}---
apiVersion: clipper.ai/v1
kind: Model
metadata: {{name: sum-model}}
spec:
  inputType: doubles
  replicas: {replicas}
  source: {{image: {image}}}
---
apiVersion: clipper.ai/v1
kind: Application
metadata: {{name: hello}}
spec: {{inputType: doubles, defaultOutput: "-1", latencySloMicros: 2000000, model: sum-model}}
"""

# the service types of examples/manifests/kubernetes.yaml
K8S_SETTINGS = f"""\
  registry: registry.example.com/clipper
  kubernetes:
    namespace: {NS}
    createNamespace: true
    context: {CONTEXT}
    serviceTypes: {{redis: ClusterIP, queryRpc: ClusterIP, management: ClusterIP, query: NodePort, metric: ClusterIP}}
"""

KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster: {{server: "{url}"}}
users:
- name: tester
  user: {{token: not-checked-by-the-double}}
contexts:
- name: {context}
  context: {{cluster: fake, user: tester, namespace: {ns}}}
current-context: {context}
"""


def manifests(replicas: int = 1, backend: str = "kubernetes") -> str:
    settings = K8S_SETTINGS if backend == "kubernetes" else ""
    return MANIFESTS.format(
        cluster=CLUSTER, backend=backend, settings=settings, replicas=replicas, image=IMAGE
    )


def sum_model(xs):
    return [str(sum(x)) for x in xs]


class World:
    """The double, the local serving plane behind it, and the CLI's environment."""

    def __init__(self, tmp_path: Path, fake: FakeKubernetes, url: str, plane: Cluster):
        self.fake, self.plane = fake, plane
        self.manifest = tmp_path / "manifests" / "all.yaml"
        self.manifest.parent.mkdir()
        self.kubeconfig = tmp_path / "kubeconfig"
        self.kubeconfig.write_text(KUBECONFIG.format(url=url, context=CONTEXT, ns=NS))
        home = tmp_path / "home"
        self.env = {**plane.env, "CLIPPER_HOME": str(home), "KUBECONFIG": str(self.kubeconfig)}
        # a single-frontend cluster's pods: the double forwards their ports to the local plane
        fake.port_targets[(f"{n.mgmt(CLUSTER)}-", n.MGMT_PORT)] = ("127.0.0.1", plane.mgmt_port)
        fake.port_targets[(f"{n.query_frontend(CLUSTER, 0)}-", n.QUERY_PORT)] = ("127.0.0.1", plane.http_port)
        self.model_dir = make_model_dir(tmp_path, "sum-model", sum_model)
        self.containers: list[subprocess.Popen] = []

    def write(self, text: str) -> None:
        self.manifest.write_text(text)

    def cli(self, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "reconciler", "--no-color", *args, "-f", str(self.manifest)],
            env=env or self.env, capture_output=True, text=True, timeout=CLI_TIMEOUT,
        )  # fmt: skip

    def apply_while(self, ready: Callable[[], bool], on_ready: Callable[[], None]) -> str:
        """``clipper apply`` in the background; ``on_ready()`` once ``ready()`` holds (a pod starting)."""
        proc = subprocess.Popen(
            [sys.executable, "-m", "reconciler", "--no-color", "apply", "-f", str(self.manifest)],
            env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        try:
            wait_for(
                lambda: ready() or proc.poll() is not None, CLI_TIMEOUT, "the apply to reach the cluster"
            )
            if proc.poll() is None:
                on_ready()
            out, _ = proc.communicate(timeout=CLI_TIMEOUT)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 0, out
        return out

    def start_replica(self, version: str) -> None:
        """What a pod of the model Deployment would run: the container, connecting to the frontend's RPC port."""
        self.containers.append(self.plane.start_container(self.model_dir, "sum-model", version, "doubles"))

    def connected(self, version: str) -> int:
        replicas = self.plane.admin_call("get_all_containers", {"verbose": True}).json()
        return sum(
            1 for r in replicas if r["model_name"] == "sum-model" and str(r["model_version"]) == version
        )

    def writes(self, since: int = 0) -> list:
        return [r for r in self.fake.requests[since:] if r.method != "GET"]

    def versions(self, skip_kinds=("Pod",)) -> dict:
        return {
            k: o["metadata"].get("resourceVersion")
            for k, o in self.fake.objects.items()
            if k[0] not in skip_kinds
        }


@pytest.fixture
def world(tmp_path, monkeypatch):
    monkeypatch.setenv("CLIPPER_HOME", str(tmp_path / "home"))
    fake = FakeKubernetes(schema_version=SCHEMA_VERSIONS[-1])
    plane = Cluster(tmp_path / "plane", f"sqlite:///{tmp_path}/plane/config.db")
    try:
        with fake.serve() as server:
            plane.start_mgmt()
            plane.start_query_frontend()
            yield World(tmp_path, fake, server.url, plane)
    finally:
        plane.close()


def ops(plan_json: str) -> list[tuple[str, str]]:
    return [(a["op"], a["kind"]) for a in json.loads(plan_json)["actions"] if a["op"] != "noop"]


def test_apply_and_diff_on_kubernetes(world, tmp_path):
    fake = world.fake
    model_dep = None

    # --- diff from nothing: creates, classified as on the local backend ---------------------------
    world.write(manifests(backend="local"))
    local_env = {**world.env, "CLIPPER_HOME": str(tmp_path / "local-home")}
    local_plan = world.cli("diff", "--output", "json", env=local_env)
    assert local_plan.returncode == 1, local_plan.stdout + local_plan.stderr
    world.write(manifests())
    k8s_plan = world.cli("diff", "--output", "json")
    assert k8s_plan.returncode == 1, k8s_plan.stdout + k8s_plan.stderr
    assert ops(k8s_plan.stdout) == ops(local_plan.stdout)
    assert ops(k8s_plan.stdout)[:3] == [("create", "Cluster"), ("create", "Model"), ("create", "Application")]
    text = world.cli("diff")
    assert text.returncode == 1, text.stderr
    assert "+ Cluster/kube-rt create" in text.stdout and "+ Model/sum-model create" in text.stdout
    assert "Plan: " in text.stdout and "to create" in text.stdout
    model_action = next(a for a in json.loads(k8s_plan.stdout)["actions"] if a["kind"] == "Model")
    version = next(c["new"] for c in model_action["changes"] if c["field"] == "version")
    model_dep = n.model_deployment("sum-model", version, 0, CLUSTER)
    # diff wrote nothing at all, not even the namespace (start_clipper creates that)
    assert world.writes() == []
    assert fake.list("Deployment", NS) == [] and fake.list("Service", NS) == []

    # --- apply: the cluster and the model Deployment, by server-side apply ------------------------
    out = world.apply_while(
        lambda: fake.get("Deployment", NS, model_dep) is not None, lambda: world.start_replica(version)
    )
    assert "Applied:" in out
    dep = fake.get("Deployment", NS, model_dep)
    assert dep["spec"]["replicas"] == 1
    assert [c["image"] for c in dep["spec"]["template"]["spec"]["containers"]] == [IMAGE]
    for svc in (n.mgmt(CLUSTER), n.query(CLUSTER), n.query_frontend(CLUSTER, 0)):
        assert fake.get("Service", NS, svc) is not None, svc
    writes = world.writes()
    assert writes and all(r.content_type == "application/apply-patch+yaml" for r in writes)
    assert all(r.query["fieldManager"] == ["clipper"] for r in writes)
    assert any(r.path.endswith(f"/deployments/{model_dep}") for r in writes)
    assert any(
        r.path.endswith("/portforward") for r in fake.requests
    )  # reached through the manager's forward
    assert world.connected(version) == 1

    # served end to end, through a port-forward of a manager that reads the same kubeconfig
    cm = KubernetesContainerManager(CLUSTER, namespace=NS, kubeconfig=str(world.kubeconfig))
    try:
        cm.connect()
        r = requests.post(
            f"http://{cm.get_query_addr()}/hello/predict", json={"input": [1.0, 2.0]}, timeout=10
        )
        assert r.status_code == 200 and r.json()["output"] == 3.0 and not r.json()["default"], r.text
    finally:
        cm.close()

    # --- a second apply is a no-op: nothing re-applied, every resourceVersion unchanged -----------
    before, since = world.versions(skip_kinds=()), len(fake.requests)
    again = world.cli("apply")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "No changes" in again.stdout
    assert world.writes(since) == []
    assert world.versions(skip_kinds=()) == before
    same = world.cli("diff")
    assert same.returncode == 0, same.stdout + same.stderr
    assert "No changes" in same.stdout
    assert "not compared" not in same.stdout + same.stderr  # the running settings were read back

    # --- replicas 1 -> 2: an in-place update that patches spec.replicas of the model only --------
    world.write(manifests(replicas=2))
    plan = world.cli("diff", "--output", "json")
    assert plan.returncode == 1, plan.stderr
    assert ops(plan.stdout) == [("update", "Model")]
    model_action = next(a for a in json.loads(plan.stdout)["actions"] if a["kind"] == "Model")
    assert model_action["changes"] == [{"field": "replicas", "old": 1, "new": 2}]
    text = world.cli("diff")
    assert "~ Model/sum-model update in place" in text.stdout and "replicas: 1 -> 2" in text.stdout
    before, since = world.versions(), len(fake.requests)
    template = fake.get("Deployment", NS, model_dep)["spec"]["template"]
    world.apply_while(
        lambda: fake.get("Deployment", NS, model_dep)["spec"]["replicas"] == 2,
        lambda: world.start_replica(version),
    )
    assert [(r.path, r.content_type) for r in world.writes(since)] == [
        (f"/apis/apps/v1/namespaces/{NS}/deployments/{model_dep}/scale", "application/merge-patch+json")
    ]
    after = world.versions()
    changed = {k for k in after if after[k] != before.get(k)} | (before.keys() - after.keys())
    assert changed == {("Deployment", NS, model_dep)}
    dep = fake.get("Deployment", NS, model_dep)
    assert dep["spec"]["replicas"] == 2 and dep["spec"]["template"] == template
    assert world.connected(version) == 2
    final = world.cli("diff")
    assert final.returncode == 0, final.stdout + final.stderr

    # --- a Cluster setting changed: read back from the Deployments, refused with the reason --------
    world.write(manifests().replace("  registry:", "  cacheSizeBytes: 1024\n  registry:"))
    since = len(fake.requests)
    for command in ("diff", "apply"):
        refused = world.cli(command)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert (
            "cacheSizeBytes cannot be changed on a running kubernetes cluster: delete the cluster and "
            "apply again" in refused.stdout + refused.stderr
        ), refused.stdout + refused.stderr
    assert world.writes(since) == []
