"""``engine.apply`` on the in-memory cluster port: manifests (loaded as the CLI loads them) to a
converged cluster, starting it first when it is not running."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.desired import desired_state
from reconciler.engine import Target, apply, plan_for
from reconciler.errors import ReconcilerError
from reconciler.loader import load_manifests
from reconciler.plan import Op
from tests.fakes.cluster import FakeCluster

MANIFESTS = """
apiVersion: clipper.ai/v1
kind: Cluster
metadata: {name: c}
spec: {backend: local}
---
apiVersion: clipper.ai/v1
kind: Model
metadata: {name: m}
spec:
  inputType: doubles
  version: v1
  replicas: 2
  source: {image: "registry.example/m:1"}
---
apiVersion: clipper.ai/v1
kind: Application
metadata: {name: a}
spec: {inputType: doubles, defaultOutput: "-1", latencySloMicros: 100000, model: m}
"""


def target(tmp_path: Path, cluster: FakeCluster, text: str = MANIFESTS) -> Target:
    (tmp_path / "m.yaml").write_text(text)
    manifests = load_manifests([str(tmp_path / "m.yaml")])
    return Target(desired_state(manifests), cluster, tmp_path / "state", manifests.files)


def test_apply_starts_the_cluster_then_converges_it(tmp_path: Path) -> None:
    cluster = FakeCluster(running=False)
    t = target(tmp_path, cluster)
    plan = apply(t, "c")
    assert [(a.op, a.ref) for a in plan.changes] == [
        (Op.CREATE, "Cluster/c"),
        (Op.CREATE, "Model/m"),
        (Op.CREATE, "Application/a"),
        (Op.CREATE, "Link/a"),
    ]
    starts = [c for c in cluster.calls if c[0] != "connect"]
    assert starts == [
        ("start_cluster",),
        ("start_replicas", "m", "v1", "2"),  # an image source: nothing to build
        ("wait_replicas", "m", "v1", "2"),
        ("register_version", "m", "v1"),
        ("register_application", "a"),
        ("link", "a", "m"),
    ]
    assert cluster.versions[("m", "v1")].image == "registry.example/m:1"
    assert not plan_for(t, "c", False)[0].has_changes


def test_a_restarted_cluster_with_state_is_planned_again(tmp_path: Path) -> None:
    """The cluster comes back with its store (SQLite): the model it already serves is not redeployed,
    and the executed plan still starts with the cluster action."""
    cluster = FakeCluster(running=False)
    t = target(tmp_path, cluster)
    apply(t, "c")
    cluster.running = cluster.connected = False  # stopped, store kept
    cluster.calls.clear()
    plan = apply(t, "c")
    assert [(a.op, a.ref) for a in plan.changes] == [(Op.CREATE, "Cluster/c")]
    assert plan.cluster_action is plan.actions[0]
    assert [c for c in cluster.calls if c[0] != "connect"] == [("start_cluster",)]


def test_conflicts_refuse_the_whole_apply(tmp_path: Path) -> None:
    cluster = FakeCluster()
    cluster.add_version("m", "v0", image="someone-elses")  # not in this owner's registry
    t = target(tmp_path, cluster)
    with pytest.raises(ReconcilerError, match="refusing to apply: Model/m exists"):
        apply(t, "c")
    assert [c for c in cluster.calls if c[0] != "connect"] == []


def test_a_clipper_error_becomes_a_reconciler_error(tmp_path: Path) -> None:
    from clipper_admin.exceptions import ClipperHTTPError

    cluster = FakeCluster()
    cluster.fail(
        "register_application a", ClipperHTTPError("Received error status code: 500 and message: x", 500)
    )
    with pytest.raises(ReconcilerError, match="status code: 500"):
        apply(target(tmp_path, cluster), "c")
