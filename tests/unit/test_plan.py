"""Table tests of the pure plan function (desired, observed) -> ordered, classified actions."""

from __future__ import annotations

import pytest

from reconciler.desired import DesiredApp, DesiredModel, DesiredState
from reconciler.labels import CONTENT_HASH, MANAGED_BY
from reconciler.observed import (
    AppRecord,
    ModelRecord,
    Observed,
    ObservedApp,
    ObservedVersion,
    RunningSettings,
)
from reconciler.plan import Action, Op, Plan, make_delete_plan, make_plan
from schemas import ClusterSpec

OWNER = "team"


def dm(name="m", version="v1", replicas=1, explicit=False, digest=None, input_type="doubles"):
    return DesiredModel(name, version, input_type, replicas, -1, digest or version, explicit)


def da(name="a", model="m", default="None", slo=100000, input_type="doubles"):
    return DesiredApp(name, input_type, default, slo, model)


def ov(name="m", version="v1", current=True, replicas=1, owner=OWNER, digest=None, input_type="doubles"):
    labels = ((f"{MANAGED_BY}={owner}",) if owner else ()) + (f"{CONTENT_HASH}={digest or version}",)
    return ObservedVersion(name, version, input_type, labels, "img", current, replicas)


def oa(name="a", linked=("m",), default="None", slo=100000, input_type="doubles"):
    return ObservedApp(name, input_type, default, slo, tuple(linked))


def desired(models=(), apps=()):
    return DesiredState("c", ClusterSpec(), {m.name: m for m in models}, {a.name: a for a in apps})


def observed(versions=(), apps=(), owners=None, running=True, forged=()):
    """Versions with an owner label are recorded in the ownership registry as deployed by that owner
    (image "img"), except the ``(name, version)`` pairs in ``forged``: registered by someone else."""
    obs = Observed(running=running)
    for v in versions:
        obs.models.setdefault(v.name, {})[v.version] = v
        digest = next(label.split("=", 1)[1] for label in v.labels if label.startswith(CONTENT_HASH))
        if v.owner and (v.name, v.version) not in forged:
            obs.model_records.setdefault(v.name, {})[v.version] = ModelRecord(v.owner, "img", digest)
    for a in apps:
        obs.apps[a.name] = a
    obs.app_owners = {
        n: AppRecord(o) for n, o in (owners if owners is not None else {a.name: OWNER for a in apps}).items()
    }
    return obs


def summary(plan):
    return [(a.op.value, a.ref) for a in plan.actions if a.op is not Op.NOOP]


