"""The apply history (issue 14 #12) on the in-memory cluster port: where it is kept, what an entry
holds (no secret), that only applies that change something are recorded, failures included, and that
it is bounded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clipper_admin.exceptions import ClipperHTTPError
from reconciler.engine import apply
from reconciler.errors import ReconcilerError
from reconciler.history import KEEP, History, desired_models
from tests.fakes.cluster import FakeCluster
from tests.unit.test_cluster_lock_ownership import machine
from tests.unit.test_engine import MANIFESTS


def test_applies_that_change_something_are_recorded_in_the_cluster(tmp_path: Path) -> None:
    cluster = FakeCluster()
    t = machine(tmp_path, "a", cluster)
    apply(t, "c")
    apply(t, "c")  # nothing to do: not recorded
    (e,) = t.history.entries()
    assert (e.number, e.result, e.revision) == (1, "succeeded", None)
    assert "@" in e.who
    assert any(c.startswith("create Model/m") for c in e.changes)
    assert e.desired["models"]["m"]["version"] == "v1"
    assert desired_models(e.desired)["m"].replicas == 2  # the stored state reads back
    assert ("reconciler", "history") in cluster.records
    assert not (t.cluster_dir / "reconciler" / "history.json").exists()


def test_the_admin_token_is_never_stored(tmp_path: Path) -> None:
    cluster = FakeCluster()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "m.yaml").write_text(
        MANIFESTS.replace("spec: {backend: local}", "spec: {backend: local, adminToken: hush-0123}")
    )
    from reconciler.engine import load_target

    t = load_target([str(tmp_path / "b" / "m.yaml")])
    t.cluster, t.cluster_dir = cluster, tmp_path / "state"
    apply(t, "c")
    assert "hush-0123" not in cluster.records[("reconciler", "history")]


def test_a_failed_apply_is_recorded_with_its_error(tmp_path: Path) -> None:
    cluster = FakeCluster()
    cluster.fail(
        "register_application a", ClipperHTTPError("Received error status code: 500 and message: x", 500)
    )
    t = machine(tmp_path, "a", cluster)
    with pytest.raises(ReconcilerError):
        apply(t, "c")
    (e,) = t.history.entries()
    assert e.result.startswith("failed: ") and "status code: 500" in e.result


def test_an_opt_out_cluster_keeps_the_history_on_this_machine(tmp_path: Path) -> None:
    cluster = FakeCluster()
    cluster.protected = False
    t = machine(tmp_path, "a", cluster)
    apply(t, "c")
    path = t.cluster_dir / "reconciler" / "history.json"
    assert path.stat().st_mode & 0o777 == 0o600 and len(json.loads(path.read_text())) == 1
    assert cluster.records == {}


def test_the_history_keeps_the_last_entries(tmp_path: Path) -> None:
    h = History(tmp_path)
    for i in range(KEEP + 5):
        h.append(f"r{i}", "u@h", [], "succeeded", {})
    entries = h.entries()
    assert len(entries) == KEEP
    assert (entries[0].number, entries[-1].number, entries[-1].revision) == (6, KEEP + 5, f"r{KEEP + 4}")
