"""The ``status`` of a custom resource, as a pure function of what the reconciler found.

Input: the object's :class:`reconciler.status.ObjectStatus` (the same sync and health ``clipper
status`` prints), optionally a :class:`Verdict` (what the controller knows beyond the observation:
the spec is invalid, there is no Cluster, an apply is running or failed, the resource is being
deleted), the resource's ``metadata.generation``, its current ``status`` and the time.

Output (docs/controller.md, "Status"): ``observedGeneration``, ``sync``, ``health``, ``message`` and
the conditions ``Ready``, ``Synced``, ``Progressing``, ``Degraded``; Models also
``currentVersion``, ``previousVersion``, ``readyReplicas``, ``replicas``.

A condition's ``lastTransitionTime`` changes only when its ``status`` does, so a status computed
twice from the same facts is equal to the one already written (the controller writes only when it
changed: its own writes do not make it reconcile again).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from reconciler.status import ObjectStatus

#: the Verdict reasons; the first three are failures (Degraded), the last two work in progress
INVALID_SPEC, NO_CLUSTER, APPLY_FAILED, APPLYING, DELETING = (
    "InvalidSpec", "NoCluster", "ApplyFailed", "Applying", "Deleting")  # fmt: skip
FAILURES = (INVALID_SPEC, NO_CLUSTER, APPLY_FAILED)
CONVERGED, ROLLING_OUT, OUT_OF_SYNC, CONFLICT, REPLICAS_UNAVAILABLE, MISSING = (
    "Converged", "RollingOut", "OutOfSync", "Conflict", "ReplicasUnavailable", "Missing")  # fmt: skip
CONDITION_TYPES = ("Ready", "Synced", "Progressing", "Degraded")
#: the Model fields beyond those of every kind
MODEL_FIELDS = ("currentVersion", "previousVersion", "readyReplicas", "replicas")


@dataclass(frozen=True)
class Verdict:
    """What the controller knows about a resource beyond the observation; ``reason`` is one of
    InvalidSpec, NoCluster, ApplyFailed (failures: health Degraded), Applying, Deleting (health
    Progressing)."""

    reason: str
    message: str


def rfc3339(t: datetime) -> str:
    """``2026-12-01T14:00:00Z`` (UTC, whole seconds), as Kubernetes writes times."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _sync_health_message(obj: ObjectStatus | None, verdict: Verdict | None) -> tuple[str, str, str]:
    if verdict is not None:
        health = "Degraded" if verdict.reason in FAILURES else "Progressing"
        extra = obj.reason if obj is not None and verdict.reason == APPLY_FAILED else ""
        message = "; ".join(m for m in (verdict.message, extra) if m)
        sync = obj.sync.value if obj is not None and verdict.reason == DELETING else OUT_OF_SYNC
        return sync, health, message
    if obj is None:
        return "Unknown", "Unknown", ""
    return obj.sync.value, obj.health.value, obj.reason


def _why(sync: str, health: str, verdict: Verdict | None) -> str:
    """The reason an object is not Ready."""
    if verdict is not None:
        return verdict.reason
    if sync == CONFLICT:
        return CONFLICT
    if health == "Degraded":
        return REPLICAS_UNAVAILABLE
    if health == "Progressing":
        return ROLLING_OUT
    if sync == OUT_OF_SYNC:
        return OUT_OF_SYNC
    if health == "Missing":
        return MISSING
    return "Unknown"


def _condition(type_: str, status: str, reason: str, message: str, generation: int) -> dict[str, Any]:
    """One condition; a Converged one carries no message (nothing is wrong)."""
    return {"type": type_, "status": status, "reason": reason,
            "message": "" if reason == CONVERGED else message, "observedGeneration": generation}  # fmt: skip


def conditions(
    sync: str, health: str, message: str, verdict: Verdict | None, generation: int
) -> list[dict[str, Any]]:
    """The four conditions, without ``lastTransitionTime`` (see :func:`status_doc`)."""
    why = _why(sync, health, verdict)
    ready = sync == "Synced" and health == "Healthy"
    unknown = sync == "Unknown" and health == "Unknown"
    busy = verdict.reason if verdict is not None and verdict.reason not in FAILURES else ROLLING_OUT
    failed = verdict.reason if verdict is not None and verdict.reason in FAILURES else REPLICAS_UNAVAILABLE
    calm = CONVERGED if health == "Healthy" else why
    out = [
        ("Ready", "Unknown" if unknown else str(ready), CONVERGED if ready else why),
        ("Synced", "Unknown" if sync == "Unknown" else str(sync == "Synced"),
         CONVERGED if sync == "Synced" else (verdict.reason if verdict is not None else
                                             CONFLICT if sync == CONFLICT else
                                             "Unknown" if sync == "Unknown" else OUT_OF_SYNC)),
        ("Progressing", "Unknown" if unknown else str(health == "Progressing"),
         busy if health == "Progressing" else calm),
        ("Degraded", "Unknown" if unknown else str(health == "Degraded"),
         failed if health == "Degraded" else calm),
    ]  # fmt: skip
    return [_condition(t, s, r, message, generation) for t, s, r in out]


def status_doc(
    kind: str,
    obj: ObjectStatus | None,
    generation: int,
    previous: Mapping[str, Any] | None,
    now: datetime,
    verdict: Verdict | None = None,
) -> dict[str, Any]:
    """The resource's ``status`` (see the module's docstring). ``obj`` may be None when the object
    was not planned (a verdict says why); a Model then keeps the version fields ``previous`` had."""
    previous = previous or {}
    sync, health, message = _sync_health_message(obj, verdict)
    before = {c.get("type"): c for c in previous.get("conditions") or () if isinstance(c, Mapping)}
    conds = []
    for c in conditions(sync, health, message, verdict, generation):
        old = before.get(c["type"])
        same = old is not None and old.get("status") == c["status"] and old.get("lastTransitionTime")
        c["lastTransitionTime"] = old["lastTransitionTime"] if same and old else rfc3339(now)
        conds.append(c)
    doc: dict[str, Any] = {"observedGeneration": generation, "sync": sync, "health": health,
                           "message": message, "conditions": conds}  # fmt: skip
    if kind == "Model":
        if obj is not None:
            fields = (obj.current_version, obj.previous_version, obj.actual_replicas, obj.desired_replicas)
            doc.update(zip(MODEL_FIELDS, fields, strict=True))
        else:
            doc.update({k: previous.get(k) for k in MODEL_FIELDS})
        for k in MODEL_FIELDS:
            if doc[k] is None:
                del doc[k]
    return doc


def status_patch(previous: Mapping[str, Any] | None, doc: Mapping[str, Any]) -> dict[str, Any] | None:
    """The merge patch turning ``previous`` into ``doc`` (a key ``doc`` lacks is set to null, so it
    goes); None when they are equal: nothing to write."""
    previous = previous or {}
    if dict(previous) == dict(doc):
        return None
    patch = dict(doc)
    patch.update({k: None for k in previous if k not in doc})
    return patch
