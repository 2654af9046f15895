"""Progressive delivery on the in-memory cluster: the manifests' rollout and traffic fields, the pure
traffic transformations and analysis, and canary/blueGreen rollouts driven by the executor
(advance, roll back, abort, promote, resume), A/B/N applications from manifests."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from reconciler.deploy import Artifact
from reconciler.desired import DesiredApp, DesiredModel, DesiredState, DesiredTraffic
from reconciler.errors import ManifestErrors
from reconciler.execute import Executor
from reconciler.loader import load_manifests
from reconciler.observed import AppRecord, ModelRecord, TargetStats, TrafficSetting, observe
from reconciler.ownership import OwnershipRegistry
from reconciler.plan import Op, Plan, make_plan
from reconciler.port import ClusterPort, ModelBuild
from reconciler.rollout import (
    ABORT,
    ABORTED,
    PROGRESSING,
    PROMOTE,
    ROLLED_BACK,
    SUCCEEDED,
    AppSplit,
    Interrupted,
    RolledBack,
    RolloutStore,
    analyse,
    finish,
    new_record,
    promoted,
    split,
)
from reconciler.status import Health, statuses
from schemas import ClusterSpec
from schemas.application import ApplicationSpec
from schemas.model import Rollout, RolloutAnalysis
from tests.fakes.cluster import FakeCluster

OWNER = "team"


# -- manifests ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("rollout", "message"),
    [
        ({"strategy": "canary"}, "needs at least one step"),
        ({"strategy": "canary", "steps": [{"weight": 50}, {"weight": 10}]}, "increase strictly"),
        ({"strategy": "canary", "steps": [{"weight": 10}, {"weight": 10}]}, "increase strictly"),
        ({"strategy": "canary", "steps": [{"weight": 0}]}, "greater than 0"),
        ({"strategy": "canary", "steps": [{"weight": 120}]}, "less than or equal to 100"),
        ({"strategy": "canary", "steps": [{"weight": 10, "pause": -1}]}, "greater than or equal to 0"),
        ({"strategy": "blueGreen", "steps": [{"weight": 50}]}, "of weight 100"),
        ({"strategy": "immediate", "steps": [{"weight": 50}]}, "only to the canary and blueGreen"),
        ({"strategy": "rolling"}, "'immediate', 'canary' or 'blueGreen'"),
        (
            {"strategy": "canary", "steps": [{"weight": 5}], "analysis": {"maxErrorRate": 2}},
            "less than or equal to 1",
        ),
        (
            {"strategy": "canary", "steps": [{"weight": 5}], "analysis": {"minRequests": 0}},
            "greater than or equal to 1",
        ),
    ],
)
def test_invalid_rollouts_are_refused_with_the_reason(rollout: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Rollout.model_validate(rollout)


def test_a_canary_rollout_and_its_defaults() -> None:
    r = Rollout.model_validate(
        {"strategy": "canary", "steps": [{"weight": 10, "pause": 30}, {"weight": 50}],
         "analysis": {"maxErrorRate": 0.01, "maxP99LatencyRatio": 0.8, "minRequests": 100}}
    )  # fmt: skip
    assert [(s.weight, s.pause) for s in r.effective_steps()] == [(10, 30), (50, 0)]
    assert r.analysis.max_error_rate == 0.01 and r.analysis.max_default_rate is None
    assert Rollout().strategy == "immediate"
    assert [s.weight for s in Rollout(strategy="blueGreen").effective_steps()] == [100]


BASE = {"inputType": "doubles"}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"model": "a", "models": [{"name": "b"}]}, "either model or models"),
        ({"models": [{"name": "a"}, {"name": "a"}]}, "more than once"),
        ({"models": [{"name": "a", "weight": 0}]}, "sum to more than 0"),
        ({"models": [{"name": "a", "weight": -1}]}, "greater than or equal to 0"),
        ({"models": []}, "at least 1 item"),
        ({"stickyKey": "user"}, "need the application's model or models"),
        ({"model": "a", "selection": {"policy": "exp3"}}, "list them under models"),
        (
            {"models": [{"name": "a"}], "stickyKey": "u", "selection": {"policy": "exp3"}},
            "cannot be combined",
        ),
        (
            {
                "models": [{"name": "a"}],
                "selection": {"policy": "exp4"},
                "shadow": {"model": "b", "percent": 5},
            },
            "exp4 already queries every model",
        ),
        ({"model": "a", "shadow": {"model": "a", "percent": 5}}, "name the shadow's version"),
        ({"model": "a", "shadow": {"model": "b", "percent": 0}}, "greater than 0"),
        ({"models": [{"name": "a"}], "selection": {"policy": "exp5"}}, "'exp3' or 'exp4'"),
    ],
)
def test_invalid_application_routing_is_refused_with_the_reason(
    spec: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        ApplicationSpec.model_validate({**BASE, **spec})


MANIFESTS = """
apiVersion: clipper.ai/v1
kind: Model
metadata: {name: a}
spec: {inputType: doubles, version: v1, source: {image: img}}
---
apiVersion: clipper.ai/v1
kind: Model
metadata: {name: s}
spec: {inputType: strings, version: v1, source: {image: img}}
---
apiVersion: clipper.ai/v1
kind: Application
metadata: {name: ab}
spec:
  inputType: doubles
  models: [{name: a, weight: 3}, {name: missing}]
  shadow: {model: s, percent: 10}
