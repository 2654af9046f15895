"""Reconcile passes of ``clipper controller`` on the in-memory Kubernetes API and cluster port:
finalizers, apply and statuses, no rewrite when nothing changed, deletion, a failing rollout,
refused specs, no Cluster; and the process (leader, watches, health) end to end."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from reconciler.controller.reconcile import Controller
from reconciler.controller.run import Options, Runner
from reconciler.desired import desired_state
from reconciler.engine import Target
from reconciler.loader import ManifestSet
from tests.fakes.cluster import FakeCluster
from tests.fakes.kube import FakeKube

NS = "ns"
CLUSTER = {"apiVersion": "clipper.ai/v1", "kind": "Cluster", "metadata": {"name": "c"},
           "spec": {"backend": "kubernetes"}}  # fmt: skip


def model(version: str = "v1", replicas: int = 2, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "clipper.ai/v1", "kind": "Model", "metadata": {"name": "m"},
            "spec": {"inputType": "doubles", "version": version, "replicas": replicas,
                     "source": {"image": f"registry.example/m:{version}"}, **spec}}  # fmt: skip


APP = {"apiVersion": "clipper.ai/v1", "kind": "Application", "metadata": {"name": "a"},
       "spec": {"inputType": "doubles", "defaultOutput": "-1", "latencySloMicros": 100000, "model": "m"}}  # fmt: skip


def setup(tmp_path: Path, running: bool = True) -> tuple[FakeKube, FakeCluster, Controller]:
    kube, cluster = FakeKube(), FakeCluster(running=running)

    def make_target(ms: ManifestSet) -> Target:
        return Target(desired_state(ms), cluster, tmp_path / "state", [])

    clock = lambda: datetime(2026, 12, 1, 14, 0, 0, tzinfo=UTC)  # noqa: E731
    return kube, cluster, Controller(kube, NS, make_target, clock, lock_timeout=5)


def status(kube: FakeKube, kind: str, name: str) -> dict[str, Any]:
    obj = kube.get(kind, name)
    assert obj is not None
    st: dict[str, Any] = obj.get("status") or {}
    return st


def conditions(kube: FakeKube, kind: str, name: str) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status(kube, kind, name)["conditions"]}


def events(kube: FakeKube) -> list[tuple[str, str, str, str]]:
    return [
        (e["involvedObject"]["kind"], e["involvedObject"]["name"], e["type"], e["reason"])
        for e in kube.events
    ]


def test_resources_are_applied_and_their_status_written_once(tmp_path: Path) -> None:
    kube, cluster, ctl = setup(tmp_path, running=False)
    for doc in (CLUSTER, model(), APP):
        kube.apply(doc)
    assert ctl.reconcile() is None
    assert cluster.running and cluster.serving("m") == ("v1", 2)
    assert cluster.apps["a"].linked == ["m"]
    for kind, name in (("Cluster", "c"), ("Model", "m"), ("Application", "a")):
        obj = kube.get(kind, name)
        assert obj is not None and obj["metadata"]["finalizers"] == ["clipper.ai/cleanup"]
        assert conditions(kube, kind, name)["Ready"] == ("True", "Converged")
        assert status(kube, kind, name)["observedGeneration"] == 1
    st = status(kube, "Model", "m")
    assert (st["sync"], st["health"], st["currentVersion"], st["readyReplicas"], st["replicas"]) == (
        "Synced", "Healthy", "v1", 2, 2)  # fmt: skip
    assert ("Model", "m", "Normal", "Created") in events(kube)
    assert ("Cluster", "c", "Normal", "Created") in events(kube)
    assert ("Application", "a", "Normal", "Created") in events(kube)
    # a second pass changes nothing: no status write, no event, no cluster call but observation
    writes, n_events = list(kube.calls), len(kube.events)
    calls = len(cluster.calls)
    assert ctl.reconcile() is None
    assert kube.calls == writes and len(kube.events) == n_events
    assert all(c[0] in ("connect",) for c in cluster.calls[calls:])


def test_our_own_status_writes_do_not_wake_a_pass(tmp_path: Path) -> None:
    kube, _, ctl = setup(tmp_path)
    kube.apply(CLUSTER)
    ctl.reconcile()
    obj = kube.get("Cluster", "c")
    assert obj is not None
    assert not ctl.relevant("MODIFIED", obj)  # only its status changed since the pass listed it
    kube.apply({**CLUSTER, "spec": {"backend": "kubernetes", "frontendReplicas": 2}})
    changed = kube.get("Cluster", "c")
    assert changed is not None and ctl.relevant("MODIFIED", changed)  # generation 2
    assert ctl.relevant("ADDED", {"kind": "Model", "metadata": {"name": "new", "generation": 1}})


def test_a_spec_change_rolls_out_and_the_status_follows(tmp_path: Path) -> None:
    kube, cluster, ctl = setup(tmp_path)
    for doc in (CLUSTER, model(), APP):
        kube.apply(doc)
    ctl.reconcile()
    kube.apply(model("v2"))
    ctl.reconcile()
    assert cluster.serving("m") == ("v2", 2)
    st = status(kube, "Model", "m")
    assert (st["currentVersion"], st["previousVersion"], st["observedGeneration"]) == ("v2", "v1", 2)
    assert ("Model", "m", "Normal", "RolledOut") in events(kube)
    # each pass wrote Progressing (Applying) before its apply, then the result
    written: list[dict[str, Any]] = [
        o["status"] for _, kind, _, o in kube.log if kind == "Model" and o.get("status")
    ]
    reasons = [next(c["reason"] for c in st["conditions"] if c["type"] == "Progressing") for st in written]
    assert [r for i, r in enumerate(reasons) if i == 0 or r != reasons[i - 1]] == [
        "Applying", "Converged", "Applying", "Converged"]  # fmt: skip
    assert kube.calls.count(("patch_status", "Model", "m")) == 4


def test_a_failing_health_gate_is_degraded_while_the_old_version_serves(tmp_path: Path) -> None:
    kube, cluster, ctl = setup(tmp_path)
    health: dict[str, Any] = {"health": {"input": [1.0], "timeoutSeconds": 1}}
    for doc in (CLUSTER, model(**health), APP):
        kube.apply(doc)
    ctl.reconcile()
    cluster.broken.add(("m", "v2"))
    kube.apply(model("v2", **health))
    delay = ctl.reconcile()
    assert delay is not None and delay > 0  # retried with a backoff
    assert cluster.serving("m") == ("v1", 2)
    st = status(kube, "Model", "m")
    assert (st["sync"], st["health"], st["currentVersion"]) == ("OutOfSync", "Degraded", "v1")
    assert conditions(kube, "Model", "m")["Degraded"] == ("True", "ApplyFailed")
    assert "broken model" in st["message"]
    assert [e for e in events(kube) if e[2] == "Warning"] == [("Model", "m", "Warning", "ApplyFailed")]
    # retrying with the same failure neither rewrites the status nor repeats the Warning
    second = ctl.reconcile()
    assert second is not None and second > delay
    assert [e for e in events(kube) if e[2] == "Warning"] == [("Model", "m", "Warning", "ApplyFailed")]
    # fixed: converges, the backoff ends
    cluster.broken.clear()
    assert ctl.reconcile() is None
    assert conditions(kube, "Model", "m")["Ready"] == ("True", "Converged")


def test_deleted_resources_are_pruned_then_let_go(tmp_path: Path) -> None:
    kube, cluster, ctl = setup(tmp_path)
    for doc in (CLUSTER, model(), APP):
        kube.apply(doc)
    ctl.reconcile()
    kube.delete("Application", "a")
    kube.delete("Model", "m")
    obj = kube.get("Model", "m")
    assert obj is not None and obj["metadata"]["deletionTimestamp"]  # held by the finalizer
    ctl.reconcile()
    assert "a" not in cluster.apps and "m" not in cluster.current
    assert kube.get("Model", "m") is None and kube.get("Application", "a") is None
    assert ("Model", "m", "Normal", "Deleted") in events(kube)
    assert cluster.running


def test_a_deleted_cluster_is_stopped_then_let_go(tmp_path: Path) -> None:
    kube, cluster, ctl = setup(tmp_path)
    for doc in (CLUSTER, model(), APP):
        kube.apply(doc)
    ctl.reconcile()
    kube.delete("Cluster", "c")
    ctl.reconcile()
    assert ("stop_cluster",) in cluster.calls and not cluster.running
    assert kube.get("Cluster", "c") is None
    assert conditions(kube, "Model", "m")["Degraded"] == ("True", "NoCluster")
    # the rest deleted without a cluster: nothing to clean up, let go at once
    kube.delete("Model", "m")
    kube.delete("Application", "a")
    ctl.reconcile()
    assert kube.get("Model", "m") is None and kube.get("Application", "a") is None


def test_refused_specs_and_no_cluster(tmp_path: Path) -> None:
    kube, cluster, ctl = setup(tmp_path)
    kube.apply(model())
    ctl.reconcile()
    assert conditions(kube, "Model", "m")["Degraded"] == ("True", "NoCluster")
    assert ("Model", "m", "Warning", "NoCluster") in events(kube)
    kube.apply(CLUSTER)
    kube.apply({**model(), "spec": {**model()["spec"], "source": {"python": {"function": "m.py:f"}}}})
    ctl.reconcile()
    st = status(kube, "Model", "m")
    assert (st["health"], conditions(kube, "Model", "m")["Degraded"]) == ("Degraded", ("True", "InvalidSpec"))
    assert "clipper build" in st["message"]
    assert conditions(kube, "Cluster", "c")["Ready"] == ("True", "Converged")
    assert "m" not in cluster.current


def test_an_invalid_edit_keeps_the_last_valid_spec_serving(tmp_path: Path) -> None:
    kube, cluster, ctl = setup(tmp_path)
    for doc in (CLUSTER, model(), APP):
        kube.apply(doc)
    ctl.reconcile()
    kube.apply(model(replicas=-3))
    ctl.reconcile()
    assert cluster.serving("m") == ("v1", 2)  # neither pruned nor changed
    st = status(kube, "Model", "m")
    assert conditions(kube, "Model", "m")["Degraded"] == ("True", "InvalidSpec")
    assert st["message"].startswith("spec.replicas:") and st["observedGeneration"] == 2
    assert conditions(kube, "Application", "a")["Ready"] == ("True", "Converged")


def wait_for(what: str, check: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_the_process_leads_reconciles_on_events_and_releases_the_lease(tmp_path: Path) -> None:
    kube, cluster, ctl = setup(tmp_path)
    kube.apply(CLUSTER)
    opts = Options(NS, resync_s=3600, lease_duration_s=3, health_port=0, health_address="127.0.0.1",
                   identity="pod-1")  # fmt: skip
    runner = Runner(kube, opts, ctl)
    code: list[int] = []
    thread = threading.Thread(target=lambda: code.append(runner.run()))
    thread.start()
    try:
        wait_for("the first pass", lambda: "status" in (kube.get("Cluster", "c") or {}))
        assert kube.leases[(NS, "clipper-controller")]["spec"]["holderIdentity"] == "pod-1"
        server = runner.health.server
        assert server is not None
        port = server.server_address[1]
        for path in ("/healthz", "/readyz"):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                assert r.status == 200
        kube.apply(model())  # a watch event: reconciled long before the hour of --resync
        wait_for("the model", lambda: cluster.serving("m") == ("v1", 2))
        wait_for(
            "its status", lambda: (kube.get("Model", "m") or {}).get("status", {}).get("health") == "Healthy"
        )
    finally:
        runner.stop.set()
        runner.wake.set()
        thread.join(timeout=20)
    assert code == [0]
    assert not kube.leases[(NS, "clipper-controller")]["spec"]["holderIdentity"]  # released: no waiting
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)


def test_a_lost_lease_stops_the_process_with_exit_1(tmp_path: Path) -> None:
    kube, _, ctl = setup(tmp_path)
    opts = Options(NS, resync_s=3600, lease_duration_s=3, health_port=None, identity="pod-1")
    runner = Runner(kube, opts, ctl)
    code: list[int] = []
    thread = threading.Thread(target=lambda: code.append(runner.run()))
    thread.start()
    wait_for("leadership", lambda: (NS, "clipper-controller") in kube.leases)
    lease = kube.leases[(NS, "clipper-controller")]
    lease["spec"]["holderIdentity"] = "pod-2"  # another took it (say, this one was paused too long)
    thread.join(timeout=20)
    assert code == [1]
    assert kube.leases[(NS, "clipper-controller")]["spec"]["holderIdentity"] == "pod-2"  # not released


def test_a_standby_waits_for_the_lease(tmp_path: Path) -> None:
    kube, _, ctl = setup(tmp_path)
    kube.apply(CLUSTER)
    kube.leases[(NS, "clipper-controller")] = {
        "metadata": {"name": "clipper-controller", "resourceVersion": "1"},
        "spec": {"holderIdentity": "pod-0", "leaseDurationSeconds": 3600,
                 "renewTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")}}  # fmt: skip
    runner = Runner(kube, Options(NS, lease_duration_s=3, health_port=None, identity="pod-1"), ctl)
    thread = threading.Thread(target=runner.run)
    thread.start()
    wait_for("a campaign round", lambda: runner.health.api_ok)
    assert runner.passes == 0 and "status" not in (kube.get("Cluster", "c") or {})
    kube.leases[(NS, "clipper-controller")]["spec"]["holderIdentity"] = None  # released by pod-0
    wait_for("the takeover", lambda: runner.passes > 0)
    runner.stop.set()
    runner.wake.set()
    thread.join(timeout=20)


def test_a_restarted_controller_stops_a_deleted_cluster_in_its_own_namespace(tmp_path: Path) -> None:
    kube, cluster, ctl = setup(tmp_path)
    kube.apply(CLUSTER)
    ctl.reconcile()
    kube.delete("Cluster", "c")
    _, _, fresh = setup(tmp_path)  # a new process: no last valid spec of anything
    fresh.api = kube
    stopped: list[ManifestSet] = []

    def make_target(ms: ManifestSet) -> Target:
        stopped.append(ms)
        return Target(desired_state(ms), cluster, tmp_path / "state", [])

    fresh.make_target = make_target
    fresh.reconcile()
    assert not cluster.running and kube.get("Cluster", "c") is None
    [ms] = stopped
    assert ms.cluster is not None and ms.cluster.obj.spec.kubernetes.namespace == NS
