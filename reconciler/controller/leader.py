"""Leader election on a ``coordination.k8s.io/v1`` Lease, as client-go's leaderelection does it.

The Lease is free when it has no holder or its holder's last renewal is older than
``leaseDurationSeconds`` (``renewTime + leaseDurationSeconds < now``). Every write carries the
``resourceVersion`` it read, so of two candidates only one wins (the other's write is a 409). The
leader renews every ``duration / 3``; a renewal that finds another holder, or no successful renewal
for ``duration``, means the lease is lost: the controller stops reconciling and exits non-zero (its
Deployment restarts it as a candidate). On SIGTERM the leader releases the Lease by clearing
``holderIdentity``, so a successor takes over at once instead of after ``duration``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from reconciler.controller.kube import Conflict, KubeError, KubePort

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def micro_time(t: datetime) -> str:
    """A Lease's MicroTime: ``2026-12-01T14:00:00.000000Z``."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _now() -> datetime:
    return datetime.now(UTC)


class LeaderElector:
    """Acquire, renew and release one Lease for ``identity`` (see the module's docstring)."""

    def __init__(self, api: KubePort, namespace: str, name: str, identity: str, duration_s: int = 15,
                 clock: Clock = _now) -> None:  # fmt: skip
        self.api, self.namespace, self.name, self.identity = api, namespace, name, identity
        self.duration_s, self.clock = duration_s, clock
        self.renewed_at: datetime | None = None  # our last successful write as the holder
        self.api_ok = False  # whether the last renewal reached the API server

    @property
    def retry_s(self) -> float:
        """How often a candidate tries and a leader renews."""
        return self.duration_s / 3

    def _spec(self, now: datetime, old: dict[str, Any]) -> dict[str, Any]:
        taking = old.get("holderIdentity") != self.identity
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.duration_s,
            "acquireTime": micro_time(now) if taking else old.get("acquireTime") or micro_time(now),
            "renewTime": micro_time(now),
            "leaseTransitions": int(old.get("leaseTransitions") or 0) + (1 if taking and old else 0),
        }

    def expired(self, spec: dict[str, Any], now: datetime) -> bool:
        renewed = parse_time(spec.get("renewTime")) or parse_time(spec.get("acquireTime"))
        if not spec.get("holderIdentity") or renewed is None:
            return True
        return renewed + timedelta(seconds=int(spec.get("leaseDurationSeconds") or self.duration_s)) < now

    def holder(self) -> str | None:
        lease = self.api.get_lease(self.namespace, self.name)
        return (lease or {}).get("spec", {}).get("holderIdentity") or None

    def try_acquire(self) -> bool:
        """Take (or keep) the Lease when it is free, expired or ours; False when another holds it or
        won the race. API errors propagate (:class:`KubeError`)."""
        now = self.clock()
        lease = self.api.get_lease(self.namespace, self.name)
        try:
            if lease is None:
                self.api.create_lease(self.namespace, {
                    "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace},
                    "spec": self._spec(now, {})})  # fmt: skip
            else:
                spec = lease.get("spec") or {}
                if spec.get("holderIdentity") != self.identity and not self.expired(spec, now):
                    return False
                self.api.replace_lease(self.namespace, {**lease, "spec": self._spec(now, spec)})
        except Conflict:
            return False
        if self.renewed_at is None:
            log.info("leader election: %s holds Lease %s/%s", self.identity, self.namespace, self.name)
        self.renewed_at = now
        return True

    def renew(self) -> bool:
        """Renew as the holder. False when the Lease is lost: another holds it, or no renewal has
        succeeded for ``duration`` (an API error or a lost race is retried at the next renewal)."""
        now = self.clock()
        try:
            lease = self.api.get_lease(self.namespace, self.name)
            if lease is not None and (lease.get("spec") or {}).get("holderIdentity") not in (self.identity,):
                log.error("leader election: Lease %s is held by %s now", self.name,
                          (lease.get("spec") or {}).get("holderIdentity") or "nobody")  # fmt: skip
                self.renewed_at = None
                return False
            self.api_ok = True
            if self.try_acquire():
                return True
        except KubeError as e:
            self.api_ok = False
            log.warning("leader election: cannot renew Lease %s: %s", self.name, e)
        if self.renewed_at is None or now - self.renewed_at > timedelta(seconds=self.duration_s):
            log.error("leader election: Lease %s not renewed for %ss: lost", self.name, self.duration_s)
            self.renewed_at = None
            return False
        return True

    def release(self) -> bool:
        """Give the Lease up (clear ``holderIdentity``) when this identity holds it; True when done."""
        try:
            lease = self.api.get_lease(self.namespace, self.name)
            spec = (lease or {}).get("spec") or {}
            if lease is None or spec.get("holderIdentity") != self.identity:
                return False
            spec = {**spec, "holderIdentity": None, "leaseDurationSeconds": 1,
                    "renewTime": micro_time(self.clock())}  # fmt: skip
            self.api.replace_lease(self.namespace, {**lease, "spec": spec})
        except KubeError as e:
            log.warning("leader election: cannot release Lease %s (it expires in %ss): %s",
                        self.name, self.duration_s, e)  # fmt: skip
            return False
        self.renewed_at = None
        log.info("leader election: %s released Lease %s/%s", self.identity, self.namespace, self.name)
        return True