"""


def test_the_loader_checks_every_model_an_application_names(tmp_path: Path) -> None:
    f = tmp_path / "m.yaml"
    f.write_text(MANIFESTS)
    with pytest.raises(ManifestErrors) as e:
        load_manifests([str(f)])
    text = "\n".join(str(p) for p in e.value.problems)
    assert "spec.models[1].name" in text and "referenced model 'missing' is not defined" in text
    assert "does not match Model/s" in text


def test_an_ab_manifest_becomes_desired_traffic(tmp_path: Path) -> None:
    f = tmp_path / "m.yaml"
    f.write_text(MANIFESTS.replace(", {name: missing}", ", {name: b}").replace("model: s", "model: b, version: v0")
                 + "---" + MANIFESTS.split("---")[0].replace("name: a}", "name: b}"))  # fmt: skip
    from reconciler.desired import desired_state

    d = desired_state(load_manifests([str(f)]))
    app = d.apps["ab"]
    assert app.model == "a"  # the first is linked
    assert app.traffic == DesiredTraffic((("a", 3.0), ("b", 1.0)), None, ("b", "v0", 10.0), None)


# -- pure traffic transformations and analysis --------------------------------------------------
def test_split_moves_the_weight_of_the_old_version_only() -> None:
    assert split(None, "m", "v1", "v2", 10, None).targets == (("m", "v1", 0.9), ("m", "v2", 0.1))
    assert split(None, "m", "v1", "v2", 100, "user") == TrafficSetting((("m", "v2", 1.0),), "user")
    ab = TrafficSetting((("m", "v1", 3.0), ("n", "x", 1.0)), None, ("k", "z", 5.0), ("exp3", 0.1, 0.1))
    s = split(ab, "m", "v1", "v2", 50, None)
    assert s.targets == (("m", "v1", 1.5), ("m", "v2", 1.5), ("n", "x", 1.0))
    assert s.shadow == ("k", "z", 5.0) and s.selection is None  # the policy would ignore the weights
    assert promoted(ab, "m", "v1", "v2") == TrafficSetting((("m", "v2", 3.0), ("n", "x", 1.0)), None,
                                                           ("k", "z", 5.0), ("exp3", 0.1, 0.1))  # fmt: skip
    assert promoted(None, "m", "v1", "v2") is None


A = RolloutAnalysis(max_error_rate=0.05, max_default_rate=0.2, max_p99_latency_ratio=1.0, min_requests=20)


@pytest.mark.parametrize(
    ("stats", "elapsed", "state", "reason"),
    [
        ([TargetStats(10, 0, 0, 1000.0)], 100, "wait", "10/20 requests"),
        ([TargetStats(10, 0, 0, 1000.0)], 601, "fail", "only 10 request(s)"),
        ([TargetStats(30, 9, 9, 1000.0)], 1, "fail", "error rate 0.3 > maxErrorRate 0.05"),
        ([TargetStats(30, 9, 0, 1000.0)], 1, "fail", "default rate 0.3 > maxDefaultRate 0.2"),
        ([TargetStats(30, 0, 0, 200_000.0)], 1, "fail", "p99 latency / objective 2 > maxP99LatencyRatio 1"),
        ([TargetStats(30, 0, 0, 1000.0)], 5, "wait", "pause 5/10 s"),
        ([TargetStats(15, 0, 0, 1000.0), TargetStats(15, 1, 1, 1000.0)], 10, "pass", "analysis passed"),
    ],
)
def test_analysis(stats: list[TargetStats], elapsed: float, state: str, reason: str) -> None:
    v = analyse([(s, 100_000) for s in stats], A, elapsed, pause_s=10)
    assert (v.state, reason in v.reason) == (state, True), v.reason
    assert v.numbers["requests"] == sum(s.requests for s in stats)


# -- rollouts on the fake cluster --------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


def canary_model(version: str = "v2", strategy: str = "canary", steps: list[dict[str, float]] | None = None,
                 min_requests: int = 20) -> DesiredModel:  # fmt: skip
    rollout = Rollout.model_validate({
        "strategy": strategy,
        "steps": [{"weight": 10, "pause": 5}, {"weight": 50, "pause": 5}] if steps is None else steps,
        "analysis": {"maxErrorRate": 0.05, "minRequests": min_requests},
    })  # fmt: skip
    return DesiredModel("m", version, "doubles", 1, -1, f"hash-{version}", False, rollout=rollout)


def build(cluster: ClusterPort, m: DesiredModel, registry: str | None) -> Artifact:
    return Artifact(cluster.build_model(ModelBuild(m.name, m.version, "/nowhere", "base", registry)))


class World:
    def __init__(self, tmp_path: Path, apps: dict[str, DesiredApp] | None = None) -> None:
        self.cluster = FakeCluster()
        self.registry = OwnershipRegistry(tmp_path)
        self.clock = Clock()
        self.cluster.add_version("m", "v1", 1, image="img-v1")
        self.registry.record_model("m", "v1", ModelRecord(OWNER, "img-v1", "hash-v1"))
        self.apps = apps if apps is not None else {"a": DesiredApp("a", "doubles", "None", 100000, "m")}
        owners = {}
        for name, app in self.apps.items():
            self.cluster.register_application(name, "doubles", "None", 100000)
            if app.model:
                self.cluster.link(name, app.model)
            owners[name] = AppRecord(OWNER)
        self.registry.save(owners)
        self.cluster.connect()
        self.store = RolloutStore(None, self.cluster)
        self.notes: list[str] = []
        #: per call of get_app_traffic: requests and errors the new version answered since the step began
        self.error_share = 0.0

        def stats(app: str, setting: TrafficSetting) -> dict[str, TargetStats]:
            out = {}
            for m, v, w in setting.targets:
                share = w / sum(x[2] for x in setting.targets)
                n = int(200 * share)
                errors = int(n * self.error_share) if v != "v1" else 0
                out[f"{m}:{v}"] = TargetStats(n, errors, errors, 1000.0)
            return out

        self.cluster.stats = stats

    def state(self, m: DesiredModel) -> DesiredState:
        return DesiredState("c", ClusterSpec(), {"m": m}, self.apps)

    def plan(self, state: DesiredState) -> Plan:
        self.cluster.connect()
        obs = observe(self.cluster, self.registry.load(), self.registry.load_models())
        obs.rollouts = self.store.all(["m"])
        return make_plan(state, obs, OWNER)

    def run(self, state: DesiredState) -> Plan:
        plan = self.plan(state)
        self.cluster.calls.clear()
        Executor(self.cluster, state, OWNER, self.registry, None, builder=build, stop_timeout_s=0.0, drain_s=0.0,
                 rollouts=self.store, note=self.notes.append, rollout_poll_s=1.0, clock=self.clock,
                 sleep=self.clock.sleep).run(plan)  # fmt: skip
        return plan

    def weights(self) -> list[tuple[str, tuple[tuple[str, str, float], ...] | None]]:
        return [(app, s.targets if s else None) for app, s in self.cluster.traffic_history]


def test_a_good_canary_advances_through_its_steps_to_100_percent(tmp_path: Path) -> None:
    w = World(tmp_path)
    plan = w.run(w.state(canary_model()))
    model = next(a for a in plan.actions if a.kind == "Model")
    assert model.op is Op.REPLACE and model.reason == "new version, canary 10% -> 50% -> 100%"
    assert w.weights() == [
        ("a", (("m", "v1", 0.9), ("m", "v2", 0.1))),
        ("a", (("m", "v1", 0.5), ("m", "v2", 0.5))),
        ("a", None),  # a plain app again, once v2 is current
    ]
    calls = [
        c for c in w.cluster.calls if c[0] in ("register_version", "set_current_version", "stop_replicas")
    ]
    assert calls == [("register_version", "m", "v2", "not-current"), ("set_current_version", "m", "v2"),
                     ("stop_replicas", "m", "v1")]  # fmt: skip
    assert w.cluster.serving("m") == ("v2", 1)
    rec = w.store.get("m")
    assert rec is not None and rec.phase == SUCCEEDED and rec.weight == 100
    assert any("step 2 passed" in n for n in w.notes)
    assert not w.plan(w.state(canary_model())).has_changes


def test_a_failing_canary_rolls_back_within_its_first_step_and_is_not_retried(tmp_path: Path) -> None:
    w = World(tmp_path)
    w.error_share = 0.3
    with pytest.raises(RolledBack, match=r"rolled back: step 1 \(10%\): error rate 0.3 > maxErrorRate 0.05"):
        w.run(w.state(canary_model()))
    assert w.weights() == [("a", (("m", "v1", 0.9), ("m", "v2", 0.1))), ("a", None)]
    assert w.cluster.serving("m") == ("v1", 1)
    assert w.cluster.replicas.get(("m", "v2"), 0) == 0  # the new replicas stopped
    assert w.clock.t == 0  # at the first analysis: the step's pause is not waited for
    rec = w.store.get("m")
    assert rec is not None and rec.phase == ROLLED_BACK and "error rate" in (rec.reason or "")
    # the plan does not try the rolled-back version again; status says why
    again = w.plan(w.state(canary_model()))
    assert not again.has_changes
    assert any("was rolled back" in x and "clipper rollout retry m" in x for x in again.warnings)
    obs = observe(w.cluster, w.registry.load(), w.registry.load_models())
    obs.rollouts = w.store.all(["m"])
    model = next(o for o in statuses(w.state(canary_model()), obs, again) if o.kind == "Model")
    assert model.health is Health.DEGRADED and "was rolled back: step 1" in model.reason
    # `clipper rollout retry` forgets the record: the next apply tries again, through the steps
    w.store.forget("m")
    w.cluster.traffic_history.clear()
    w.error_share = 0.0
    w.run(w.state(canary_model()))
    assert w.weights()[0] == ("a", (("m", "v1", 0.9), ("m", "v2", 0.1)))
    assert w.cluster.serving("m") == ("v2", 1)


def test_going_back_to_the_version_a_rollout_replaced_is_immediate(tmp_path: Path) -> None:
    w = World(tmp_path)
    w.run(w.state(canary_model()))
    w.cluster.traffic_history.clear()
    plan = w.run(w.state(canary_model(version="v1")))
    assert (
        next(a for a in plan.actions if a.kind == "Model").reason
        == "rollback/forward to a registered version"
    )
    assert w.weights() == [] and w.cluster.serving("m") == ("v1", 1)


def test_abort_and_promote_commands_reach_the_driving_apply(tmp_path: Path) -> None:
    w = World(tmp_path)
    w.store.request("m", ABORT, "someone@host")  # left over: a new rollout ignores it
    original = w.cluster.stats

    def abort_in_step_2(app: str, setting: TrafficSetting) -> dict[str, TargetStats]:
        if any(t[1] == "v2" and t[2] == 0.5 for t in setting.targets):
            w.store.request("m", ABORT, "ops@host")
        return original(app, setting)

    w.cluster.stats = abort_in_step_2
    with pytest.raises(RolledBack, match="aborted: aborted by ops@host"):
        w.run(w.state(canary_model()))
    assert w.store.get("m").phase == ABORTED  # type: ignore[union-attr]
    assert w.cluster.serving("m") == ("v1", 1) and w.weights()[-1] == ("a", None)

    w2 = World(tmp_path / "2")
    w2.cluster.stats = lambda app, setting: (w2.store.request("m", PROMOTE, "ops@host"), {})[1]  # no traffic
    w2.run(w2.state(canary_model(min_requests=10_000)))
    assert w2.cluster.serving("m") == ("v2", 1) and w2.store.get("m").phase == SUCCEEDED  # type: ignore[union-attr]
    assert any("promoted by ops@host" in n for n in w2.notes)


def test_an_interrupted_canary_resumes_at_its_step(tmp_path: Path) -> None:
    w = World(tmp_path)
    # what an apply killed during step 2 leaves: v2 registered aside with replicas, the split, the record
    w.cluster.add_version("m", "v2", 1, image="img-v2", current=False)
    w.registry.record_model("m", "v2", ModelRecord(OWNER, "img-v2", "hash-v2"))
    m = canary_model()
    rec = new_record("m", "v1", "v2", m.rollout, [AppSplit("a", None, 100000)], "x@y")
    rec.step, rec.weight = 1, 50
    w.store.put(rec)
    w.cluster.set_app_traffic("a", split(None, "m", "v1", "v2", 50, None))
    w.cluster.traffic_history.clear()
    plan = w.run(w.state(m))
    assert next(a for a in plan.actions if a.kind == "Model").reason == "resume the canary rollout at step 2"
    assert w.weights() == [("a", (("m", "v1", 0.5), ("m", "v2", 0.5))), ("a", None)]
    assert w.cluster.serving("m") == ("v2", 1)
    assert not any(c[0] == "build_model" for c in w.cluster.calls)


def test_blue_green_switches_everything_and_keeps_the_old_replicas_until_the_analysis_passed(
    tmp_path: Path,
) -> None:
    w = World(tmp_path)
    seen_old_replicas = []
    original = w.cluster.stats
    w.cluster.stats = lambda app, s: (seen_old_replicas.append(w.cluster.replicas.get(("m", "v1"))),
                                      original(app, s))[1]  # fmt: skip
    w.run(w.state(canary_model(strategy="blueGreen", steps=[{"weight": 100, "pause": 3}])))
    assert w.weights() == [("a", (("m", "v2", 1.0),)), ("a", None)]
    assert seen_old_replicas and all(n == 1 for n in seen_old_replicas)
    assert w.cluster.serving("m") == ("v2", 1) and ("m", "v1") not in w.cluster.replicas


def test_a_canary_splits_an_ab_app_and_leaves_its_other_models_alone(tmp_path: Path) -> None:
    apps = {"ab": DesiredApp("ab", "doubles", "None", 100000, "m", DesiredTraffic((("m", 3.0), ("n", 1.0))))}
    w = World(tmp_path, apps)
    w.cluster.add_version("n", "x1", 1, image="img-x1")
    w.registry.record_model("n", "x1", ModelRecord(OWNER, "img-x1", "hash-x1"))
    n = DesiredModel("n", "x1", "doubles", 1, -1, "hash-x1", False)
    first = DesiredState("c", ClusterSpec(), {"m": DesiredModel("m", "v1", "doubles", 1, -1, "hash-v1", False),
                                              "n": n}, apps)  # fmt: skip
    plan = w.run(first)  # the manifest's A/B weights are set
    traffic = [a for a in plan.actions if a.kind == "Traffic"]
    assert [(a.op, a.changes[0].new) for a in traffic] == [(Op.CREATE, "m:v1 75%, n:x1 25%")]
    w.cluster.traffic_history.clear()
    w.run(
        DesiredState(
            "c", ClusterSpec(), {"m": canary_model(steps=[{"weight": 20, "pause": 1}]), "n": n}, apps
        )
    )
    assert w.weights() == [
        ("ab", (("m", "v1", 2.4), ("m", "v2", 0.6), ("n", "x1", 1.0))),
        ("ab", (("m", "v2", 3.0), ("n", "x1", 1.0))),  # promoted
        ("ab", (("m", "v2", 3.0), ("n", "x1", 1.0))),  # the manifest's, planned before the rollout
    ]
    assert not w.plan(DesiredState("c", ClusterSpec(), {"m": canary_model(), "n": n}, apps)).has_changes


def test_an_immediate_new_version_of_an_ab_model_moves_the_app_before_the_old_replicas_stop(
    tmp_path: Path,
) -> None:
    apps = {
        "ab": DesiredApp(
            "ab", "doubles", "None", 100000, "m", DesiredTraffic((("m", 1.0),), None, ("m", "v0", 5))
        )
    }
    w = World(tmp_path, apps)
    w.cluster.add_version("m", "v0", 1, image="img-v0", current=False)
    w.cluster.set_app_traffic("ab", TrafficSetting((("m", "v1", 1.0),), None, ("m", "v0", 5.0)))
    w.cluster.traffic_history.clear()
    v2 = DesiredModel("m", "v2", "doubles", 1, -1, "hash-v2", False)
    w.run(DesiredState("c", ClusterSpec(), {"m": v2}, apps))
    i_traffic = next(i for i, c in enumerate(w.cluster.calls) if c[0] == "set_app_traffic")
    i_stop = next(i for i, c in enumerate(w.cluster.calls) if c[:2] == ("stop_replicas", "m"))
    assert i_traffic < i_stop and w.cluster.traffic["ab"].targets == (("m", "v2", 1.0),)


def test_a_manifest_without_traffic_fields_clears_a_configuration_and_plain_apps_get_none(
    tmp_path: Path,
) -> None:
    w = World(tmp_path)
    m1 = DesiredModel("m", "v1", "doubles", 1, -1, "hash-v1", False)
    assert not w.plan(w.state(m1)).has_changes  # a plain app: no traffic configuration
    w.cluster.set_app_traffic("a", TrafficSetting((("m", "v1", 1.0),), "user"))
    plan = w.run(w.state(m1))
    assert [(a.kind, a.op) for a in plan.changes] == [("Traffic", Op.DELETE)]
    assert "a" not in w.cluster.traffic


def test_rollout_promote_and_abort_without_an_apply_act_from_the_record(tmp_path: Path) -> None:
    for command, serving, phase in ((PROMOTE, "v2", SUCCEEDED), (ABORT, "v1", ABORTED)):
        w = World(tmp_path / command)
        w.cluster.add_version("m", "v2", 1, image="img-v2", current=False)
        ab = TrafficSetting((("m", "v1", 1.0), ("n", "x", 1.0)))
        w.cluster.add_version("n", "x", 1)
        w.cluster.current["m"] = "v1"
        rec = new_record(
            "m", "v1", "v2", canary_model().rollout, [AppSplit("a", ab.to_dict(), 100000)], "x@y"
        )
        w.cluster.set_app_traffic("a", split(ab, "m", "v1", "v2", 10, None))
        w.store.put(rec)
        text = finish(w.cluster, w.store, rec, command, "ops@host")
        assert "ops@host" in text
        assert w.cluster.serving("m")[0] == serving and w.store.get("m").phase == phase  # type: ignore[union-attr]
        want = (("m", serving, 1.0), ("n", "x", 1.0))
        assert w.cluster.traffic["a"].targets == want
        stopped = "v1" if command == PROMOTE else "v2"
        assert (("m", stopped)) not in w.cluster.replicas


def test_a_progressing_rollout_shows_in_status(tmp_path: Path) -> None:
    w = World(tmp_path)
    w.cluster.add_version("m", "v2", 1, image="img-v2", current=False)
    rec = new_record("m", "v1", "v2", canary_model().rollout, [AppSplit("a", None, 100000)], "x@y")
    rec.weight, rec.numbers = 10, {"requests": 42, "errorRate": 0.0}
    w.store.put(rec)
    assert rec.phase == PROGRESSING
    obs = observe(w.cluster, w.registry.load(), w.registry.load_models())
    obs.rollouts = w.store.all(["m"])
    model = next(o for o in statuses(None, obs, None) if o.kind == "Model")
    assert model.health is Health.PROGRESSING
    assert model.reason == "canary v1 -> v2: step 1/2, 10% to v2 (42 requests, error rate 0.0%)"


def test_the_rollout_store_keeps_records_in_an_owner_only_file_without_a_shared_store(tmp_path: Path) -> None:
    store = RolloutStore(tmp_path, None)
    rec = new_record("m", "v1", "v2", canary_model().rollout, [AppSplit("a", None, 1)], None)
    store.put(rec)
    path = tmp_path / "reconciler" / "rollout-m.json"
    assert path.stat().st_mode & 0o777 == 0o600
    assert store.get("m") == rec
    store.request("m", PROMOTE, "me")
    assert store.take_command("m") == (PROMOTE, "me") and store.take_command("m") is None
    path.write_text("{not json")
    with pytest.raises(OSError, match="cannot read the rollout record of m"):
        store.get("m")


def test_history_round_trips_an_app_with_traffic() -> None:
    from reconciler.history import desired_apps, desired_doc

    app = DesiredApp("ab", "doubles", "None", 1000, "m", DesiredTraffic((("m", 2.0), ("n", 1.0)), "u",
                                                                        ("k", None, 5.0), None))  # fmt: skip
    doc = desired_doc(DesiredState("c", ClusterSpec(), {}, {"ab": app}))
    import json

    assert desired_apps(json.loads(json.dumps(doc))) == {"ab": app}


def test_a_canary_example_manifest_is_valid() -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "manifests" / "canary.yaml"
    loaded = load_manifests([str(example)])
    assert loaded.models["sum-model"].obj.spec.rollout.strategy == "canary"
    assert loaded.apps["hello-ab"].obj.spec.models is not None


def test_a_cluster_error_during_a_step_rolls_back_and_when_that_fails_too_the_rollout_stays_in_progress(
    tmp_path: Path,
) -> None:
    from clipper_admin.exceptions import ClipperConnectionError

    w = World(tmp_path)
    w.cluster.fail("set_app_traffic a m:v1=0.5", ClipperConnectionError("management frontend restarting"))
    with pytest.raises(RolledBack, match="the rollout failed: management frontend restarting"):
        w.run(w.state(canary_model()))
    assert w.cluster.serving("m") == ("v1", 1) and "a" not in w.cluster.traffic
    assert ("m", "v2") not in w.cluster.replicas

    w = World(tmp_path / "2")

    def down(app: str, setting: TrafficSetting) -> dict[str, TargetStats]:
        w.cluster.connected = False  # every later call fails: nothing can be rolled back
        raise ClipperConnectionError("management frontend down")

    w.cluster.stats = down
    with pytest.raises(Interrupted, match="left in progress"):
        w.run(w.state(canary_model()))
    w.cluster.connected = True
    rec = w.store.get("m")
    assert rec is not None and rec.phase == PROGRESSING and rec.step == 0
    assert w.cluster.replicas[("m", "v2")] == 1  # the split still sends requests to them
    # the next apply resumes it
    w.cluster.stats = World(tmp_path / "3").cluster.stats
    w.run(w.state(canary_model()))
    assert w.cluster.serving("m") == ("v2", 1)


def test_ctrl_c_during_a_step_leaves_the_rollout_in_progress(tmp_path: Path) -> None:
    w = World(tmp_path)

    def interrupt(app: str, setting: TrafficSetting) -> dict[str, TargetStats]:
        raise KeyboardInterrupt

    w.cluster.stats = interrupt
    with pytest.raises(KeyboardInterrupt):
        w.run(w.state(canary_model()))
    assert w.store.get("m").phase == PROGRESSING  # type: ignore[union-attr]
    assert w.cluster.replicas[("m", "v2")] == 1 and w.cluster.traffic["a"].targets[1] == ("m", "v2", 0.1)
    assert any("left in progress" in n for n in w.notes)
