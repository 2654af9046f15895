"""The observed state: what the cluster reports, read with one round of list calls.

Nothing here comes from a record of what was applied before, except *ownership*: which apps and
which model versions this cluster's reconciler created is read from its owner-only registry (see
:mod:`reconciler.ownership`), never from labels in the store, which anyone who can reach the
management API can write.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from reconciler.labels import MANAGED_BY, label_value

if TYPE_CHECKING:
    from reconciler.port import ClusterPort


@dataclass(frozen=True)
class ObservedVersion:
    name: str
    version: str
    input_type: str
    labels: tuple[str, ...]
    image: str
    is_current: bool
    replicas: int  # healthy replicas connected to the query frontend(s)

    @property
    def owner(self) -> str | None:
        return label_value(self.labels, MANAGED_BY)


@dataclass(frozen=True)
class TrafficSetting:
    """An application's traffic configuration as the management API takes and reports it
    (``/admin/set_app_traffic``): weighted ``(model, version, weight)`` targets, a sticky key, a shadow
    ``(model, version, percent)`` and a selection policy ``(policy, eta, gamma)``."""

    targets: tuple[tuple[str, str, float], ...]
    sticky_key: str | None = None
    shadow: tuple[str, str, float] | None = None
    selection: tuple[str, float, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The management API's JSON form (without the app's name)."""
        d: dict[str, Any] = {
            "targets": [{"model_name": m, "model_version": v, "weight": w} for m, v, w in self.targets]
        }
        if self.sticky_key is not None:
            d["sticky_key"] = self.sticky_key
        if self.shadow is not None:
            m, v, pct = self.shadow
            d["shadow"] = {"model_name": m, "model_version": v, "percent": pct}
        if self.selection is not None:
            policy, eta, gamma = self.selection
            d["selection"] = {"policy": policy, "eta": eta, "gamma": gamma}
        return d

    @staticmethod
    def from_dict(d: dict[str, Any]) -> TrafficSetting:
        sh, sel = d.get("shadow"), d.get("selection")
        return TrafficSetting(
            tuple((str(t["model_name"]), str(t["model_version"]), float(t["weight"])) for t in d["targets"]),
            d.get("sticky_key") or None,
            (str(sh["model_name"]), str(sh["model_version"]), float(sh["percent"])) if sh else None,
            (str(sel["policy"]), float(sel["eta"]), float(sel["gamma"])) if sel else None,
        )

    def normalised(self) -> TrafficSetting:
        """Weights summing to 1 (rounded), so that equal splits compare equal whatever their scale."""
        total = sum(w for _, _, w in self.targets) or 1.0
        return TrafficSetting(
            tuple((m, v, round(w / total, 6)) for m, v, w in self.targets),
            self.sticky_key,
            self.shadow,
            self.selection,
        )


@dataclass(frozen=True)
class TargetStats:
    """One target's counts since its app's traffic configuration took effect (``get_app_traffic``)."""

    requests: int = 0
    defaults: int = 0
    errors: int = 0
    p99_latency_micros: float | None = None

    @staticmethod
    def from_report(d: dict[str, Any]) -> TargetStats:
        p99 = d.get("p99_latency_micros")
        return TargetStats(
            int(d.get("requests") or 0),
            int(d.get("defaults") or 0),
            int(d.get("errors") or 0),
            None if p99 is None else float(p99),
        )


@dataclass(frozen=True)
class TrafficReport:
    """``get_app_traffic``: the configuration (``None``: a plain app) and per-target statistics by
    ``model:version`` (the configured targets only)."""

    setting: TrafficSetting | None
    stats: dict[str, TargetStats] = field(default_factory=dict)

    @staticmethod
    def from_report(d: dict[str, Any]) -> TrafficReport:
        if not d.get("configured"):
            return TrafficReport(None)
        stats = {
            f"{t['model_name']}:{t['model_version']}": TargetStats.from_report(t.get("stats") or {})
            for t in d.get("targets") or ()
        }
        return TrafficReport(TrafficSetting.from_dict(d), stats)


@dataclass(frozen=True)
class ObservedApp:
    name: str
    input_type: str
    default_output: str
    slo_micros: int
    linked: tuple[str, ...]
    traffic: TrafficSetting | None = None  # None: a plain app (its linked model's current version)


@dataclass(frozen=True)
class AppRecord:
    """Ownership registry entry for an application."""

    owner: str
    git_commit: str | None = None


@dataclass(frozen=True)
class ModelRecord:
    """Ownership registry entry for a model version: what the reconciler deployed."""

    owner: str
    image: str
    content_hash: str | None = None
    #: when it was recorded (seconds since the epoch): the records are stored as JSON with sorted keys,
    #: so this, not their order there, says which version came before which (``None``: recorded before
    #: the field existed, taken as oldest)
    recorded_at: float | None = field(default=None, compare=False)