CASES = {
    "from nothing": (
        desired([dm()], [da()]),
        observed(running=False),
        False,
        [("create", "Cluster/c"), ("create", "Model/m"), ("create", "Application/a"), ("create", "Link/a")],
    ),
    "converged is a no-op": (desired([dm()], [da()]), observed([ov()], [oa()]), False, []),
    "replicas scale in place": (
        desired([dm(replicas=3)], [da()]),
        observed([ov(replicas=1)], [oa()]),
        False,
        [("update", "Model/m")],
    ),
    "new version is a rolling replace": (
        desired([dm(version="v2")], [da()]),
        observed([ov(version="v1")], [oa()]),
        False,
        [("replace", "Model/m")],
    ),
    "default output updates the app in place (its link stays)": (
        desired([dm()], [da(default="x")]),
        observed([ov()], [oa()]),
        False,
        [("update", "Application/a")],
    ),
    "input type change recreates the app": (
        desired([dm(version="v2", input_type="ints")], [da(input_type="ints")]),
        observed([ov()], [oa()]),
        False,
        [("delete", "Link/a"), ("replace", "Model/m"), ("replace", "Application/a"), ("create", "Link/a")],
    ),
    "relink to another model": (
        desired([dm(), dm(name="n")], [da(model="n")]),
        observed([ov(), ov(name="n")], [oa()]),
        False,
        [("replace", "Link/a")],
    ),
    "removed app without prune is only reported": (
        desired([dm()], []),
        observed([ov()], [oa()]),
        False,
        [("prune", "Application/a")],
    ),
    "removed app and model with prune": (
        desired([], []),
        observed([ov()], [oa()]),
        True,
        [("delete", "Application/a"), ("delete", "Model/m")],
    ),
    "unmanaged objects are never pruned": (
        desired([], []),
        observed([ov(owner=None)], [oa()], owners={}),
        True,
        [],
    ),
    "objects of another manifest set are conflicts": (
        desired([dm()], [da()]),
        observed([ov(owner="other")], [oa()], owners={"a": "other"}),
        False,
        [("conflict", "Model/m"), ("conflict", "Application/a")],
    ),
    "deleted app in the registry comes back": (
        desired([dm()], [da()]),
        observed([ov()], [], owners={"a": OWNER}),
        False,
        [("create", "Application/a"), ("create", "Link/a")],
    ),
    "stale replicas of an old version are stopped": (
        desired([dm(version="v2")]),
        observed([ov(version="v1", current=False, replicas=1), ov(version="v2")]),
        False,
        [("update", "Model/m")],
    ),
    "same version with another input type is a conflict": (
        desired([dm(input_type="ints")]),
        observed([ov()]),
        False,
        [("conflict", "Model/m")],
    ),
    "a version with forged labels and no record is a conflict": (
        desired([dm(replicas=3)]),
        observed([ov(replicas=1)], forged={("m", "v1")}),
        False,
        [("conflict", "Model/m")],
    ),
    "rolling forward to a forged registered version is a conflict": (
        desired([dm(version="v2")]),
        observed([ov(version="v1"), ov(version="v2", current=False, replicas=0)], forged={("m", "v2")}),
        False,
        [("conflict", "Model/m")],
    ),
    "a forged new version of a managed model is never started": (
        desired([dm(version="v2", replicas=2)]),
        observed([ov(version="v1", current=False), ov(version="v2", replicas=1)], forged={("m", "v2")}),
        False,
        [("conflict", "Model/m")],
    ),
    "forged labels alone never make a model prunable": (
        desired([], []),
        observed([ov()], forged={("m", "v1")}),
        True,
        [],
    ),
    "unlink when the manifest drops the model": (
        desired([dm()], [da(model=None)]),
        observed([ov()], [oa()]),
        False,
        [("delete", "Link/a")],
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_plan_table(name):
    want_desired, want_observed, prune, expected = CASES[name]
    plan = make_plan(want_desired, want_observed, OWNER, prune=prune)
    assert summary(plan) == expected


def test_rolling_replace_details():
    plan = make_plan(desired([dm(version="v2", replicas=2)]), observed([ov(version="v1", replicas=1)]), OWNER)
    act = plan.actions[1]
    assert act.previous_version == "v1" and not act.version_registered
    assert {c.field for c in act.changes} == {"version", "replicas"}


def test_rollback_to_registered_version():
    plan = make_plan(
        desired([dm(version="v1")]),
        observed([ov(version="v1", current=False, replicas=0), ov(version="v2")]),
        OWNER,
    )
    act = plan.actions[1]
    assert act.op is Op.REPLACE and act.version_registered and act.previous_version == "v2"


def test_pinned_version_with_changed_content_warns_and_changes_nothing():
    plan = make_plan(desired([dm(explicit=True, digest="new")]), observed([ov(digest="old")]), OWNER)
    assert not plan.has_changes
    assert "pinned" in plan.warnings[0]


def test_order_models_before_apps_before_links_then_deletions():
    plan = make_plan(
        desired([dm(name="z")], [da(name="b", model="z")]),
        observed([ov(name="old")], [oa(name="a", linked=("old",))]),
        OWNER,
        prune=True,
    )
    kinds = [a.ref for a in plan.changes]
    assert kinds == ["Model/z", "Application/b", "Link/b", "Application/a", "Model/old"]


def test_plan_is_pure():
    d, o = desired([dm()], [da()]), observed([ov(replicas=0)], [oa()])
    assert make_plan(d, o, OWNER) == make_plan(d, o, OWNER)


def test_a_record_counts_only_for_the_image_it_recorded():
    """A version re-registered with another container_name than the one recorded is not ours."""
    obs = observed([ov(replicas=1)])
    obs.model_records["m"]["v1"] = ModelRecord(OWNER, "local:/somewhere/else", "v1")
    plan = make_plan(desired([dm(replicas=2)]), obs, OWNER)
    assert summary(plan) == [("conflict", "Model/m")]
    assert "no record of deploying it" in plan.actions[1].reason


def test_updates_carry_the_recorded_image():
    plan = make_plan(desired([dm(replicas=3)]), observed([ov(replicas=1)]), OWNER)
    assert plan.actions[1].op is Op.UPDATE and plan.actions[1].image == "img"


DELETE_CASES = {
    "the manifests' own apps, then models": (
        desired([dm()], [da()]),
        observed([ov()], [oa()]),
        [("delete", "Application/a"), ("delete", "Model/m")],
    ),
    "objects not in the manifests are left alone": (
        desired([dm()], []),
        observed([ov(), ov(name="other")], [oa()]),
        [("delete", "Model/m")],
    ),
    "what does not exist is skipped": (desired([dm()], [da()]), observed([], []), []),
    "another owner's objects are left alone": (
        desired([dm()], [da()]),
        observed([ov(owner="other")], [oa()], owners={"a": "other"}),
        [],
    ),
    "an app without a registry record is left alone": (
        desired([], [da()]),
        observed([], [oa()], owners={}),
        [],
    ),
    "a model with forged labels only is left alone": (
        desired([dm()], []),
        observed([ov()], forged={("m", "v1")}),
        [],
    ),
    "a cluster that is not running has nothing to delete": (
        desired([dm()], [da()]),
        observed([ov()], [oa()], running=False),
        [],
    ),
}


@pytest.mark.parametrize("name", list(DELETE_CASES))
def test_delete_plan_table(name):
    want_desired, want_observed, expected = DELETE_CASES[name]
    assert summary(make_delete_plan(want_desired, want_observed, OWNER)) == expected


def test_the_cluster_action_is_found_by_kind():
    plan = make_plan(desired([dm()]), observed(running=False), OWNER)
    started = Action(Op.CREATE, "Cluster", "c", reason="started")
    reordered = Plan((*plan.actions[1:], plan.actions[0]))
    assert reordered.cluster_action == plan.actions[0]
    replaced = reordered.with_cluster_action(started)
    assert replaced.actions[-1].reason == "started" and replaced.actions[:-1] == reordered.actions[:-1]
    with pytest.raises(ValueError, match="has 0"):
        _ = Plan(plan.actions[1:]).cluster_action


# -- the Cluster action of a running cluster: every reported setting compared ----------------------
LOCAL_RECONFIGURABLE = frozenset(
    {"cache_size_bytes", "query_port", "management_port", "rpc_port", "admin_auth", "admin_token"}
)
RUNNING = {
    "backend": "local", "query_port": 1337, "management_port": 1338, "rpc_port": 7000,
    "cache_size_bytes": 33554432, "frontend_replicas": 1, "admin_auth": "token",
    "admin_token": "generated-token", "allow_unauthenticated_replicas": False,
}  # fmt: skip


def cluster_plan(spec: ClusterSpec, running: dict | None = None, reported: bool = True) -> Plan:
    obs = Observed(running=True)
    obs.settings = RunningSettings({**RUNNING, **(running or {})}, LOCAL_RECONFIGURABLE, reported)
    return make_plan(DesiredState("c", spec, {}, {}), obs, OWNER)


CLUSTER_CASES = {
    # spec, running overrides -> op, changed fields (camelCase), words the reason holds
    "same settings": (ClusterSpec(), {}, Op.NOOP, [], ""),
    "a generated token matches any running token": (ClusterSpec(), {"admin_token": "x" * 64}, Op.NOOP, [], ""),
    "port 0 matches the port the cluster got": (ClusterSpec(query_port=0), {}, Op.NOOP, [], ""),
    "cache size": (ClusterSpec(cache_size_bytes=1024), {}, Op.UPDATE, ["cacheSizeBytes"], "query frontend"),
    "query port": (ClusterSpec(query_port=1400), {}, Op.UPDATE, ["queryPort"], "new port"),
    "rpc port restarts the replicas": (ClusterSpec(rpc_port=7100), {}, Op.UPDATE, ["rpcPort"], "every model replica"),
    "management port": (ClusterSpec(management_port=1400), {}, Op.UPDATE, ["managementPort"], "management frontend"),
    "a token added to an open cluster": (
        ClusterSpec(admin_token="s3cret"), {"admin_auth": "none", "admin_token": None},
        Op.UPDATE, ["adminAuth", "adminToken"], "new token",
    ),
    "a different token": (ClusterSpec(admin_token="s3cret"), {}, Op.UPDATE, ["adminToken"], "new token"),
    "the token removed": (ClusterSpec(admin_auth="none"), {}, Op.UPDATE, ["adminAuth"], "management frontend"),
    "unauthenticated replicas refused": (
        ClusterSpec(allow_unauthenticated_replicas=True), {}, Op.CONFLICT, ["allowUnauthenticatedReplicas"],
        "delete the cluster and apply again",
    ),
    "another backend refused": (ClusterSpec(), {"backend": "docker"}, Op.CONFLICT, ["backend"], "delete the cluster"),
    "a refused field refuses the whole change": (
        ClusterSpec(cache_size_bytes=1, allow_unauthenticated_replicas=True), {}, Op.CONFLICT,
        ["allowUnauthenticatedReplicas", "cacheSizeBytes"], "allowUnauthenticatedReplicas cannot be changed",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", CLUSTER_CASES)
def test_cluster_settings_are_compared(case):
    spec, running, op, fields, reason = CLUSTER_CASES[case]
    action = cluster_plan(spec, running).cluster_action
    assert action.op is op
    assert sorted(c.field for c in action.changes) == sorted(fields)
    assert reason in action.reason
    assert "s3cret" not in repr(action) and all("s3cret" != c.new for c in action.changes)


def test_cluster_update_carries_the_new_values_to_set():
    action = cluster_plan(
        ClusterSpec(admin_token="s3cret", cache_size_bytes=1024), {"admin_auth": "none"}
    ).cluster_action
    assert dict(action.settings) == {"admin_auth": "token", "admin_token": "s3cret", "cache_size_bytes": 1024}
    assert cluster_plan(ClusterSpec(admin_token="s3cret"), {"admin_auth": "none"}).has_changes


def test_settings_a_backend_cannot_report_are_a_warning_not_a_silent_noop():
    plan = cluster_plan(ClusterSpec(cache_size_bytes=1), reported=False)
    assert plan.cluster_action.op is Op.NOOP
    assert any("not compared" in w and "delete the cluster" in w for w in plan.warnings)
