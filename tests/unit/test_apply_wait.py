"""``clipper apply --wait``: after the executor, re-observe until the plan is empty or a timeout."""

from __future__ import annotations

from pathlib import Path

from reconciler.engine import Target, apply, pending, plan_for, wait_converged
from tests.fakes.cluster import FakeCluster
from tests.unit.test_engine import MANIFESTS, target


class Clock:
    """A fake clock whose sleeps run a callback (what the cluster does meanwhile)."""

    def __init__(self, meanwhile: list[object]) -> None:
        self.now = 0.0
        self.sleeps = 0
        self.meanwhile = meanwhile

    def sleep(self, s: float) -> None:
        self.now += s
        self.sleeps += 1
        if self.meanwhile:
            step = self.meanwhile.pop(0)
            if callable(step):
                step()

    def clock(self) -> float:
        return self.now


def scaled_down(tmp_path: Path) -> tuple[FakeCluster, Target]:
    cluster = FakeCluster(running=False)
    apply(target(tmp_path, cluster), "c")
    t = target(tmp_path, cluster, MANIFESTS.replace("replicas: 2", "replicas: 1"))
    apply(t, "c")
    # the stopped replica is still in the query frontend's list: what apply used to return on
    cluster.replicas[("m", "v1")] = 2
    return cluster, t


def test_wait_returns_once_the_scale_down_has_finished(tmp_path: Path) -> None:
    cluster, t = scaled_down(tmp_path)
    assert pending(plan_for(t, "c", False)[0]) == ["Model/m (replicas 2 -> 1)"]

    def gone() -> None:
        cluster.replicas[("m", "v1")] = 1

    c = Clock([None, None, gone])
    plan = wait_converged(t, "c", False, timeout_s=60, poll_s=1, sleep=c.sleep, clock=c.clock)
    assert pending(plan) == [] and c.sleeps == 3
    assert not plan_for(t, "c", False)[0].has_changes


def test_wait_gives_up_after_the_timeout_saying_what_is_left(tmp_path: Path) -> None:
    cluster, t = scaled_down(tmp_path)
    c = Clock([])
    plan = wait_converged(t, "c", False, timeout_s=5, poll_s=1, sleep=c.sleep, clock=c.clock)
    assert pending(plan) == ["Model/m (replicas 2 -> 1)"]
    assert 5 <= c.now <= 6


def test_a_converged_cluster_does_not_wait(tmp_path: Path) -> None:
    cluster = FakeCluster(running=False)
    t = target(tmp_path, cluster)
    apply(t, "c")
    c = Clock([])
    assert pending(wait_converged(t, "c", False, sleep=c.sleep, clock=c.clock)) == [] and c.sleeps == 0


def test_apply_waits_only_after_changes(monkeypatch) -> None:
    """``clipper apply`` (--wait by default) re-observes only when its plan changed something: a no-op
    apply's plan came from an observation that showed everything converged and healthy."""
    import argparse

    from reconciler import commands, engine
    from reconciler.plan import Action, Op, Plan

    waits: list[object] = []
    monkeypatch.setattr(engine, "wait_converged", lambda t, *a: waits.append(t) or Plan(()))
    monkeypatch.setattr(commands, "_target", lambda args: "t")
    args = argparse.Namespace(output="json", files=[], wait=True, owner=None, prune=False, timeout=60.0)
    for plan, observed_again in ((Plan(()), False), (Plan((Action(Op.CREATE, "Model", "m"),)), True)):
        monkeypatch.setattr(commands, "_apply_once", lambda t, a, plan=plan: plan)
        monkeypatch.setattr(commands, "_owner", lambda args, t: "c")
        waits.clear()
        assert commands.cmd_apply(args) == 0
        assert waits == (["t"] if observed_again else [])