@dataclass(frozen=True)
class RunningSettings:
    """The ``Cluster`` settings a running cluster runs with (``ClusterSpec`` field names, Python
    spelling; ``admin_token`` is the token itself) and those of them its backend can change in place
    (:meth:`reconciler.port.ClusterPort.reconfigure_cluster`); any other difference is refused."""

    values: dict[str, Any]
    reconfigurable: frozenset[str] = frozenset()
    reported: bool = True  # False: the backend cannot report them (nothing could be compared)


@dataclass
class Observed:
    running: bool
    #: ``None``: not observed (an in-memory test's observation); :func:`observe` always sets it
    settings: RunningSettings | None = None
    apps: dict[str, ObservedApp] = field(default_factory=dict)
    models: dict[str, dict[str, ObservedVersion]] = field(default_factory=dict)
    app_owners: dict[str, AppRecord] = field(default_factory=dict)
    model_records: dict[str, dict[str, ModelRecord]] = field(default_factory=dict)
    #: progressive rollouts by model (:mod:`reconciler.rollout`), read from the reconciler's records
    rollouts: dict[str, Any] = field(default_factory=dict)

    def recorded(self, model: str, version: str) -> ModelRecord | None:
        """The registry's record of ``model:version`` if the registered version is still the one the
        reconciler deployed (same image); ``None`` for a version someone else registered."""
        rec = self.model_records.get(model, {}).get(version)
        obs = self.models.get(model, {}).get(version)
        if rec is None or obs is None or obs.image != rec.image:
            return None
        return rec

    def current(self, model: str) -> ObservedVersion | None:
        for v in self.models.get(model, {}).values():
            if v.is_current:
                return v
        return None

    def model_owner(self, model: str) -> str | None:
        """The owner of a model: the owner recorded for its current version, else for any version.

        Labels do not count (see :meth:`claimed_owner`)."""
        cur = self.current(model)
        if cur is not None and (rec := self.recorded(model, cur.version)) is not None:
            return rec.owner
        for version in sorted(self.models.get(model, {})):
            if (rec := self.recorded(model, version)) is not None:
                return rec.owner
        return None

    def claimed_owner(self, model: str) -> str | None:
        """The owner a model's labels claim (for messages only: anyone may write labels)."""
        cur = self.current(model)
        if cur is not None and cur.owner:
            return cur.owner
        for v in self.models.get(model, {}).values():
            if v.owner:
                return v.owner
        return None


def from_listings(
    apps: list[dict[str, Any]],
    models: list[dict[str, Any]],
    replicas: list[dict[str, Any]],
    app_owners: dict[str, AppRecord] | None = None,
    model_records: dict[str, dict[str, ModelRecord]] | None = None,
    traffic: dict[str, TrafficSetting | None] | None = None,
) -> Observed:
    """Build :class:`Observed` from verbose ``get_all_apps``/``get_all_models``/``get_all_model_replicas``."""
    # A replica the query frontend reports hung ("healthy": false) does not count: `clipper diff`
    # shows the model short of replicas (and exits 1) until the replica is restarted.
    counts = Counter((r["model_name"], str(r["model_version"])) for r in replicas if r.get("healthy", True))
    obs = Observed(running=True, app_owners=dict(app_owners or {}), model_records=dict(model_records or {}))
    for a in apps:
        obs.apps[a["name"]] = ObservedApp(
            name=a["name"],
            input_type=a["input_type"],
            default_output=a["default_output"],
            slo_micros=int(a["latency_slo_micros"]),
            linked=tuple(a.get("linked_models") or ()),
            traffic=(traffic or {}).get(a["name"]),
        )
    for m in models:
        name, version = m["model_name"], str(m["model_version"])
        obs.models.setdefault(name, {})[version] = ObservedVersion(
            name=name,
            version=version,
            input_type=m["input_type"],
            labels=tuple(label for label in (m.get("labels") or ()) if label),
            image=m.get("container_name", ""),
            is_current=bool(m.get("is_current_version")),
            replicas=counts.get((name, version), 0),
        )
    return obs


def observe(
    cluster: ClusterPort,
    app_owners: dict[str, AppRecord],
    model_records: dict[str, dict[str, ModelRecord]] | None = None,
) -> Observed:
    """What the (connected) cluster reports, with this cluster's ownership records."""
    settings = cluster.cluster_settings()  # first: a changed admin token is taken into account
    obs = cluster.observe()
    obs.settings = settings if settings is not None else RunningSettings({}, reported=False)
    obs.app_owners = dict(app_owners)
    obs.model_records = dict(model_records or {})
    return obs
