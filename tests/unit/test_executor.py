"""Table tests of the executor on the in-memory cluster port: every kind of action, in order, and
rollouts that fail halfway (the rollout stops, the previous version keeps serving, the error is
reported)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from clipper_admin.exceptions import ClipperException, ClipperHTTPError, ErrorKind
from reconciler.deploy import Artifact
from reconciler.desired import DesiredApp, DesiredModel, DesiredState
from reconciler.errors import ReconcilerError
from reconciler.execute import Executor
from reconciler.observed import AppRecord, ModelRecord, observe
from reconciler.ownership import OwnershipRegistry
from reconciler.plan import Action, Plan, make_plan
from reconciler.port import ClusterPort, ModelBuild
from schemas import ClusterSpec
from schemas.model import HealthCheck
from tests.fakes.cluster import FakeCluster

OWNER = "team"


def dm(
    name: str = "m", version: str = "v1", replicas: int = 1, input_type: str = "doubles", health: bool = False
) -> DesiredModel:
    check = HealthCheck(input=[1.0, 2.0], timeout_seconds=3) if health else None
    return DesiredModel(name, version, input_type, replicas, -1, f"hash-{version}", False, health=check)


def da(
    name: str = "a", model: str | None = "m", default: str = "None", input_type: str = "doubles"
) -> DesiredApp:
    return DesiredApp(name, input_type, default, 100000, model)


def build(cluster: ClusterPort, m: DesiredModel, registry: str | None) -> Artifact:
    """The executor's build step without a manifest source: the port's build, on a made-up directory."""
    return Artifact(cluster.build_model(ModelBuild(m.name, m.version, "/nowhere", "base", registry)))


@dataclass
class Seed:
    """What exists before the test: versions (registered by this owner), apps, links."""

    versions: list[tuple[str, str, int, bool]] = field(
        default_factory=list
    )  # name, version, replicas, current
    apps: list[tuple[str, str | None]] = field(default_factory=list)  # name, linked model
    default_output: str = "None"


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str | None]] = []

    def start(self, action: Action) -> None:
        self.events.append(("start", action.ref, None))

    def progress(self, action: Action, done: int, total: int) -> None:
        pass

    def finish(self, action: Action, error: BaseException | None) -> None:
        self.events.append(("finish", action.ref, type(error).__name__ if error else None))


@dataclass
class World:
    cluster: FakeCluster
    registry: OwnershipRegistry
    reporter: Recorder

    def plan(self, state: DesiredState, prune: bool = False) -> Plan:
        self.cluster.connect()
        obs = observe(self.cluster, self.registry.load(), self.registry.load_models())
        return make_plan(state, obs, OWNER, prune)

    def run(self, state: DesiredState, prune: bool = False) -> Plan:
        plan = self.plan(state, prune)
        self.cluster.calls.clear()
        executor = Executor(self.cluster, state, OWNER, self.registry, "abc123", self.reporter, builder=build,
                            stop_timeout_s=0.0, drain_s=0.0)  # fmt: skip
        executor.run(plan)
        return plan


def world(tmp_path: Path, seed: Seed) -> World:
    cluster = FakeCluster()
    registry = OwnershipRegistry(tmp_path)
    for name, version, replicas, current in seed.versions:
        cluster.add_version(name, version, replicas, image=f"img-{version}", current=current)
        registry.record_model(name, version, ModelRecord(OWNER, f"img-{version}", f"hash-{version}"))
    owners = {}
    for app, model in seed.apps:
        cluster.register_application(app, "doubles", seed.default_output, 100000)
        if model:
            cluster.link(app, model)
        owners[app] = AppRecord(OWNER)
    registry.save(owners)
    cluster.calls.clear()
    return World(cluster, registry, Recorder())


def state(models: list[DesiredModel] = (), apps: list[DesiredApp] = ()) -> DesiredState:  # type: ignore[assignment]
    return DesiredState("c", ClusterSpec(), {m.name: m for m in models}, {a.name: a for a in apps})


SERVING = [("m", "v1", 1, True)]
CASES = {
    "create model, app and link": (
        Seed(),
        state([dm(replicas=2)], [da()]),
        False,
        [
            ("build_model", "m", "v1"),
            ("start_replicas", "m", "v1", "2"),
            ("wait_replicas", "m", "v1", "2"),
            ("register_version", "m", "v1"),
            ("register_application", "a"),
            ("link", "a", "m"),
        ],
    ),
    "converged: no call": (Seed(SERVING, [("a", "m")]), state([dm()], [da()]), False, []),
    "replicas scale in place": (
        Seed(SERVING),
        state([dm(replicas=3)]),
        False,
        [("scale_replicas", "m", "v1", "3"), ("wait_replicas", "m", "v1", "3")],
    ),
    "new version: rolling replace": (
        Seed(SERVING, [("a", "m")]),
        state([dm(version="v2")], [da()]),
        False,
        [
            ("build_model", "m", "v2"),
            ("start_replicas", "m", "v2", "1"),
            ("wait_replicas", "m", "v2", "1"),
            ("register_version", "m", "v2"),
            ("stop_replicas", "m", "v1"),
        ],
    ),
    "rollback to a registered version with no replicas": (
        Seed([("m", "v1", 0, False), ("m", "v2", 1, True)]),
        state([dm(version="v1")]),
        False,
        [
            ("start_replicas", "m", "v1", "1"),
            ("wait_replicas", "m", "v1", "1"),
            ("set_current_version", "m", "v1"),
            ("stop_replicas", "m", "v2"),
        ],
    ),
    "stale replicas of an old version stop": (
        Seed([("m", "v1", 1, False), ("m", "v2", 1, True)]),
        state([dm(version="v2")]),
        False,
        [("stop_replicas", "m", "v1")],
    ),
    "app update (default output) in place: never unregistered or unlinked": (
        Seed(SERVING, [("a", "m")]),
        state([dm()], [da(default="x")]),
        False,
        [("update_application", "a")],
    ),
    "relink to another model": (
        Seed([*SERVING, ("n", "v1", 1, True)], [("a", "m")]),
        state([dm(), dm(name="n")], [da(model="n")]),
        False,
        [("unlink", "a", "m"), ("link", "a", "n")],
    ),
    "unlink": (
        Seed(SERVING, [("a", "m")]),
        state([dm()], [da(model=None)]),
        False,
        [("unlink", "a", "m")],
    ),
    "prune: apps before models": (
        Seed(SERVING, [("a", "m")]),
        state(),
        True,
        [("unregister_application", "a"), ("delete_model", "m")],
    ),
    "without --prune nothing is deleted": (Seed(SERVING, [("a", "m")]), state(), False, []),
    "health check: the new version is registered aside, answers a smoke prediction, then takes traffic": (
        Seed(SERVING, [("a", "m")]),
        state([dm(version="v2", health=True)], [da()]),
        False,
        [
            ("build_model", "m", "v2"),
            ("start_replicas", "m", "v2", "1"),
            ("wait_replicas", "m", "v2", "1"),
            ("register_version", "m", "v2", "not-current"),
            ("smoke_predict", "m", "v2"),
            ("set_current_version", "m", "v2"),
            ("stop_replicas", "m", "v1"),
        ],
    ),
    "health check of a first version: no traffic to protect, registered current": (
        Seed(),
        state([dm(health=True)]),
        False,
        [
            ("build_model", "m", "v1"),
            ("start_replicas", "m", "v1", "1"),
            ("wait_replicas", "m", "v1", "1"),
            ("register_version", "m", "v1"),
            ("smoke_predict", "m", "v1"),
        ],
    ),
    "health check on a rollback to a registered version": (
        Seed([("m", "v1", 0, False), ("m", "v2", 1, True)]),
        state([dm(version="v1", health=True)]),
        False,
        [
            ("start_replicas", "m", "v1", "1"),
            ("wait_replicas", "m", "v1", "1"),
            ("smoke_predict", "m", "v1"),
            ("set_current_version", "m", "v1"),
            ("stop_replicas", "m", "v2"),
        ],
    ),
    "health check: scaling the serving version sends no smoke prediction": (
        Seed(SERVING),
        state([dm(replicas=2, health=True)]),
        False,
        [("scale_replicas", "m", "v1", "2"), ("wait_replicas", "m", "v1", "2")],
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_executor_table(tmp_path: Path, name: str) -> None:
    seed, desired, prune, expected = CASES[name]
    w = world(tmp_path, seed)
    plan = w.run(desired, prune)
    assert w.cluster.calls == expected
    # every mutating action was reported, in plan order, without error
    refs = [a.ref for a in plan.changes if a.kind != "Cluster"]
    assert w.reporter.events == [e for ref in refs for e in (("start", ref, None), ("finish", ref, None))]
    # and the cluster now plans as converged
    if not prune or not desired.models:
        assert not w.plan(desired, prune).has_changes


def test_rollout_records_and_labels_the_version(tmp_path: Path) -> None:
    w = world(tmp_path, Seed())
    w.run(state([dm()]))
    assert w.registry.load_models()["m"]["v1"] == ModelRecord(OWNER, "built/m:v1", "hash-v1")
    labels = w.cluster.versions[("m", "v1")].labels
    assert labels[:3] == (
        f"clipper.ai/managed-by={OWNER}",
        "clipper.ai/content-hash=hash-v1",
        "clipper.ai/git-commit=abc123",
    )


def test_replicas_that_never_connect_stop_the_rollout(tmp_path: Path) -> None:
    w = world(tmp_path, Seed(SERVING, [("a", "m")]))
    w.cluster.never_connect.add(("m", "v2"))
    with pytest.raises(ReconcilerError, match="0/1 replicas healthy"):
        w.run(state([dm(version="v2")], [da(default="x")]))
    assert w.cluster.calls == [
        ("build_model", "m", "v2"),
        ("start_replicas", "m", "v2", "1"),
        ("wait_replicas", "m", "v2", "1"),
        ("stop_replicas", "m", "v2"),  # the new replicas go
    ]
    assert w.cluster.serving("m") == ("v1", 1)  # the previous version keeps serving
    assert ("m", "v2") not in w.cluster.versions and "v2" not in w.registry.load_models()["m"]
    # the failed action is reported; the app after it is never touched
    assert w.reporter.events == [("start", "Model/m", None), ("finish", "Model/m", "ReconcilerError")]
    assert w.cluster.apps["a"].default_output == "None"


def test_a_refused_registration_stops_the_new_replicas(tmp_path: Path) -> None:
    w = world(tmp_path, Seed(SERVING))
    w.cluster.fail("register_version m v2", ClipperHTTPError("Received error status code: 400 ...", 400))
    with pytest.raises(ClipperException) as info:
        w.run(state([dm(version="v2")]))
    assert info.value.status == 400 and info.value.kind is ErrorKind.REJECTED
    assert w.cluster.calls[-1] == ("stop_replicas", "m", "v2")
    assert w.cluster.serving("m") == ("v1", 1)
    assert w.cluster.running_replicas("m", "v2") == 0


def test_a_failed_build_starts_nothing(tmp_path: Path) -> None:
    w = world(tmp_path, Seed(SERVING))
    w.cluster.fail("build_model m v2", ClipperException("pip install failed"))
    with pytest.raises(ClipperException, match="pip install failed"):
        w.run(state([dm(version="v2")]))
    assert w.cluster.calls == [("build_model", "m", "v2")]
    assert w.cluster.serving("m") == ("v1", 1)


def test_a_failure_in_a_later_action_keeps_what_was_done(tmp_path: Path) -> None:
    w = world(tmp_path, Seed())
    w.cluster.fail("link a m", ClipperHTTPError("Received error status code: 400 ...", 400))
    with pytest.raises(ClipperHTTPError):
        w.run(state([dm()], [da()]))
    assert w.cluster.serving("m") == ("v1", 1) and "a" in w.cluster.apps
    assert w.reporter.events[-2:] == [("start", "Link/a", None), ("finish", "Link/a", "ClipperHTTPError")]
    # the next apply only links
    assert [a.ref for a in w.plan(state([dm()], [da()])).changes] == ["Link/a"]


def test_a_failed_stop_after_a_failed_rollout_is_a_note_on_the_rollouts_error(tmp_path: Path) -> None:
    w = world(tmp_path, Seed(SERVING))
    w.cluster.never_connect.add(("m", "v2"))
    w.cluster.fail("stop_replicas m v2", ClipperException("backend gone"))
    with pytest.raises(ReconcilerError) as info:
        w.run(state([dm(version="v2")]))
    assert "stopping the new replicas of m:v2 failed too: backend gone" in info.value.__notes__[0]


def test_the_app_is_recorded_before_it_is_registered(tmp_path: Path) -> None:
    """An apply interrupted right after registering an app must not orphan it."""
    w = world(tmp_path, Seed(SERVING))
    w.cluster.fail("register_application a", KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        w.run(state([dm()], [da(model=None)]))
    assert w.registry.load()["a"].owner == OWNER


def test_a_version_failing_its_health_check_never_takes_traffic(tmp_path: Path) -> None:
    w = world(tmp_path, Seed(SERVING, [("a", "m")]))
    w.cluster.broken.add(("m", "v2"))
    with pytest.raises(ReconcilerError, match="health check failed: ValueError: broken model"):
        w.run(state([dm(version="v2", health=True)], [da(default="x")]))
    assert w.cluster.calls[-3:] == [
        ("register_version", "m", "v2", "not-current"),
        ("smoke_predict", "m", "v2"),
        ("stop_replicas", "m", "v2"),  # the new replicas go; the previous version was never stopped
    ]
    assert w.cluster.serving("m") == ("v1", 1)
    assert w.cluster.smoked == [("m", "v2", [1.0, 2.0])]
    assert w.reporter.events == [("start", "Model/m", None), ("finish", "Model/m", "ReconcilerError")]
    assert w.cluster.apps["a"].default_output == "None"  # the actions after it are not run
    # the next apply tries the rollout again (and fails the same way while the model is broken)
    again = w.plan(state([dm(version="v2", health=True)]))
    assert [a.ref for a in again.changes] == ["Model/m"]
    with pytest.raises(ReconcilerError, match="health check failed"):
        w.run(state([dm(version="v2", health=True)]))
    assert w.cluster.serving("m") == ("v1", 1)
    # once it is fixed, it rolls out
    w.cluster.broken.clear()
    w.run(state([dm(version="v2", health=True)]))
    assert w.cluster.serving("m") == ("v2", 1)


def test_hung_replicas_do_not_count_as_ready(tmp_path: Path) -> None:
    w = world(tmp_path, Seed(SERVING))
    w.cluster.unhealthy[("m", "v1")] = 1  # the query frontend reports the only replica hung
    with pytest.raises(ReconcilerError, match="1/2 replicas healthy"):
        w.run(state([dm(replicas=2)]))


def test_a_cluster_settings_change_is_executed_through_the_port(tmp_path: Path) -> None:
    w = world(tmp_path, Seed())
    w.cluster.settings = {"cache_size_bytes": 33554432, "admin_auth": "token", "admin_token": "old"}
    w.cluster.reconfigurable = frozenset({"cache_size_bytes", "admin_auth", "admin_token"})
    spec = ClusterSpec(cache_size_bytes=1024, admin_token="new-token")
    plan = w.run(DesiredState("c", spec, {}, {}))
    assert "restart of the query frontend" in plan.cluster_action.reason
    assert w.cluster.calls == [("reconfigure_cluster", "admin_token", "cache_size_bytes")]
    assert w.cluster.settings == {"cache_size_bytes": 1024, "admin_auth": "token", "admin_token": "new-token"}
    assert ("finish", "Cluster/c", None) in w.reporter.events
    assert not w.plan(DesiredState("c", spec, {}, {})).has_changes  # converged


def test_a_refused_cluster_setting_is_a_conflict_and_nothing_runs(tmp_path: Path) -> None:
    w = world(tmp_path, Seed())
    w.cluster.settings = {"allow_unauthenticated_replicas": False}
    plan = w.plan(DesiredState("c", ClusterSpec(allow_unauthenticated_replicas=True), {}, {}))
    assert [a.ref for a in plan.conflicts] == ["Cluster/c"]
    assert "delete the cluster and apply again" in plan.conflicts[0].reason
