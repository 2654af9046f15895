"""The in-cluster controller on a real cluster: ``kubectl apply -k deploy/`` into a fresh namespace, then
custom resources (a Cluster, a Model whose image ``clipper build`` made, an Application) -> Ready and
serving; a new image rolled out under load with no failed request; a broken model Degraded with the
reason while the old version keeps serving; the controller pod killed mid-rollout and its successor
finishing it; the custom resources deleted -> their Clipper objects gone (finalizers).

The tests run in order on one Clipper cluster (the module's); each phase starts from where the previous
one left the custom resources.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from clipper_admin.kubernetes import names as n

from . import e2e

pytestmark = [pytest.mark.kubernetes, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
GROUP, VERSION = "clipper.ai", "v1"
CLUSTER, MODEL, APP = "clipper", "sum", "hello"
X = [1.0, 2.0, 3.0]
CONTROLLER = "clipper-controller"

MODELS_PY = """
def predict(xs):
    return [str(sum(x)) for x in xs]


def predict_times_10(xs):
    return [str(10 * sum(x)) for x in xs]


def broken(xs):
    raise RuntimeError("this model is broken on purpose")


# sums, after a load (unpickling) that takes `seconds`: its rollout lasts long enough to kill the
# controller in the middle of it
class _SlowToLoad:

    def __init__(self, seconds):
        self.seconds = seconds

    def __setstate__(self, state):
        import time

        time.sleep(state["seconds"])
        self.__dict__.update(state)

    def __call__(self, xs):
        return [str(sum(x)) for x in xs]


predict_slow_to_load = _SlowToLoad(15)
"""
#: image key -> the function ``clipper build`` packs into it
FUNCTIONS = {"v1": "predict", "v2": "predict_times_10", "broken": "broken", "slow": "predict_slow_to_load"}

CLUSTER_CR = f"""
apiVersion: clipper.ai/v1
kind: Cluster
metadata:
  name: {CLUSTER}
spec:
  backend: kubernetes
  kubernetes:
    serviceTypes:  # the test reaches the query frontend from the host, on the node port
      redis: ClusterIP
      management: ClusterIP
      queryRpc: ClusterIP
      metric: ClusterIP
      query: NodePort
    resources: {json.dumps(e2e.SMALL_REQUESTS)}  # small requests: the test cluster is one small node
"""


def model_cr(image: str) -> str:
    return f"""
apiVersion: clipper.ai/v1
kind: Model
metadata:
  name: {MODEL}
spec:
  inputType: doubles
  replicas: 1
  source:
    image: {image}
  health:
    input: {X}
    timeoutSeconds: 5
---
apiVersion: clipper.ai/v1
kind: Application
metadata:
  name: {APP}
spec:
  inputType: doubles
  defaultOutput: "-1.0"
  latencySloMicros: 100000
  model: {MODEL}
