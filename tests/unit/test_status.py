"""Table tests of ``clipper status`` as a pure function: desired + observed + plan -> per object sync,
health, reason, replicas and versions; the exit status; the JSON format."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from reconciler.desired import DesiredApp, DesiredModel, DesiredState
from reconciler.observed import AppRecord, ModelRecord, Observed, ObservedApp, ObservedVersion
from reconciler.plan import make_plan
from reconciler.status import Health, ObjectStatus, Sync, exit_code, status_json, statuses
from schemas import ClusterSpec

OWNER = "c"


@dataclass
class Seen:
    """What the cluster reports: (name, version, healthy replicas, current, owner) and apps."""

    versions: list[tuple[str, str, int, bool, str]] = field(default_factory=list)
    apps: list[tuple[str, str | None]] = field(default_factory=list)  # name, linked model
    running: bool = True

    def observed(self) -> Observed:
        obs = Observed(running=self.running)
        for name, version, replicas, current, owner in self.versions:
            obs.models.setdefault(name, {})[version] = ObservedVersion(
                name, version, "doubles", (f"clipper.ai/managed-by={owner}", "clipper.ai/git-commit=abc123"),
                f"img-{version}", current, replicas,
            )  # fmt: skip
            if owner == OWNER:
                obs.model_records.setdefault(name, {})[version] = ModelRecord(owner, f"img-{version}")
        for name, model in self.apps:
            obs.apps[name] = ObservedApp(name, "doubles", "None", 100000, (model,) if model else ())
            obs.app_owners[name] = AppRecord(OWNER)
        return obs


def desired(models: dict[str, tuple[str, int]], apps: dict[str, str | None]) -> DesiredState:
    return DesiredState(
        "c",
        ClusterSpec(),
        {n: DesiredModel(n, v, "doubles", r, -1, f"h-{v}", True) for n, (v, r) in models.items()},
        {n: DesiredApp(n, "doubles", "None", 100000, m) for n, m in apps.items()},
    )


def run(seen: Seen, want: DesiredState | None) -> dict[str, ObjectStatus]:
    obs = seen.observed()
    plan = make_plan(want, obs, OWNER) if want is not None else None
    return {f"{o.kind}/{o.name}": o for o in statuses(want, obs, plan, "abc123-dirty")}


ONE = desired({"m": ("v1", 1)}, {"a": "m"})
SERVING = Seen([("m", "v1", 1, True, OWNER)], [("a", "m")])

# name: (seen, desired, ref, sync, health, reason contains)
CASES = {
    "converged": (SERVING, ONE, "Model/m", Sync.SYNCED, Health.HEALTHY, ""),
    "converged app": (SERVING, ONE, "Application/a", Sync.SYNCED, Health.HEALTHY, ""),
    "failed rollout: the new version registered aside without replicas": (
        Seen([("m", "v1", 1, True, OWNER), ("m", "v2", 0, False, OWNER)], [("a", "m")]),
        desired({"m": ("v2", 1)}, {"a": "m"}),
        "Model/m", Sync.OUT_OF_SYNC, Health.DEGRADED, "v2 is registered but does not serve",
    ),
    "rolling out: the new version has replicas, not yet current": (
        Seen([("m", "v1", 1, True, OWNER), ("m", "v2", 1, False, OWNER)], [("a", "m")]),
        desired({"m": ("v2", 1)}, {"a": "m"}),
        "Model/m", Sync.OUT_OF_SYNC, Health.PROGRESSING, "v2 is rolling out; v1 serves",
    ),
    "edited, not applied: what runs is healthy": (
        SERVING, desired({"m": ("v2", 1)}, {"a": "m"}), "Model/m", Sync.OUT_OF_SYNC, Health.HEALTHY, "",
    ),
    "scale-down not finished": (
        Seen([("m", "v1", 2, True, OWNER)], [("a", "m")]), ONE,
        "Model/m", Sync.OUT_OF_SYNC, Health.PROGRESSING, "2/1 replicas of v1 healthy",
    ),
    "no healthy replica": (
        Seen([("m", "v1", 0, True, OWNER)], [("a", "m")]), ONE,
        "Model/m", Sync.OUT_OF_SYNC, Health.DEGRADED, "0/1 replicas of v1 healthy",
    ),
    "an app whose model has no healthy replica answers defaults": (
        Seen([("m", "v1", 0, True, OWNER)], [("a", "m")]), ONE,
        "Application/a", Sync.SYNCED, Health.DEGRADED, "model m has no healthy replica",
    ),
    "missing model": (Seen(), ONE, "Model/m", Sync.OUT_OF_SYNC, Health.MISSING, "would create"),
    "missing app": (Seen([("m", "v1", 1, True, OWNER)]), ONE, "Application/a", Sync.OUT_OF_SYNC, Health.MISSING,
                    "not registered"),
    "unlinked app": (
        Seen([("m", "v1", 1, True, OWNER)], [("a", None)]), ONE,
        "Application/a", Sync.OUT_OF_SYNC, Health.HEALTHY, "Link",
    ),
    "someone else's model": (
        Seen([("m", "v1", 1, True, "other")], [("a", "m")]), ONE, "Model/m", Sync.CONFLICT, Health.HEALTHY,
        "left untouched",
    ),
    "would prune": (
        Seen([("m", "v1", 1, True, OWNER), ("old", "v1", 1, True, OWNER)], [("a", "m")]), ONE,
        "Model/old", Sync.OUT_OF_SYNC, Health.HEALTHY, "",
    ),
    "no manifests: sync unknown, health only": (
        Seen([("m", "v1", 0, True, OWNER)], [("a", "m")]), None, "Model/m", Sync.UNKNOWN, Health.DEGRADED,
        "no healthy replica of v1",
    ),
    "cluster not running": (Seen(running=False), ONE, "Cluster/c", Sync.OUT_OF_SYNC, Health.MISSING, "not running"),
}  # fmt: skip


@pytest.mark.parametrize("name", list(CASES))
def test_status_table(name: str) -> None:
    seen, want, ref, sync, health, reason = CASES[name]
    o = run(seen, want)[ref]
    assert (o.sync, o.health) == (sync, health), o
    assert reason in o.reason, o.reason
    assert o.ok is (sync in (Sync.SYNCED, Sync.UNKNOWN) and health is Health.HEALTHY)


def test_exit_status_is_zero_only_when_everything_is_synced_and_healthy() -> None:
    assert exit_code(list(run(SERVING, ONE).values())) == 0
    failed = Seen([("m", "v1", 1, True, OWNER), ("m", "v2", 0, False, OWNER)], [("a", "m")])
    assert exit_code(list(run(failed, desired({"m": ("v2", 1)}, {"a": "m"})).values())) == 1


def test_versions_replicas_and_revision() -> None:
    seen = Seen([("m", "v1", 0, False, OWNER), ("m", "v2", 2, True, OWNER)], [("a", "m")])
    o = run(seen, desired({"m": ("v2", 2)}, {"a": "m"}))["Model/m"]
    assert (o.current_version, o.previous_version) == ("v2", "v1")
    assert (o.desired_replicas, o.actual_replicas) == (2, 2)
    assert (o.revision, o.deployed_revision) == ("abc123-dirty", "abc123")  # never cut
    # a version recorded later that never took traffic (it failed its health gate: not registered) is not
    # the previous version; the one that served before the current one is
    failed = Seen(seen.versions, seen.apps)
    obs = failed.observed()
    obs.model_records["m"] = {"v1": ModelRecord(OWNER, "img-v1"), "v2": ModelRecord(OWNER, "img-v2"),
                              "v3": ModelRecord(OWNER, "img-v3")}  # fmt: skip
    o = {f"{s.kind}/{s.name}": s for s in statuses(desired({"m": ("v2", 2)}, {"a": "m"}), obs, None, None)}
    assert (o["Model/m"].current_version, o["Model/m"].previous_version) == ("v2", "v1")
    # out of sync: no revision is claimed
    assert run(seen, desired({"m": ("v3", 2)}, {"a": "m"}))["Model/m"].revision is None


def test_json_format() -> None:
    objects = list(run(SERVING, ONE).values())
    doc = status_json("c", objects, "abc123")
    assert (doc["formatVersion"], doc["cluster"], doc["revision"], doc["ok"]) == (1, "c", "abc123", True)
    model = next(o for o in doc["objects"] if o["kind"] == "Model")
    assert model == {
        "kind": "Model",
        "name": "m",
        "sync": {"status": "Synced", "revision": "abc123-dirty"},
        "health": {"status": "Healthy", "reason": None},
        "replicas": {"desired": 1, "actual": 1},
        "versions": {"current": "v1", "previous": None, "deployedRevision": "abc123"},
        "model": None,
    }
    app = next(o for o in doc["objects"] if o["kind"] == "Application")
    assert (app["replicas"], app["versions"], app["model"]) == (None, None, "m")
