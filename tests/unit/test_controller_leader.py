"""Lease leader election of ``clipper controller``: acquire, contend, expire, renew, release, lost."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from reconciler.controller.kube import KubeError
from reconciler.controller.leader import LeaderElector
from tests.fakes.kube import FakeKube


class Clock:
    def __init__(self) -> None:
        self.t = datetime(2026, 12, 1, 14, 0, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += timedelta(seconds=seconds)


def pair(kube: FakeKube, clock: Clock) -> tuple[LeaderElector, LeaderElector]:
    return (LeaderElector(kube, "ns", "clipper-controller", "a", 15, clock),
            LeaderElector(kube, "ns", "clipper-controller", "b", 15, clock))  # fmt: skip


def test_the_first_candidate_creates_the_lease_and_the_second_waits() -> None:
    kube, clock = FakeKube(), Clock()
    a, b = pair(kube, clock)
    assert a.try_acquire()
    assert not b.try_acquire()
    spec = kube.leases[("ns", "clipper-controller")]["spec"]
    assert spec["holderIdentity"] == "a"
    assert spec["leaseDurationSeconds"] == 15
    assert spec["renewTime"] == "2026-12-01T14:00:00.000000Z"
    assert a.holder() == "a"


def test_a_renewed_lease_stays_and_an_expired_one_is_taken_over() -> None:
    kube, clock = FakeKube(), Clock()
    a, b = pair(kube, clock)
    assert a.try_acquire()
    clock.advance(10)
    assert a.renew()
    clock.advance(10)  # 10 s after the renewal: not expired
    assert not b.try_acquire()
    clock.advance(6)  # 16 s after the last renewal: expired
    assert b.try_acquire()
    spec = kube.leases[("ns", "clipper-controller")]["spec"]
    assert (spec["holderIdentity"], spec["leaseTransitions"]) == ("b", 1)
    assert not a.renew()  # a sees b's name on it: lost at once


def test_of_two_candidates_racing_for_an_expired_lease_one_wins() -> None:
    kube, clock = FakeKube(), Clock()
    a, b = pair(kube, clock)
    assert a.try_acquire()
    clock.advance(20)
    stale = kube.get_lease("ns", "clipper-controller")
    c = LeaderElector(kube, "ns", "clipper-controller", "c", 15, clock)
    assert b.try_acquire()
    # c read the lease before b took it: its write carries the old resourceVersion and loses
    original = kube.get_lease
    kube.get_lease = lambda namespace, name: stale  # type: ignore[method-assign]
    assert not c.try_acquire()
    kube.get_lease = original  # type: ignore[method-assign]
    assert b.holder() == "b"


def test_release_clears_the_holder_so_a_successor_takes_over_at_once() -> None:
    kube, clock = FakeKube(), Clock()
    a, b = pair(kube, clock)
    assert a.try_acquire()
    assert not b.try_acquire()
    assert a.release()
    assert a.holder() is None
    assert b.try_acquire()  # no waiting for the 15 s
    assert not a.release()  # not its lease any more: nothing to do


def test_renewal_failures_are_retried_until_the_lease_duration_has_passed() -> None:
    kube, clock = FakeKube(), Clock()
    a, _ = pair(kube, clock)
    assert a.try_acquire()
    clock.advance(5)
    kube.fail("get_lease", KubeError("connection refused"))
    assert a.renew()  # one failure: still the leader, retried at the next renewal
    clock.advance(5)
    assert a.renew()
    for _ in range(4):
        clock.advance(5)
        kube.fail("get_lease", KubeError("connection refused"))
        ok = a.renew()
    assert not ok  # 20 s without a renewal (duration 15): lost