"""


def kubectl_path() -> str:
    found = os.environ.get("CLIPPER_K8S_KUBECTL") or shutil.which("kubectl")
    cached = sorted(
        glob.glob(
            os.path.join(os.environ.get("CLIPPER_K8S_CACHE", "/var/cache/clipper-k8s"), "*/bin/kubectl")
        )
    )
    if found or cached:
        return found or cached[-1]
    e2e.unavailable("kubectl is not installed (nor in the test cluster's binary cache; CLIPPER_K8S_KUBECTL)")
    raise AssertionError("unreachable")


def kubectl(
    *args: str, stdin: str | None = None, check: bool = True, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    cmd = [kubectl_path(), *args]
    if e2e.KUBECONFIG:
        cmd += ["--kubeconfig", e2e.KUBECONFIG]
    if e2e.CONTEXT:
        cmd += ["--context", e2e.CONTEXT]
    proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout)
    if check:
        assert proc.returncode == 0, (
            f"kubectl {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def build_images(work: Path) -> dict[str, str]:
    """The model images, built by ``clipper build`` (one Model per function) and imported into
    the nodes' containerd in one stream (shared layers travel once)."""
    (work / "models").mkdir(parents=True)
    (work / "models" / "sum.py").write_text(MODELS_PY)
    docs = [CLUSTER_CR] + [
        f"apiVersion: clipper.ai/v1\nkind: Model\nmetadata: {{name: sum-{key}}}\n"
        f"spec: {{inputType: doubles, source: {{python: {{function: models/sum.py:{fn}}}}}}}\n"
        for key, fn in FUNCTIONS.items()
    ]
    (work / "models.yaml").write_text("---\n".join(docs))
    env = {k: v for k, v in os.environ.items() if k not in ("REGISTRY", "CLIPPER_K8S_IMAGE_LOADER")}
    env["CLIPPER_HOME"] = str(work / "home")
    # "localhost/": a registry host, so the manager does not take them for images it should have pushed
    proc = subprocess.run([sys.executable, "-m", "reconciler", "--no-color", "build", "-f", str(work / "models.yaml"),
                           "--registry", "localhost", "-o", str(work / "built.yaml")],
                          env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, f"clipper build -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    from ruamel.yaml import YAML

    built = {d["metadata"]["name"]: d["spec"]["source"]["image"]
             for d in YAML(typ="safe", pure=True).load_all((work / "built.yaml").read_text()) if d and d["kind"] == "Model"}  # fmt: skip
    images = {key: built[f"sum-{key}"] for key in FUNCTIONS}
    if e2e.IMAGE_LOADER:
        socket = e2e.IMAGE_LOADER.removeprefix("containerd:")
        save = subprocess.Popen(["docker", "save", *images.values()], stdout=subprocess.PIPE)
        load = subprocess.run(["ctr", "--address", socket, "-n", "k8s.io", "images", "import", "-"],
                              stdin=save.stdout, capture_output=True, text=True, timeout=600)  # fmt: skip
        assert save.wait() == 0 and load.returncode == 0, load.stderr
    return images


@dataclass
class Env:
    namespace: str
    api: Any
    images: dict[str, str] = field(default_factory=dict)
    addr: str = ""

    def get(self, plural: str, name: str) -> dict[str, Any] | None:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        try:
            obj: dict[str, Any] = client.CustomObjectsApi(self.api).get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, plural, name
            )
            return obj
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def wait(self, plural: str, name: str, pred: Any, what: str, timeout: float = 180) -> dict[str, Any]:
        """Poll the custom resource until ``pred(obj)`` holds; the last one seen is in the error."""
        from kubernetes.client.exceptions import ApiException

        deadline = time.monotonic() + timeout
        obj: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            try:
                obj = self.get(plural, name)
            except (ApiException, OSError):
                obj = None  # the API server busy: try again
            if obj is not None and pred(obj):
                return obj
            time.sleep(0.5)
        raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last {plural}/{name}: "
                             f"{json.dumps((obj or {}).get('status'), indent=1)}\n{self.controller_log()}")  # fmt: skip

    def controller_pods(self) -> list[dict[str, Any]]:
        from clipper_admin.kubernetes.api import KubeApi

        pods = KubeApi(self.api).list("Pod", self.namespace, f"app.kubernetes.io/name={CONTROLLER}")
        return [p for p in pods if not p["metadata"].get("deletionTimestamp")]

    def controller_log(self) -> str:
        proc = kubectl("logs", "-n", self.namespace, f"deployment/{CONTROLLER}", "--tail", "40", check=False)
        return f"controller log (tail):\n{proc.stdout}{proc.stderr}"

    def lease_holder(self) -> str | None:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        try:
            lease = client.CoordinationV1Api(self.api).read_namespaced_lease(CONTROLLER, self.namespace)
        except ApiException:
            return None
        holder: str | None = lease.spec.holder_identity
        return holder


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == type_), {})


def current(obj: dict[str, Any]) -> bool:
    """The status describes the resource's latest spec."""
    return (obj.get("status") or {}).get("observedGeneration") == obj["metadata"]["generation"]


def ready(obj: dict[str, Any]) -> bool:
    return current(obj) and condition(obj, "Ready").get("status") == "True"


