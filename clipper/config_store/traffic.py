"""An application's traffic configuration: weighted (model, version) targets, shadow, selection policy.

Stored per application in the config store (JSON text, :meth:`TrafficConfig.to_json`). An application
without one is a *plain* app: it routes to its linked model's current version, as in the original
(``link_model_to_app`` + ``set_model_version``), the one-target special case.

Also here: the per-target statistics each query frontend writes back to the store
(:class:`TargetCounts`, mergeable across frontends), so the management API can report them.
"""

from __future__ import annotations

import hashlib
import math
from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Any

import orjson

POLICIES = ("exp3", "exp4")
DEFAULT_ETA = 0.1
DEFAULT_GAMMA = 0.1
# latency buckets of the stored per-target histogram (upper bounds, microseconds); the last is +inf
LATENCY_BUCKETS_MICROS: tuple[int, ...] = (
    500,
    1_000,
    2_000,
    5_000,
    10_000,
    20_000,
    50_000,
    100_000,
    200_000,
    500_000,
    1_000_000,
    2_000_000,
    5_000_000,
)


@dataclass(frozen=True, slots=True)
class Target:
    model_name: str
    model_version: str
    weight: float = 1.0

    @property
    def key(self) -> str:
        return f"{self.model_name}:{self.model_version}"


@dataclass(frozen=True, slots=True)
class Shadow:
    """``percent`` of the requests are also sent to this version; its answers are only compared."""

    model_name: str
    model_version: str
    percent: float

    @property
    def key(self) -> str:
        return f"{self.model_name}:{self.model_version}"


@dataclass(frozen=True, slots=True)
class Selection:
    """A learning selection policy over the targets; the targets' weights are then ignored (the
    policy starts from equal weights, kept in the store: ``ConfigStore.add_selection_weights``)."""

    policy: str  # "exp3" | "exp4"
    eta: float = DEFAULT_ETA  # learning rate
    gamma: float = DEFAULT_GAMMA  # exp3: share of uniform exploration


@dataclass(frozen=True, slots=True)
class TrafficConfig:
    targets: tuple[Target, ...]
    sticky_key: str | None = None
    shadow: Shadow | None = None
    selection: Selection | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "targets": [
                {"model_name": t.model_name, "model_version": t.model_version, "weight": t.weight}
                for t in self.targets
            ],
            "sticky_key": self.sticky_key,
            "shadow": None,
            "selection": None,
        }
        if self.shadow is not None:
            s = self.shadow
            d["shadow"] = {"model_name": s.model_name, "model_version": s.model_version, "percent": s.percent}
        if self.selection is not None:
            p = self.selection
            d["selection"] = {"policy": p.policy, "eta": p.eta, "gamma": p.gamma}
        return d

    def to_json(self) -> str:
        return orjson.dumps(self.to_dict()).decode()

    def fingerprint(self) -> str:
        """Identifies the configuration: statistics are counted per fingerprint (reset on change)."""
        return hashlib.blake2b(self.to_json().encode(), digest_size=8).hexdigest()

    @staticmethod
    def from_dict(d: dict[str, Any]) -> TrafficConfig:
        """Decode a stored (already validated) configuration."""
        targets = tuple(
            Target(str(t["model_name"]), str(t["model_version"]), float(t.get("weight", 1.0)))
            for t in d["targets"]
        )
        s = d.get("shadow")
        shadow = Shadow(str(s["model_name"]), str(s["model_version"]), float(s["percent"])) if s else None
        p = d.get("selection")
        selection = (
            Selection(
                str(p["policy"]), float(p.get("eta", DEFAULT_ETA)), float(p.get("gamma", DEFAULT_GAMMA))
            )
            if p
            else None
        )
        sticky = d.get("sticky_key")
        return TrafficConfig(targets, str(sticky) if sticky else None, shadow, selection)

    @staticmethod
    def from_json(text: str) -> TrafficConfig:
        return TrafficConfig.from_dict(orjson.loads(text))


def is_finite_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


@dataclass(slots=True)
class TargetCounts:
    """Counts of one target since its configuration (fingerprint) took effect, on one frontend.

    ``defaults`` includes ``errors`` (a model error is answered with the default output)."""

    requests: int = 0
    defaults: int = 0
    errors: int = 0
    latency_buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS_MICROS) + 1))
    latency_sum_micros: int = 0
    # shadow targets only: primary/shadow answer pairs compared, and how many were equal
    compared: int = 0
    agreed: int = 0

    def observe_latency(self, micros: int, count: int = 1) -> None:
        """``count`` requests answered in ``micros`` each (a batch's inputs share its latency)."""
        self.latency_buckets[bisect_left(LATENCY_BUCKETS_MICROS, micros)] += count  # past the last: +inf
        self.latency_sum_micros += micros * count

    def merge(self, other: TargetCounts) -> None:
        self.requests += other.requests
        self.defaults += other.defaults
        self.errors += other.errors
        self.latency_sum_micros += other.latency_sum_micros
        self.compared += other.compared
        self.agreed += other.agreed
        for i, n in enumerate(other.latency_buckets):
            self.latency_buckets[i] += n

    def quantile_micros(self, q: float) -> float | None:
        """Upper bound of the bucket holding the q-quantile (None without requests; inf past the last)."""
        total = sum(self.latency_buckets)
        if total == 0:
            return None
        rank = q * total
        seen = 0
        for i, n in enumerate(self.latency_buckets):
            seen += n
            if seen >= rank and n:
                return float(LATENCY_BUCKETS_MICROS[i]) if i < len(LATENCY_BUCKETS_MICROS) else math.inf
        return math.inf

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "defaults": self.defaults,
            "errors": self.errors,
            "latency_buckets": list(self.latency_buckets),
            "latency_sum_micros": self.latency_sum_micros,
            "compared": self.compared,
            "agreed": self.agreed,
        }

    @staticmethod
    def from_dict(d: dict[str, Any]) -> TargetCounts:
        c = TargetCounts(
            requests=int(d.get("requests", 0)),
            defaults=int(d.get("defaults", 0)),
            errors=int(d.get("errors", 0)),
            latency_sum_micros=int(d.get("latency_sum_micros", 0)),
            compared=int(d.get("compared", 0)),
            agreed=int(d.get("agreed", 0)),
        )
        buckets = [int(n) for n in d.get("latency_buckets", [])]
        for i, n in enumerate(buckets[: len(c.latency_buckets)]):
            c.latency_buckets[i] = n
        return c


def encode_stats(fingerprint: str, counts: dict[str, TargetCounts]) -> str:
    """One frontend's statistics of one app: ``{"fingerprint", "targets": {"m:v": counts}}``;
    the shadow target is stored under ``"shadow:" + key``."""
    return orjson.dumps(
        {"fingerprint": fingerprint, "targets": {k: c.to_dict() for k, c in counts.items()}}
    ).decode()


def merge_stats(fingerprint: str, rows: list[str]) -> dict[str, TargetCounts]:
    """Sum the rows of every frontend that were counted under ``fingerprint`` (others are stale)."""
    total: dict[str, TargetCounts] = {}
    for text in rows:
        try:
            d = orjson.loads(text)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(d, dict) or d.get("fingerprint") != fingerprint:
            continue
        for key, c in dict(d.get("targets") or {}).items():
            total.setdefault(key, TargetCounts()).merge(TargetCounts.from_dict(c))
    return total
