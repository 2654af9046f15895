"""``Cluster.spec.keepVersions`` (issue 14 #12): older versions the reconciler deployed are
unregistered and their images removed; the current and the previous one always stay."""

from __future__ import annotations

from pathlib import Path

from reconciler.engine import apply
from tests.fakes.cluster import FakeCluster
from tests.unit.test_cluster_lock_ownership import machine
from tests.unit.test_engine import MANIFESTS


def roll(t_dir: Path, cluster: FakeCluster, version: str, keep: str = "") -> None:
    text = MANIFESTS.replace("version: v1", f"version: {version}")
    if keep:
        text = text.replace("spec: {backend: local}", f"spec: {{backend: local, keepVersions: {keep}}}")
    (t_dir / "a" / "m.yaml").write_text(text)
    from reconciler.engine import load_target

    t = load_target([str(t_dir / "a" / "m.yaml")])
    t.cluster, t.cluster_dir = cluster, t_dir / "state"
    apply(t, "c")


def test_versions_beyond_keep_versions_are_removed_oldest_first(tmp_path: Path) -> None:
    cluster = FakeCluster()
    machine(tmp_path, "a", cluster)
    for v in ("v1", "v2", "v3"):
        roll(tmp_path, cluster, v)
    assert {v for (_, v) in cluster.versions} == {"v1", "v2", "v3"}  # default 3: all kept
    assert not [c for c in cluster.calls if c[0] == "remove_versions"]
    roll(tmp_path, cluster, "v4")
    assert {v for (_, v) in cluster.versions} == {"v2", "v3", "v4"}
    assert ("remove_versions", "m", "v1") in cluster.calls
    # a rollback to v2 makes it current: then v4 (the previous) and v2 stay, v3 is the oldest use
    roll(tmp_path, cluster, "v2", keep="2")
    assert cluster.current["m"] == "v2"
    assert {v for (_, v) in cluster.versions} == {"v2", "v4"}


def test_versions_the_reconciler_did_not_deploy_are_never_removed(tmp_path: Path) -> None:
    cluster = FakeCluster()
    machine(tmp_path, "a", cluster)
    for v in ("v1", "v2"):
        roll(tmp_path, cluster, v, keep="2")
    cluster.add_version("m", "someone-elses", replicas=0, image="theirs", current=False)
    roll(tmp_path, cluster, "v3", keep="2")
    assert {v for (_, v) in cluster.versions} == {"v2", "v3", "someone-elses"}