def set_image(env: Env, key: str) -> int:
    """Point the Model at another image; returns the new generation."""
    patch = json.dumps({"spec": {"source": {"image": env.images[key]}}})
    kubectl("patch", "-n", env.namespace, "models.clipper.ai", MODEL, "--type", "merge", "-p", patch)
    obj = env.get("models", MODEL)
    assert obj is not None
    generation: int = obj["metadata"]["generation"]
    return generation


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Iterator[Env]:
    api = e2e.api_client()
    from clipper_admin.kubernetes import objects
    from clipper_admin.kubernetes.api import KubeApi

    namespace = f"e2e-ctl-{uuid.uuid4().hex[:6]}"
    had_crds = kubectl("get", "crd", "models.clipper.ai", check=False).returncode == 0
    KubeApi(api).apply(objects.namespace(namespace))
    e = Env(namespace, api)
    # the images build while the controller and the Clipper cluster start
    built: dict[str, Any] = {}

    def build() -> None:
        try:
            built["images"] = build_images(tmp_path_factory.mktemp("controller-models"))
        except BaseException as ex:  # noqa: BLE001 - reported by the main thread
            built["error"] = ex

    builder = threading.Thread(target=build, daemon=True)
    builder.start()
    try:
        kubectl("apply", "-k", str(DEPLOY), "-n", namespace)
        kubectl("apply", "-n", namespace, "-f", "-", stdin=CLUSTER_CR)
        builder.join(timeout=600)
        if "error" in built:
            raise built["error"]
        e.images = built["images"]
        yield e
    finally:
        # the controller removes what the resources owned, then their finalizers; a resource it could
        # not finish (a failed test) loses its finalizer here so the namespace can go
        kubectl("delete", "-n", namespace, "applications.clipper.ai,models.clipper.ai,clusters.clipper.ai",
                "--all", "--timeout=90s", check=False)  # fmt: skip
        for plural in ("applications", "models", "clusters"):
            for name in kubectl(
                "get", "-n", namespace, f"{plural}.clipper.ai", "-o", "name", check=False
            ).stdout.split():
                kubectl(
                    "patch",
                    "-n",
                    namespace,
                    name,
                    "--type",
                    "merge",
                    "-p",
                    '{"metadata":{"finalizers":null}}',
                    check=False,
                )
        e2e.delete_namespace(api, namespace)
        if not had_crds:
            kubectl("delete", "-f", str(DEPLOY / "crds"), "--ignore-not-found", check=False)


def test_the_controller_installs_with_kubectl_apply_k_and_takes_the_lease(env):
    from clipper_admin.kubernetes.api import KubeApi

    kube = KubeApi(env.api)

    def available() -> bool:
        dep = kube.get("Deployment", CONTROLLER, env.namespace)
        return bool(dep and (dep.get("status") or {}).get("availableReplicas") == 1)

    e2e.wait_for(available, timeout=120, what="the controller Deployment available")
    [pod] = env.controller_pods()
    e2e.wait_for(
        lambda: env.lease_holder() == pod["metadata"]["name"], timeout=60, what="the pod holding the Lease"
    )


def test_custom_resources_converge_and_serve(env):
    kubectl("apply", "-n", env.namespace, "-f", "-", stdin=model_cr(env.images["v1"]))
    deadline = time.monotonic() + 240  # one for the three (within pytest's 300 s per test)
    for plural, name in (("clusters", CLUSTER), ("models", MODEL), ("applications", APP)):
        obj = env.wait(plural, name, ready, f"{plural}/{name} Ready", timeout=deadline - time.monotonic())
        st = obj["status"]
        assert (st["sync"], st["health"]) == ("Synced", "Healthy"), st
        assert {c["type"]: c["status"] for c in st["conditions"]} == {
            "Ready": "True", "Synced": "True", "Progressing": "False", "Degraded": "False"
        }, st  # fmt: skip
        assert "clipper.ai/cleanup" in obj["metadata"]["finalizers"]
    model = env.get("models", MODEL)
    assert model is not None
    assert model["status"]["currentVersion"] and model["status"]["readyReplicas"] == 1, model["status"]
    # the printer columns: version, ready/desired replicas, health
    row = kubectl("get", "models", "-n", env.namespace, MODEL, "--no-headers").stdout.split()
    assert row[:5] == [MODEL, model["status"]["currentVersion"], "1", "1", "Healthy"], row
    assert APP in kubectl("get", "clipper", "-n", env.namespace).stdout
    env.addr = e2e.node_port_address(env.api, n.query(CLUSTER), env.namespace)
    assert e2e.wait_for(
        lambda: e2e.output(env.addr, APP, X) == 6.0, timeout=60, what="the model answering 6.0"
    )
    events = json.loads(kubectl("get", "events", "-n", env.namespace, "-o", "json",
                                "--field-selector", f"involvedObject.kind=Model,involvedObject.name={MODEL}").stdout)  # fmt: skip
    sources = {
        ev.get("reportingComponent") or (ev.get("source") or {}).get("component") for ev in events["items"]
    }
    assert CONTROLLER in sources, events["items"]


