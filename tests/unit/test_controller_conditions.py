"""``status_doc``: the status a custom resource gets from the reconciler's verdict on its object."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from reconciler.controller.conditions import Verdict, status_doc, status_patch
from reconciler.status import Health, ObjectStatus, Sync

T0 = datetime(2026, 12, 1, 14, 0, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)


def model(sync: Sync, health: Health, reason: str = "", **kw: Any) -> ObjectStatus:
    fields = {"desired_replicas": 2, "actual_replicas": 2, "current_version": "v2", "previous_version": "v1"}
    return ObjectStatus("Model", "m", sync, health, reason, **{**fields, **kw})


def table(doc: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in doc["conditions"]}


CASES = [
    # (object status, verdict) -> (sync, health, {type: (status, reason)})
    pytest.param(model(Sync.SYNCED, Health.HEALTHY), None, "Synced", "Healthy",
                 {"Ready": ("True", "Converged"), "Synced": ("True", "Converged"),
                  "Progressing": ("False", "Converged"), "Degraded": ("False", "Converged")}, id="converged"),
    pytest.param(model(Sync.OUT_OF_SYNC, Health.MISSING, "would create"), None, "OutOfSync", "Missing",
                 {"Ready": ("False", "OutOfSync"), "Synced": ("False", "OutOfSync"),
                  "Progressing": ("False", "OutOfSync"), "Degraded": ("False", "OutOfSync")}, id="not-applied"),
    pytest.param(model(Sync.SYNCED, Health.PROGRESSING, "1/2 replicas of v2 healthy", actual_replicas=1), None,
                 "Synced", "Progressing",
                 {"Ready": ("False", "RollingOut"), "Synced": ("True", "Converged"),
                  "Progressing": ("True", "RollingOut"), "Degraded": ("False", "RollingOut")}, id="scaling"),
    pytest.param(model(Sync.SYNCED, Health.DEGRADED, "0/2 replicas of v2 healthy", actual_replicas=0), None,
                 "Synced", "Degraded",
                 {"Ready": ("False", "ReplicasUnavailable"), "Synced": ("True", "Converged"),
                  "Progressing": ("False", "ReplicasUnavailable"),
                  "Degraded": ("True", "ReplicasUnavailable")}, id="no-replica"),
    pytest.param(model(Sync.CONFLICT, Health.HEALTHY, "managed by other"), None, "Conflict", "Healthy",
                 {"Ready": ("False", "Conflict"), "Synced": ("False", "Conflict"),
                  "Progressing": ("False", "Converged"), "Degraded": ("False", "Converged")}, id="conflict"),
    pytest.param(model(Sync.OUT_OF_SYNC, Health.HEALTHY), Verdict("Applying", "applying v3"),
                 "OutOfSync", "Progressing",
                 {"Ready": ("False", "Applying"), "Synced": ("False", "Applying"),
                  "Progressing": ("True", "Applying"), "Degraded": ("False", "Applying")}, id="applying"),
    pytest.param(model(Sync.OUT_OF_SYNC, Health.DEGRADED, "v3 does not serve; v2 serves"),
                 Verdict("ApplyFailed", "health check of v3 failed"), "OutOfSync", "Degraded",
                 {"Ready": ("False", "ApplyFailed"), "Synced": ("False", "ApplyFailed"),
                  "Progressing": ("False", "ApplyFailed"), "Degraded": ("True", "ApplyFailed")},
                 id="apply-failed"),
    pytest.param(None, Verdict("InvalidSpec", "spec.replicas: must be >= 0"), "OutOfSync", "Degraded",
                 {"Ready": ("False", "InvalidSpec"), "Synced": ("False", "InvalidSpec"),
                  "Progressing": ("False", "InvalidSpec"), "Degraded": ("True", "InvalidSpec")}, id="invalid"),
    pytest.param(None, Verdict("NoCluster", "no Cluster in namespace ns"), "OutOfSync", "Degraded",
                 {"Ready": ("False", "NoCluster"), "Synced": ("False", "NoCluster"),
                  "Progressing": ("False", "NoCluster"), "Degraded": ("True", "NoCluster")}, id="no-cluster"),
    pytest.param(model(Sync.SYNCED, Health.HEALTHY), Verdict("Deleting", "removing what it owns"),
                 "Synced", "Progressing",
                 {"Ready": ("False", "Deleting"), "Synced": ("True", "Converged"),
                  "Progressing": ("True", "Deleting"), "Degraded": ("False", "Deleting")}, id="deleting"),
]  # fmt: skip


@pytest.mark.parametrize(("obj", "verdict", "sync", "health", "want"), CASES)
def test_conditions_table(
    obj: ObjectStatus | None, verdict: Verdict | None, sync: str, health: str, want: dict[str, Any]
) -> None:
    doc = status_doc("Model", obj, 4, None, T0, verdict)
    assert (doc["sync"], doc["health"]) == (sync, health)
    assert table(doc) == want
    assert doc["observedGeneration"] == 4
    for c in doc["conditions"]:
        assert c["observedGeneration"] == 4
        assert c["lastTransitionTime"] == "2026-12-01T14:00:00Z"
        assert (c["message"] == "") == (c["reason"] == "Converged")
    assert (table(doc)["Ready"][0] == "True") == (sync == "Synced" and health == "Healthy")


def test_the_message_says_why_with_the_verdict_first() -> None:
    doc = status_doc("Model", model(Sync.OUT_OF_SYNC, Health.DEGRADED, "v2 serves"), 1, None, T0,
                     Verdict("ApplyFailed", "health check failed"))  # fmt: skip
    assert doc["message"] == "health check failed; v2 serves"
    assert {c["message"] for c in doc["conditions"]} == {"health check failed; v2 serves"}


def test_model_fields() -> None:
    doc = status_doc("Model", model(Sync.SYNCED, Health.PROGRESSING, actual_replicas=1), 1, None, T0)
    assert (doc["currentVersion"], doc["previousVersion"], doc["readyReplicas"], doc["replicas"]) == (
        "v2", "v1", 1, 2)  # fmt: skip
    first = status_doc("Model", model(Sync.SYNCED, Health.HEALTHY, previous_version=None), 1, None, T0)
    assert "previousVersion" not in first


def test_an_unplanned_model_keeps_the_versions_it_had() -> None:
    before = status_doc("Model", model(Sync.SYNCED, Health.HEALTHY), 1, None, T0)
    doc = status_doc("Model", None, 2, before, T1, Verdict("InvalidSpec", "bad"))
    assert (doc["currentVersion"], doc["previousVersion"], doc["readyReplicas"]) == ("v2", "v1", 2)


def test_other_kinds_have_no_model_fields() -> None:
    app = ObjectStatus("Application", "a", Sync.SYNCED, Health.HEALTHY, model="m")
    doc = status_doc("Application", app, 1, None, T0)
    assert set(doc) == {"observedGeneration", "sync", "health", "message", "conditions"}


def test_last_transition_time_changes_only_with_the_status() -> None:
    first = status_doc("Model", model(Sync.SYNCED, Health.HEALTHY), 1, None, T0)
    same = status_doc("Model", model(Sync.SYNCED, Health.HEALTHY), 1, first, T1)
    assert same == first  # nothing to write
    assert status_patch(first, same) is None
    scaling = status_doc("Model", model(Sync.SYNCED, Health.PROGRESSING, actual_replicas=1), 2, first, T1)
    times = {c["type"]: c["lastTransitionTime"] for c in scaling["conditions"]}
    assert times == {"Ready": "2026-12-01T14:05:00Z", "Synced": "2026-12-01T14:00:00Z",
                     "Progressing": "2026-12-01T14:05:00Z", "Degraded": "2026-12-01T14:00:00Z"}  # fmt: skip
    # a reason or message change without a status change keeps the time too
    degraded = status_doc("Model", model(Sync.SYNCED, Health.DEGRADED, actual_replicas=0), 3, scaling,
                          T1 + timedelta(minutes=1))  # fmt: skip
    assert {c["type"]: c["lastTransitionTime"] for c in degraded["conditions"]}[
        "Ready"
    ] == "2026-12-01T14:05:00Z"


def test_status_patch_removes_what_the_new_status_lacks() -> None:
    before = status_doc("Model", model(Sync.SYNCED, Health.HEALTHY), 1, None, T0)
    after = status_doc("Model", model(Sync.SYNCED, Health.HEALTHY, previous_version=None), 1, before, T0)
    patch = status_patch(before, after)
    assert patch is not None and patch["previousVersion"] is None
    assert status_patch(None, after) == after
