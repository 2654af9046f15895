"""The apply lock and the ownership records in the cluster's own store (issue 14), on the in-memory
cluster port: two "machines" are two targets with different local state directories and one cluster."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from reconciler.desired import desired_state
from reconciler.engine import Target, apply, plan_for
from reconciler.errors import ReconcilerError
from reconciler.loader import load_manifests
from reconciler.lock import LEASE_NAME, cluster_lease
from reconciler.observed import ModelRecord
from reconciler.ownership import KEY, NAMESPACE, OwnershipRegistry
from tests.fakes.cluster import FakeCluster
from tests.unit.test_engine import MANIFESTS


def machine(tmp_path: Path, name: str, cluster: FakeCluster) -> Target:
    """A runner with its own checkout and local state directory, applying to ``cluster``."""
    work = tmp_path / name
    work.mkdir()
    (work / "m.yaml").write_text(MANIFESTS)
    manifests = load_manifests([str(work / "m.yaml")])
    return Target(desired_state(manifests), cluster, work / "state", manifests.files)


def test_ownership_is_the_clusters_so_every_machine_sees_it(tmp_path: Path) -> None:
    cluster = FakeCluster()
    a, b = machine(tmp_path, "a", cluster), machine(tmp_path, "b", cluster)
    apply(a, "c")
    assert not (a.cluster_dir / "reconciler" / "apps.json").exists()
    records = json.loads(cluster.records[(NAMESPACE, KEY)])
    assert set(records["apps"]) == {"a"} and set(records["models"]["m"]) == {"v1"}
    plan, obs = plan_for(b, "c", prune=True)  # the other machine: nothing to do, nothing in conflict
    assert not plan.has_changes and not plan.conflicts
    assert obs.app_owners["a"].owner == "c"


def test_a_cluster_without_admin_auth_keeps_the_records_on_this_machine(tmp_path: Path) -> None:
    """adminAuth: none: anybody could write the cluster's store, and a forged record would let a forged
    version be started; the records stay in the owner-only local file."""
    cluster = FakeCluster()
    cluster.protected = False
    a = machine(tmp_path, "a", cluster)
    apply(a, "c")
    assert cluster.records == {}
    path = a.cluster_dir / "reconciler" / "apps.json"
    assert path.stat().st_mode & 0o777 == 0o600
    assert set(json.loads(path.read_text())["apps"]) == {"a"}
    assert cluster.leases == {}  # nor is there a lease anybody could drop


def test_a_local_registry_is_read_once_and_moved_into_the_cluster(tmp_path: Path) -> None:
    cluster = FakeCluster()
    cluster.add_version("m", "v1", replicas=2, image="registry.example/m:1")
    a = machine(tmp_path, "a", cluster)
    local = OwnershipRegistry(a.cluster_dir)  # what an earlier release wrote on this machine
    local.record_model("m", "v1", ModelRecord("c", "registry.example/m:1", None))
    plan, _ = plan_for(a, "c", prune=False)
    assert not plan.conflicts  # the version is recognised as the reconciler's
    assert not local.path.exists()
    assert set(json.loads(cluster.records[(NAMESPACE, KEY)])["models"]["m"]) == {"v1"}
    # the other machine sees it too
    plan_b, _ = plan_for(machine(tmp_path, "b", cluster), "c", prune=False)
    assert not plan_b.conflicts


def test_an_apply_waits_for_the_other_machines_lease(tmp_path: Path) -> None:
    cluster = FakeCluster()
    cluster.leases[LEASE_NAME] = ("ci@runner-1 pid 7", cluster.clock() + 60)
    b = machine(tmp_path, "b", cluster)
    with pytest.raises(ReconcilerError, match=r"another apply holds the cluster's apply lease \(ci@runner-1"):
        apply(b, "c", lock_timeout=0)
    assert [c for c in cluster.calls if c[0] != "connect"] == []  # nothing done
    assert cluster.apps == {}


def test_a_dead_holders_lease_expires_and_the_next_apply_proceeds(tmp_path: Path) -> None:
    cluster = FakeCluster()
    cluster.leases[LEASE_NAME] = ("killed", cluster.clock() + 0.5)  # it never renews
    waited: list[object] = []
    apply(machine(tmp_path, "b", cluster), "c", lock_timeout=30, on_lock_wait=waited.append)
    assert waited == ["cluster lease held by killed"]
    assert "a" in cluster.apps
    assert cluster.leases == {}  # released at the end


def test_the_lease_is_renewed_while_the_apply_runs(tmp_path: Path) -> None:
    cluster = FakeCluster()
    cluster.connected = True
    with cluster_lease(cluster, timeout=0, ttl_s=0.3) as holder:
        deadline = time.monotonic() + 1.2  # four times the TTL
        while time.monotonic() < deadline:
            assert cluster.acquire_lease(LEASE_NAME, "other", 0.3) == holder
            time.sleep(0.05)
    assert cluster.acquire_lease(LEASE_NAME, "other", 0.3) == "other"


def test_concurrent_applies_from_two_machines_are_serialised(tmp_path: Path) -> None:
    """Machine A is paused in the middle of its apply; B waits for A's lease, then finds nothing to do."""
    cluster = FakeCluster()
    a, b = machine(tmp_path, "a", cluster), machine(tmp_path, "b", cluster)
    paused, resume = threading.Event(), threading.Event()
    order: list[str] = []

    class PausingReporter:
        def start(self, action) -> None:
            if action.ref == "Application/a":
                paused.set()
                resume.wait(10)
            order.append("A " + action.ref)

        def progress(self, action, done, total) -> None:
            pass

        def finish(self, action, error) -> None:
            pass

    ta = threading.Thread(target=apply, args=(a, "c"), kwargs={"reporter": PausingReporter()})
    ta.start()
    assert paused.wait(10)
    result: list[object] = []

    def run_b() -> None:
        result.append(apply(b, "c", lock_timeout=30, on_lock_wait=lambda what: order.append("B waits")))
        order.append("B done")

    tb = threading.Thread(target=run_b)
    tb.start()
    deadline = time.monotonic() + 10
    while "B waits" not in order and time.monotonic() < deadline:
        time.sleep(0.01)
    assert "B waits" in order and "B done" not in order
    resume.set()
    ta.join(10)
    tb.join(10)
    assert order[-1] == "B done" and order.index("B waits") < order.index("A Link/a")
    assert not result[0].has_changes  # B saw A's objects as its own: nothing left to do


def test_model_versions_load_in_the_order_they_were_recorded_not_the_stores_sorted_order(
    tmp_path: Path,
) -> None:
    """Content-hash versions sort at random: ``zz`` recorded first, ``aa`` after, ``mm`` last."""
    registry = OwnershipRegistry(tmp_path)
    for version in ("zz", "aa", "mm"):
        registry.record_model("m", version, ModelRecord("c", f"img-{version}"))
    assert list(registry.load_models()["m"]) == ["zz", "aa", "mm"]
    registry.record_model("m", "zz", ModelRecord("c", "img-zz"))  # rolled back to: the newest again
    assert list(registry.load_models()["m"]) == ["aa", "mm", "zz"]
    body = json.loads((tmp_path / "reconciler" / "apps.json").read_text())
    del body["models"]["m"]["aa"]["recorded_at"]  # a record from before the field: the oldest
    (tmp_path / "reconciler" / "apps.json").write_text(json.dumps(body))
    assert list(registry.load_models()["m"]) == ["aa", "mm", "zz"]
