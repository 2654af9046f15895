"""``clipper apply`` on a real cluster with the project's example manifest
(``examples/manifests/kubernetes.yaml``, applied as it is in the repository), then ``clipper diff``
(exit 0), a code change rolled out while predictions are posted (none may fail), scaling, pruning and
``clipper delete --cluster`` (nothing left in the namespace)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from . import e2e

pytestmark = [pytest.mark.kubernetes, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "manifests" / "kubernetes.yaml"
NAMESPACE = "clipper"  # the example's
CLUSTER = "k8s-quickstart"
APP = "hello-world"
X = [1.0, 2.0, 3.0]


def clipper(
    *args: str, env: dict[str, str], check: int | None = 0, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "reconciler", "--no-color", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip
    if check is not None:
        assert proc.returncode == check, (
            f"clipper {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def query_addr(api) -> str:
    """The example's query Service is a NodePort: reached on the node's address."""
    from clipper_admin.kubernetes import names as n

    return e2e.node_port_address(api, n.query(CLUSTER), NAMESPACE)


@pytest.fixture
def env(tmp_path):
    api = e2e.api_client()
    from clipper_admin.kubernetes.api import KubeApi

    if KubeApi(api).get("Namespace", NAMESPACE) is not None:
        pytest.fail(f"namespace {NAMESPACE!r} exists on the test cluster: delete it (the example uses it)")
    environ = {k: v for k, v in os.environ.items() if k not in ("REGISTRY", "CLIPPER_ADMIN_TOKEN")}
    environ["CLIPPER_HOME"] = str(tmp_path / "home")
    if e2e.KUBECONFIG:
        environ["KUBECONFIG"] = e2e.KUBECONFIG
    if e2e.IMAGE_LOADER:
        environ["CLIPPER_K8S_IMAGE_LOADER"] = e2e.IMAGE_LOADER
    try:
        yield api, environ
    finally:
        clipper("delete", "-f", str(EXAMPLE), "--cluster", env=environ, check=None)
        e2e.delete_namespace(api, NAMESPACE)


def test_the_example_manifest_applied_changed_scaled_and_pruned_under_load(env, tmp_path):
    api, environ = env
    before = subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain", "examples"], capture_output=True, text=True
    ).stdout

    clipper("apply", "-f", str(EXAMPLE), env=environ)
    clipper("diff", "-f", str(EXAMPLE), env=environ)
    addr = query_addr(api)
    assert e2e.output(addr, APP, X) == 6.0
    st = json.loads(clipper("status", "-f", str(EXAMPLE), "--output", "json", env=environ).stdout)
    assert st["ok"] is True and {o["health"]["status"] for o in st["objects"]} == {"Healthy"}, st
    # applying the example wrote nothing into the repository
    after = subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain", "examples"], capture_output=True, text=True
    ).stdout
    assert after == before

    # the same manifests in a work tree of our own, to change them
    work = tmp_path / "manifests"
    shutil.copytree(EXAMPLE.parent / "models", work / "models")
    manifest = work / "kubernetes.yaml"
    manifest.write_text(EXAMPLE.read_text())
    clipper("diff", "-f", str(manifest), env=environ)
    model_file = work / "models" / "sum_model.py"
    source = model_file.read_text()
    assert "sum(" in source

    with e2e.load(addr, APP, X, threads=2) as lo:
        # a code change: a new version rolled out, the previous one's pods stopped after the switch
        lo.step = "change"
        model_file.write_text(
            source
            + "\n\n_predict_v1 = predict\n\n\ndef predict(xs):\n    return [str(10 * float(o)) for o in _predict_v1(xs)]\n"
        )
        clipper("apply", "-f", str(manifest), env=environ)
        assert e2e.output(addr, APP, X) == 60.0
        clipper("diff", "-f", str(manifest), env=environ)
        # scaling
        lo.step = "scale"
        manifest.write_text(EXAMPLE.read_text().replace("  replicas: 1\n", "  replicas: 2\n", 1))
        clipper("apply", "-f", str(manifest), env=environ)
        clipper("diff", "-f", str(manifest), env=environ)
        st = json.loads(clipper("status", "-f", str(manifest), "--output", "json", env=environ).stdout)
        model = next(o for o in st["objects"] if o["kind"] == "Model")
        assert model["replicas"] == {"desired": 2, "actual": 2}, model
    assert [a for a in lo.answers if a[1] == 0] == [], "requests failed"
    assert lo.bad(lambda step, code, out: code == 200 and out in (6.0, 60.0)) == []
    assert {a[0] for a in lo.answers} >= {"change", "scale"}

    # prune: the model and the application leave the manifests
    manifest.write_text(EXAMPLE.read_text().split("\n---\n")[0] + "\n")
    clipper("diff", "-f", str(manifest), env=environ, check=1)
    clipper("apply", "-f", str(manifest), "--prune", env=environ)
    clipper("diff", "-f", str(manifest), env=environ)
    assert e2e.predict(addr, APP, {"input": X}).status_code == 404

    clipper("delete", "-f", str(manifest), "--cluster", env=environ)
    e2e.wait_for(lambda: not e2e.namespace_objects(api, NAMESPACE), what="the namespace emptied")
