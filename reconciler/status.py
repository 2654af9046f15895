"""``clipper status``: per object, whether it is what the manifests say (sync) and whether it serves
(health), as a pure function of the desired state, the observed state and the plan.

Sync (the plan's verdict): ``Synced`` (apply would not touch it), ``OutOfSync`` (apply would change,
create or prune it), ``Conflict`` (apply refuses it: not managed by this owner), ``Unknown`` (no
manifests given). Health (what runs):

- ``Healthy``: a model's current version has at least its desired replicas healthy (connected, not
  reported hung); an application's linked model serves (or no model is linked: it answers its
  default output, as asked); the cluster runs.
- ``Progressing``: a model's current version has some healthy replicas but fewer or more than desired
  (a scale in progress), or the desired version has replicas but is not current yet (rolling out). A
  desired version not applied yet leaves health to what runs (sync says ``OutOfSync``).
- ``Degraded``: a model with no healthy replica of its current version while replicas are desired; a
  desired version registered but not current and without replicas (its rollout failed: the health
  gate or its replicas; the previous version serves); an application whose linked model has no
  healthy replica (it answers its default output).
- ``Missing``: the object does not exist in the cluster.

The JSON form (``clipper status --output json``, :func:`status_json`) is a stable format, documented
in the README.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from reconciler.desired import DesiredState
from reconciler.labels import GIT_COMMIT, label_value
from reconciler.observed import Observed
from reconciler.plan import Action, Op, Plan

#: version of the ``clipper status --output json|yaml`` format
FORMAT_VERSION = 1


class Sync(enum.StrEnum):
    SYNCED = "Synced"
    OUT_OF_SYNC = "OutOfSync"
    CONFLICT = "Conflict"
    UNKNOWN = "Unknown"


class Health(enum.StrEnum):
    HEALTHY = "Healthy"
    PROGRESSING = "Progressing"
    DEGRADED = "Degraded"
    MISSING = "Missing"


@dataclass(frozen=True)
class ObjectStatus:
    kind: str
    name: str
    sync: Sync
    health: Health
    reason: str = ""  # why not Synced/Healthy (or what Healthy means here), for people
    desired_replicas: int | None = None  # models
    actual_replicas: int | None = None  # models: healthy replicas of the current version
    current_version: str | None = None  # models
    previous_version: str | None = None  # models: the version recorded before the current one
    model: str | None = None  # applications: the linked model
    revision: str | None = None  # the manifests' revision this object is synced to (when Synced)
    deployed_revision: str | None = None  # models: the revision labelled on the current version

    @property
    def ok(self) -> bool:
        return self.sync in (Sync.SYNCED, Sync.UNKNOWN) and self.health is Health.HEALTHY

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "sync": {"status": self.sync.value, "revision": self.revision},
            "health": {"status": self.health.value, "reason": self.reason or None},
            "replicas": None
            if self.desired_replicas is None
            else {"desired": self.desired_replicas, "actual": self.actual_replicas},
            "versions": None
            if self.kind != "Model"
            else {
                "current": self.current_version,
                "previous": self.previous_version,
                "deployedRevision": self.deployed_revision,
            },
            "model": self.model,
        }


def _sync(actions: Sequence[Action], known: bool) -> tuple[Sync, str]:
    if not known:
        return Sync.UNKNOWN, ""
    conflict = [a for a in actions if a.op is Op.CONFLICT]
    if conflict:
        return Sync.CONFLICT, conflict[0].reason
    pending = [a for a in actions if a.op is not Op.NOOP]
    if not pending:
        return Sync.SYNCED, ""
    what = "; ".join(
        f"would {a.op.value}"
        if a.op in (Op.CREATE, Op.PRUNE, Op.DELETE) and a.kind != "Link"
        else (f"{a.kind} " if a.kind == "Link" else "")
        + (", ".join(f"{c.field} {c.old} -> {c.new}" for c in a.changes) or a.reason or f"would {a.op.value}")
        for a in pending
    )
    return Sync.OUT_OF_SYNC, what


def _previous(observed: Observed, name: str, current: str | None) -> str | None:
    """The version recorded (deployed by the reconciler) just before ``current`` and still registered:
    one that failed its health gate never was, and is no version to go back to."""
    registered = observed.models.get(name, {})
    order = [v for v in observed.model_records.get(name, {}) if v in registered]
    if current in order:
        before = order[: order.index(current)]
        return before[-1] if before else None
    return order[-1] if order else None


def _model_health(
    observed: Observed, name: str, desired_version: str | None, desired_replicas: int | None
) -> tuple[Health, str, int, str | None]:
    versions = observed.models.get(name, {})
    cur = observed.current(name)
    if not versions or cur is None:
        return Health.MISSING, "no registered current version", 0, None
    have, want = cur.replicas, desired_replicas if desired_replicas is not None else cur.replicas
    if desired_version is not None and desired_version != cur.version:
        aside = versions.get(desired_version)
        if aside is not None and aside.replicas == 0:
            return (Health.DEGRADED,
                    f"version {desired_version} is registered but does not serve (its rollout failed: "
                    f"replicas or health check); {cur.version} serves with {have} replica(s)",
                    have, cur.version)  # fmt: skip
        if aside is not None:
            return (Health.PROGRESSING, f"{desired_version} is rolling out; {cur.version} serves",
                    have, cur.version)  # fmt: skip
        # not applied yet: what runs is judged as it is (sync says it is OutOfSync)
    if desired_replicas is None and have == 0:  # no manifests: nothing serves
        return Health.DEGRADED, f"no healthy replica of {cur.version}", have, cur.version
    if want > 0 and have == 0:
        return Health.DEGRADED, f"0/{want} replicas of {cur.version} healthy", have, cur.version
    if have != want:
        return Health.PROGRESSING, f"{have}/{want} replicas of {cur.version} healthy", have, cur.version
    return Health.HEALTHY, "", have, cur.version


def rollout_line(r: Any) -> str:
    """``canary sum-model 1 -> 2: step 2/3, 50% (120 requests, error rate 0.0%)``."""
    n = r.numbers or {}
    rate = n.get("errorRate")
    numbers = (
        f" ({n.get('requests', 0)} requests, error rate {'-' if rate is None else f'{100 * rate:.1f}%'})"
    )
    return (f"{r.strategy} {r.from_version} -> {r.to_version}: step {min(r.step + 1, len(r.steps))}/{len(r.steps)}, "
            f"{r.weight:g}% to {r.to_version}" + (numbers if n else ""))  # fmt: skip


def _rollout_health(
    observed: Observed, name: str, desired_version: str | None, health: Health, why: str
) -> tuple[Health, str]:
    """A canary/blueGreen rollout in progress, or one that rolled back the desired version."""
    from reconciler.rollout import ABORTED, ROLLED_BACK

    r = observed.rollouts.get(name)
    if r is None or (desired_version is not None and r.to_version != desired_version):
        return health, why
    if r.active:
        return Health.PROGRESSING, rollout_line(r)
    if (
        r.phase in (ROLLED_BACK, ABORTED)
        and (cur := observed.current(name)) is not None
        and cur.version != r.to_version
    ):
        word = "aborted" if r.phase == ABORTED else "rolled back"
        return (
            Health.DEGRADED,
            f"the {r.strategy} rollout of {r.to_version} was {word}: {r.reason}; {cur.version} serves",
        )
    return health, why


def statuses(
    desired: DesiredState | None, observed: Observed, plan: Plan | None, revision: str | None = None
) -> list[ObjectStatus]:
    """One :class:`ObjectStatus` per object the manifests name or the plan would prune (with
    ``desired``/``plan``), else per object the cluster has. ``revision``: the manifests' git revision."""
    known = desired is not None and plan is not None
    by_ref: dict[tuple[str, str], list[Action]] = {}
    for a in plan.actions if plan is not None else ():
        kind = "Application" if a.kind in ("Link", "Traffic") else a.kind
        by_ref.setdefault((kind, a.name), []).append(a)
    out: list[ObjectStatus] = []

    cluster_name = desired.cluster_name if desired is not None else ""
    sync, why = _sync(by_ref.get(("Cluster", cluster_name), []), known)
    out.append(ObjectStatus("Cluster", cluster_name, sync, Health.HEALTHY if observed.running else Health.MISSING,
                            "; ".join(x for x in (why, "" if observed.running else "not running") if x),
                            revision=revision if sync is Sync.SYNCED else None))  # fmt: skip

    model_names = set(desired.models) if desired is not None else set(observed.models)
    model_names |= {n for k, n in by_ref if k == "Model"}
    for name in sorted(model_names):
        dm = desired.models.get(name) if desired is not None else None
        sync, why = _sync(by_ref.get(("Model", name), []), known)
        health, hwhy, have, cur = _model_health(
            observed, name, dm.version if dm else None, dm.replicas if dm else None
        )
        health, hwhy = _rollout_health(observed, name, dm.version if dm else None, health, hwhy)
        cur_v = observed.current(name)
        out.append(ObjectStatus(
            "Model", name, sync, health, "; ".join(x for x in (why, hwhy) if x),
            desired_replicas=dm.replicas if dm else None, actual_replicas=have, current_version=cur,
            previous_version=_previous(observed, name, cur),
            revision=revision if sync is Sync.SYNCED else None,
            deployed_revision=label_value(cur_v.labels, GIT_COMMIT) if cur_v else None,
        ))  # fmt: skip

    app_names = set(desired.apps) if desired is not None else set(observed.apps)
    app_names |= {n for k, n in by_ref if k == "Application"}
    for name in sorted(app_names):
        sync, why = _sync(by_ref.get(("Application", name), []), known)
        app = observed.apps.get(name)
        linked = app.linked[0] if app and app.linked else None
        if app is None:
            health, hwhy = Health.MISSING, "not registered"
        elif linked is None:
            health, hwhy = Health.HEALTHY, "no model linked: answers its default output"
        else:
            serving = observed.current(linked)
            if serving is None or serving.replicas == 0:
                health, hwhy = (
                    Health.DEGRADED,
                    f"model {linked} has no healthy replica: answers its default output",
                )
            else:
                health, hwhy = Health.HEALTHY, ""
        out.append(ObjectStatus("Application", name, sync, health, "; ".join(x for x in (why, hwhy) if x),
                                model=linked, revision=revision if sync is Sync.SYNCED else None))  # fmt: skip
    return out


def exit_code(objects: Sequence[ObjectStatus]) -> int:
    """0 when every object is Synced (or no manifests were given) and Healthy, else 1."""
    return 0 if all(o.ok for o in objects) else 1


def status_json(cluster: str, objects: Sequence[ObjectStatus], revision: str | None) -> dict[str, Any]:
    return {
        "formatVersion": FORMAT_VERSION,
        "cluster": cluster,
        "revision": revision,
        "ok": all(o.ok for o in objects),
        "objects": [o.to_json() for o in objects],
    }