def test_a_new_image_rolls_out_under_load_with_no_failed_request(env):
    before = env.get("models", MODEL)
    assert before is not None and ready(before)
    old = before["status"]["currentVersion"]
    with e2e.load(env.addr, APP, X, threads=2) as lo:
        lo.step = "rollout"
        generation = set_image(env, "v2")
        after = env.wait("models", MODEL, lambda o: o["status"].get("observedGeneration") == generation and ready(o),
                         "the new version rolled out")  # fmt: skip
        e2e.wait_for(
            lambda: e2e.output(env.addr, APP, X) == 60.0, timeout=60, what="the new version answering"
        )
        lo.step = "after"
        e2e.wait_for(
            lambda: any(a[0] == "after" for a in lo.answers), timeout=30, what="an answer after the rollout"
        )
    st = after["status"]
    assert st["currentVersion"] != old and st["previousVersion"] == old, st
    assert [a for a in lo.answers if a[1] == 0] == [], "requests failed"
    assert lo.bad(lambda step, code, out: code == 200 and out in (6.0, 60.0)) == []
    assert [a for a in lo.answers if a[0] == "after"][-1][2] == 60.0


def test_a_broken_model_is_degraded_while_the_old_version_serves(env):
    before = env.get("models", MODEL)
    assert before is not None and ready(before)
    serving = before["status"]["currentVersion"]
    with e2e.load(env.addr, APP, X, threads=1) as lo:
        generation = set_image(env, "broken")
        obj = env.wait("models", MODEL,
                       lambda o: o["status"].get("observedGeneration") == generation
                       and condition(o, "Degraded").get("status") == "True",
                       "the broken version Degraded", timeout=240)  # fmt: skip
    st = obj["status"]
    degraded = condition(obj, "Degraded")
    assert st["health"] == "Degraded" and condition(obj, "Ready")["status"] == "False", st
    assert degraded["reason"] == "ApplyFailed" and degraded["message"] == st["message"] != "", degraded
    assert "health" in st["message"].lower() or "broken on purpose" in st["message"], st["message"]
    assert st["currentVersion"] == serving, st  # the old version still takes the traffic
    assert [a for a in lo.answers if a[1] == 0] == [], "requests failed"
    assert lo.bad(lambda step, code, out: code == 200 and out == 60.0) == []
    assert lo.answers, "no prediction was answered"


def test_a_controller_killed_mid_rollout_is_succeeded_by_one_that_finishes_it(env):
    before = env.get("models", MODEL)
    assert before is not None
    serving = before["status"]["currentVersion"]
    [pod] = env.controller_pods()
    killed = pod["metadata"]["name"]
    generation = set_image(env, "slow")  # v1's sum, its replica connecting only after 15 s
    # mid-rollout: the controller has taken up the new spec and is applying it
    env.wait("models", MODEL, lambda o: o["status"].get("observedGeneration") == generation
             and condition(o, "Progressing").get("status") == "True", "the rollout under way", timeout=60)  # fmt: skip
    kubectl("delete", "pod", "-n", env.namespace, killed, "--grace-period=0", "--force")
    obj = env.wait("models", MODEL, lambda o: o["status"].get("observedGeneration") == generation and ready(o),
                   "the rollout finished by the new controller", timeout=240)  # fmt: skip
    holder = env.lease_holder()
    assert holder and holder != killed, holder
    # the successor acted: the rollout was not finished before the kill
    log = kubectl("logs", "-n", env.namespace, holder).stdout
    assert any(int(n) > 0 for n in re.findall(r"(\d+) action\(s\)", log)), log
    st = obj["status"]
    # previousVersion: the version recorded before the current one (here the broken one, which was
    # recorded, aside, by the previous test)
    assert st["currentVersion"] != serving and st["previousVersion"] not in (None, st["currentVersion"]), st
    assert e2e.wait_for(
        lambda: e2e.output(env.addr, APP, X) == 6.0, timeout=60, what="the new version answering"
    )


def test_deleting_the_custom_resources_removes_what_they_owned(env):
    kubectl("delete", "-n", env.namespace, f"applications.clipper.ai/{APP}", f"models.clipper.ai/{MODEL}",
            f"clusters.clipper.ai/{CLUSTER}", "--timeout=180s")  # fmt: skip
    for plural, name in (("clusters", CLUSTER), ("models", MODEL), ("applications", APP)):
        assert env.get(plural, name) is None

    def clipper_left() -> dict[str, list[str]]:
        left = e2e.namespace_objects(env.api, env.namespace)
        mine = {k: [x for x in names if not x.startswith(CONTROLLER)] for k, names in left.items()}
        return {k: v for k, v in mine.items() if v}

    e2e.wait_for(lambda: not clipper_left(), timeout=120, what="the Clipper objects gone")
    assert env.controller_pods(), "the controller itself stays"
