"""Support for the tests that run on a real Kubernetes cluster (``test_e2e_*.py``).

``./test.sh`` starts the project's offline single-node cluster (tests/kubernetes/cluster/up.sh) and
exports ``CLIPPER_K8S_E2E_KUBECONFIG`` (its kubeconfig) and ``CLIPPER_K8S_E2E_IMAGE_LOADER`` (its
containerd socket); with ``CLIPPER_K8S_REQUIRED=1`` (set by test.sh) an unreachable cluster fails these
tests instead of skipping them. Elsewhere (a kind cluster, ...) they run when ``CLIPPER_K8S_E2E=1`` or
the current context is a local cluster, and skip with the reason otherwise.

Only these variables select the real cluster: ``KUBECONFIG`` and ``CLIPPER_K8S_IMAGE_LOADER`` are not
exported to the whole test run, so the unit tests on the API doubles never reach it.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import requests

KUBECONFIG = os.environ.get("CLIPPER_K8S_E2E_KUBECONFIG") or None
CONTEXT = os.environ.get("CLIPPER_K8S_CONTEXT") or None
IMAGE_LOADER = (
    os.environ.get("CLIPPER_K8S_E2E_IMAGE_LOADER") or os.environ.get("CLIPPER_K8S_IMAGE_LOADER") or None
)
REQUIRED = os.environ.get("CLIPPER_K8S_REQUIRED") == "1"
#: The names of the Clipper clusters these tests create (e2e.manager or a manifest's Cluster): the model
#: images of these clusters are the ones conftest's ``_model_images`` removes after each e2e module.
#: (``bench``: ``bench/compare.py backends``' Kubernetes target, set up with this module's manager.)
CLUSTERS = frozenset({"e2e", "iso", "spark", "k8s-quickstart", "clipper", "bench"})
WAIT_S = 300.0
# The test node has 2 CPUs: the default requests (800m per cluster, 250m per model replica) would leave
# no room for two clusters at once. Requests only; no limits, so nothing is throttled.
SMALL_REQUESTS: dict[str, Any] = {
    role: {"requests": {"cpu": "50m", "memory": "64Mi"}}
    for role in ("redis", "management", "query", "model", "metrics")
}


def unavailable(reason: str) -> None:
    """Skip, or fail when the cluster is required (./test.sh): never a silent skip in CI."""
    if REQUIRED:
        pytest.fail(f"the Kubernetes test cluster is required (CLIPPER_K8S_REQUIRED=1) but {reason}")
    pytest.skip(reason)


def api_client() -> Any:
    """An ``ApiClient`` on the real cluster, or skip/fail with the reason."""
    from kubernetes import client, config

    from clipper_admin.kubernetes.images import is_local_context

    try:
        _, active = config.list_kube_config_contexts(config_file=KUBECONFIG)
        context = CONTEXT or (active or {}).get("name")
    except Exception as e:  # noqa: BLE001
        unavailable(f"there is no kubeconfig: {e}")
    if not (KUBECONFIG or os.environ.get("CLIPPER_K8S_E2E") == "1" or is_local_context(context)):
        unavailable(
            f"context {context!r} is not a local cluster (kind-, k3d-, minikube...); set CLIPPER_K8S_E2E=1 to use it"
        )
    try:
        cfg = client.Configuration()
        config.load_kube_config(config_file=KUBECONFIG, context=CONTEXT, client_configuration=cfg)
        api = client.ApiClient(cfg)
        client.VersionApi(api).get_code(_request_timeout=10)
    except Exception as e:  # noqa: BLE001 - any failure means: no reachable cluster
        unavailable(f"no Kubernetes cluster is reachable: {e}")
    return api


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def manager(api: Any, cluster: str, namespace: str, **kwargs: Any) -> Any:
    """A ``KubernetesContainerManager`` on the real cluster (node ports reached on the node's address)."""
    from clipper_admin.kubernetes import KubernetesContainerManager

    assert cluster in CLUSTERS, f"add {cluster!r} to e2e.CLUSTERS, or its model images stay behind"

    kwargs.setdefault("create_namespace_if_not_exists", True)
    kwargs.setdefault("redis_storage", None)
    kwargs.setdefault("wait_timeout_s", WAIT_S)
    kwargs.setdefault("useInternalIP", True)
    kwargs.setdefault("image_loader", IMAGE_LOADER)
    kwargs.setdefault("resources", SMALL_REQUESTS)
    return KubernetesContainerManager(
        cluster, namespace=namespace, api_client=api, kubeconfig=KUBECONFIG, context=CONTEXT, **kwargs
    )


def delete_namespace(api: Any, namespace: str, wait_s: float = 120.0) -> None:
    """Delete a namespace and wait until it is gone (a test leaves nothing behind)."""
    from clipper_admin.kubernetes.api import KubeApi

    kube = KubeApi(api)
    kube.delete("Namespace", namespace)
    deadline = time.monotonic() + wait_s
    while kube.get("Namespace", namespace) is not None and time.monotonic() < deadline:
        time.sleep(1)


def node_port_address(api: Any, service: str, namespace: str) -> str:
    """``<node InternalIP>:<node port>`` of a NodePort Service: how the host reaches it."""
    from clipper_admin.kubernetes.api import KubeApi

    kube = KubeApi(api)
    svc = kube.get("Service", service, namespace)
    assert svc is not None, f"Service {namespace}/{service} was not created"
    node = kube.list("Node")[0]
    ip = next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")
    return f"{ip}:{svc['spec']['ports'][0]['nodePort']}"


def namespace_objects(api: Any, namespace: str) -> dict[str, list[str]]:
    """Names of the objects a Clipper cluster could leave in ``namespace`` (the namespace's own default
    ServiceAccount, kube-root-ca.crt ConfigMap and token Secrets are not Clipper's)."""
    from clipper_admin.kubernetes.api import KubeApi

    kube = KubeApi(api)
    left: dict[str, list[str]] = {}
    for kind in ("Deployment", "Pod", "Service", "ConfigMap", "Secret", "Role", "RoleBinding",
                 "ServiceAccount", "PersistentVolumeClaim"):  # fmt: skip
        names = [o["metadata"]["name"] for o in kube.list(kind, namespace)]
        names = [x for x in names if x not in ("default", "kube-root-ca.crt")]
        if names:
            left[kind] = names
    return left


def wait_for(cond: Callable[[], Any], timeout: float = 180.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = cond()
            if last:
                return last
        except (requests.RequestException, OSError) as e:
            last = e
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def predict(addr: str, app: str, body: dict[str, Any], timeout: float = 30.0) -> requests.Response:
    return requests.post(f"http://{addr}/{app}/predict", json=body, timeout=timeout)


def output(addr: str, app: str, x: list[float]) -> Any:
    """The model's answer (``None`` for a default answer or an error)."""
    r = predict(addr, app, {"input": x})
    if r.status_code != 200:
        return None
    body = r.json()
    return None if body.get("default") else body.get("output")


class Load:
    """Predictions posted continuously by ``threads`` clients; every answer is recorded with the step it
    was sent in (``step`` may be changed while it runs)."""

    def __init__(self, addr: str, app: str, x: list[float], threads: int = 2) -> None:
        self.addr, self.app, self.x, self.threads = addr, app, x, threads
        self.step = "start"
        self.answers: list[tuple[str, int, Any]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        session = requests.Session()
        while not self.stop.is_set():
            step = self.step
            try:
                r = session.post(f"http://{self.addr}/{self.app}/predict", json={"input": self.x}, timeout=30)
                body = r.json()
                answer = ("default", body.get("output")) if body.get("default") else body.get("output")
                self.answers.append((step, r.status_code, answer))
            except (requests.RequestException, ValueError) as e:  # a failed request
                self.answers.append((step, 0, repr(e)))
            time.sleep(0.01)

    def bad(self, ok: Callable[[str, int, Any], bool]) -> list[tuple[str, int, Any]]:
        return [a for a in self.answers if not ok(*a)]


@contextmanager
def load(addr: str, app: str, x: list[float], threads: int = 2) -> Iterator[Load]:
    lo = Load(addr, app, x, threads)
    workers = [threading.Thread(target=lo.run, daemon=True) for _ in range(threads)]
    for t in workers:
        t.start()
    try:
        yield lo
    finally:
        lo.stop.set()
        for t in workers:
            t.join(timeout=60)
