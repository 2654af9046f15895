"""The plan: a pure function of (desired, observed) -> ordered, classified actions.

Classification:
- ``create``   the object does not exist;
- ``update``   changed in place (model replicas; app default output / SLO, see below);
- ``replace``  rolling replace (a model's new version) or recreate (an app's input type);
- ``delete``   a managed object absent from the manifests, with ``--prune``;
- ``prune``    the same without ``--prune``: shown as "would prune", never executed;
- ``conflict`` the object exists but is not managed by this manifest set: never touched. A model
  version counts as managed only when the reconciler's own registry recorded deploying it with the
  image now registered (:mod:`reconciler.ownership`); labels in the store can be forged, so a
  version registered by someone else is a conflict whatever its labels say;
- ``noop``     nothing to do.

Order: cluster, models, applications, links; then deletions in reverse (links, apps, models).
An app ``update`` (default output, SLO) is done in place (``/admin/update_app``): the app stays
registered and linked, no request is lost.
"""

from __future__ import annotations

import enum
import typing
from dataclasses import dataclass, field
from typing import Any

from pydantic.alias_generators import to_camel

from reconciler.desired import DesiredApp, DesiredModel, DesiredState, DesiredTraffic
from reconciler.observed import Observed, RunningSettings, TrafficSetting
from reconciler.rollout import ABORTED, ROLLED_BACK
from schemas.cluster import ClusterSpec


class Op(enum.StrEnum):
    CREATE = "create"
    UPDATE = "update"
    REPLACE = "replace"
    DELETE = "delete"
    PRUNE = "prune"
    CONFLICT = "conflict"
    NOOP = "noop"


@dataclass(frozen=True)
class Change:
    field: str
    old: Any
    new: Any


@dataclass(frozen=True)
class Action:
    op: Op
    kind: str  # Cluster | Model | Application | Link | Traffic
    name: str
    changes: tuple[Change, ...] = ()
    reason: str = ""
    model: DesiredModel | None = field(default=None, compare=False)
    app: DesiredApp | None = field(default=None, compare=False)
    previous_version: str | None = None  # model: the version traffic moves away from
    stop_versions: tuple[str, ...] = ()  # model: old versions whose replicas stop
    version_registered: bool = False  # model replace: the version exists (rollback/forward)
    unlink: tuple[str, ...] = ()  # link: models to unlink first
    link: str | None = None  # link: model to link
    image: str | None = None  # model update/replace to a registered version: the recorded image
    #: cluster update: (ClusterSpec field, new value) to set; holds the admin token, so never shown
    settings: tuple[tuple[str, Any], ...] = field(default=(), compare=False, repr=False)
    #: traffic: the app's configuration to set (``None``: clear it, a plain app)
    traffic: TrafficSetting | None = None

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.name}"

    @property
    def mutating(self) -> bool:
        return self.op in (Op.CREATE, Op.UPDATE, Op.REPLACE, Op.DELETE)


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...]
    warnings: tuple[str, ...] = ()

    @property
    def changes(self) -> tuple[Action, ...]:
        return tuple(a for a in self.actions if a.mutating)

    @property
    def conflicts(self) -> tuple[Action, ...]:
        return tuple(a for a in self.actions if a.op is Op.CONFLICT)

    @property
    def has_changes(self) -> bool:
        return bool(self.changes)

    @property
    def cluster_action(self) -> Action:
        """The plan's one ``Cluster`` action (found by kind, wherever it is)."""
        found = [a for a in self.actions if a.kind == "Cluster"]
        if len(found) != 1:
            raise ValueError(f"a plan has one Cluster action, this one has {len(found)}")
        return found[0]

    def with_cluster_action(self, action: Action) -> Plan:
        """This plan with its ``Cluster`` action replaced by ``action`` (e.g. the one executed)."""
        current = self.cluster_action
        return Plan(tuple(action if a is current else a for a in self.actions), self.warnings)


def _plan_model(m: DesiredModel, obs: Observed, owner: str, warnings: list[str]) -> Action:
    versions = obs.models.get(m.name)
    if not versions:
        return Action(
            Op.CREATE,
            "Model",
            m.name,
            (Change("version", None, m.version), Change("replicas", None, m.replicas)),
            model=m,
        )
    found_owner = obs.model_owner(m.name)
    if found_owner != owner:
        claimed = obs.claimed_owner(m.name)
        if found_owner:
            why = f"managed by {found_owner!r}"
        elif claimed:
            why = (
                f"labelled as managed by {claimed!r}, but this cluster's reconciler has no record of "
                "deploying it (registered by someone else)"
            )
        else:
            why = "not created by clipper apply"
        return Action(Op.CONFLICT, "Model", m.name, reason=f"exists and is {why}; left untouched", model=m)
    cur = obs.current(m.name)
    stale = tuple(sorted(v.version for v in versions.values() if v.version != m.version and v.replicas > 0))
    rollout = obs.rollouts.get(m.name)
    if (
        cur is not None
        and cur.version != m.version
        and rollout is not None
        and rollout.phase in (ROLLED_BACK, ABORTED)
        and rollout.to_version == m.version
        and rollout.from_version == cur.version
    ):
        warnings.append(
            f"Model/{m.name}: version {m.version} was {'aborted' if rollout.phase == ABORTED else 'rolled back'} "
            f"({rollout.reason}); it is not tried again: change the model (a new version), or "
            f"`clipper rollout retry {m.name}`"
        )
        return Action(Op.NOOP, "Model", m.name, model=m, reason=f"version {m.version} {rollout.phase}")
    if cur is None or cur.version != m.version:
        target = versions.get(m.version)
        changes = [Change("version", cur.version if cur else None, m.version)]
        if target is not None and target.input_type != m.input_type:
            return Action(
                Op.CONFLICT,
                "Model",
                m.name,
                reason=f"version {m.version} is registered with input type "
                f"{target.input_type}; choose another version",
                model=m,
            )
        record = obs.recorded(m.name, m.version) if target is not None else None
        if target is not None and (record is None or record.owner != owner):
            return _foreign_version(m)
        if cur is not None and cur.replicas != m.replicas:
            changes.append(Change("replicas", cur.replicas, m.replicas))
        reason = "rollback/forward to a registered version" if target is not None else "new version"
        progressive = m.rollout.strategy != "immediate" and cur is not None
        if rollout is not None and rollout.active and rollout.to_version == m.version and cur is not None \
                and rollout.from_version == cur.version:  # fmt: skip
            reason = f"resume the {m.rollout.strategy} rollout at step {rollout.step + 1}"
        elif progressive and not (
            rollout is not None and not rollout.active and rollout.from_version == m.version
        ):
            weights = [f"{step.weight:g}%" for step in m.rollout.effective_steps()]
            if weights[-1] != "100%":
                weights.append("100%")
            reason = f"{reason}, {m.rollout.strategy} {' -> '.join(weights)}"
        return Action(
            Op.REPLACE,
            "Model",
            m.name,
            tuple(changes),
            reason=reason,
            model=m,
            previous_version=cur.version if cur else None,
            stop_versions=stale,
            version_registered=target is not None,
            image=record.image if record else None,
        )
    if cur.input_type != m.input_type:
        return Action(
            Op.CONFLICT,
            "Model",
            m.name,
            model=m,
            reason=f"version {m.version} is registered with input type {cur.input_type}; change spec.version",
        )
    record = obs.recorded(m.name, cur.version)
    if record is None or record.owner != owner:
        return _foreign_version(m)
    if m.explicit_version and (observed_hash := record.content_hash) not in (None, m.content_hash):
        warnings.append(
            f"Model/{m.name}: content changed (hash {observed_hash} -> {m.content_hash}) but version "
            f"{m.version} is pinned; change spec.version to roll it out"
        )
    changes = []
    if cur.replicas != m.replicas:
        changes.append(Change("replicas", cur.replicas, m.replicas))
    for v in stale:
        changes.append(Change(f"replicas[{v}]", versions[v].replicas, 0))
    if changes:
        return Action(
            Op.UPDATE, "Model", m.name, tuple(changes), model=m, stop_versions=stale, image=record.image
        )
    return Action(Op.NOOP, "Model", m.name, model=m)


def _foreign_version(m: DesiredModel) -> Action:
    """A registered version this cluster's reconciler did not deploy: starting it would run code that
    someone else chose (its labels prove nothing), so it is never scaled or started."""
    return Action(
        Op.CONFLICT,
        "Model",
        m.name,
        reason=f"version {m.version} is registered but was not deployed by this cluster's clipper apply "
        "(no matching record in its ownership registry, whatever its labels say); left untouched. "
        "Remove that version or choose another spec.version",
        model=m,
    )


def _plan_app(a: DesiredApp, obs: Observed, owner: str) -> Action:
    cur = obs.apps.get(a.name)
    record = obs.app_owners.get(a.name)
    if cur is None:
        return Action(
            Op.CREATE,
            "Application",
            a.name,
            (
                Change("inputType", None, a.input_type),
                Change("defaultOutput", None, a.default_output),
                Change("latencySloMicros", None, a.slo_micros),
            ),
            app=a,
        )
    if record is None or record.owner != owner:
        why = f"managed by {record.owner!r}" if record else "not created by clipper apply"
        return Action(
            Op.CONFLICT, "Application", a.name, reason=f"exists and is {why}; left untouched", app=a
        )
    changes = [
        Change(f, old, new)
        for f, old, new in (
            ("inputType", cur.input_type, a.input_type),
            ("defaultOutput", cur.default_output, a.default_output),
            ("latencySloMicros", cur.slo_micros, a.slo_micros),
        )
        if old != new
    ]
    if not changes:
        return Action(Op.NOOP, "Application", a.name, app=a)
    if any(c.field == "inputType" for c in changes):
        return Action(
            Op.REPLACE, "Application", a.name, tuple(changes), reason="input type changes: re-register", app=a
        )
    return Action(
        Op.UPDATE,
        "Application",
        a.name,
        tuple(changes),
        reason="updated in place",
        app=a,
    )


def _plan_link(a: DesiredApp, linked: tuple[str, ...]) -> Action | None:
    want = (a.model,) if a.model else ()
    if tuple(linked) == want:
        return Action(Op.NOOP, "Link", a.name, link=a.model) if want else None
    change = Change("model", ", ".join(linked) or None, a.model)
    if not want:
        return Action(Op.DELETE, "Link", a.name, (change,), unlink=tuple(linked))
    op = Op.REPLACE if linked else Op.CREATE
    return Action(op, "Link", a.name, (change,), unlink=tuple(linked), link=a.model)


#: What changing a ``Cluster`` field of a running cluster takes, where its backend can do it.
CLUSTER_RESTARTS: dict[str, str] = {
    "cache_size_bytes": "restart of the query frontend",
    "query_port": "restart of the query frontend on the new port",
    "rpc_port": "restart of the query frontend on the new port and of every model replica (they "
    "connect to it)",
    "management_port": "restart of the management frontend on the new port",
    "admin_token": "restart of the management frontend with the new token",
    "admin_auth": "restart of the management frontend",
}
_HIDDEN = "(hidden)"


def _spec_value(spec: ClusterSpec, name: str) -> Any:
    """The manifest's value of setting ``name``; a dotted name (``redis.host``,
    ``kubernetes.service_types.query``) walks the nested settings, an absent section read as its
    defaults."""
    value: Any = spec
    *sections, last = name.split(".")
    for part in sections:
        nested = getattr(value, part)
        if nested is None:
            annotation = type(value).model_fields[part].annotation
            nested = next(t for t in typing.get_args(annotation) if t is not type(None))()
        value = nested
    return getattr(value, last)


def _label(name: str) -> str:
    """A setting's manifest spelling: ``kubernetes.service_types.query_rpc`` ->
    ``kubernetes.serviceTypes.queryRpc``."""
    return ".".join(to_camel(part) for part in name.split("."))


def _setting_changes(spec: ClusterSpec, running: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(field, running, desired)`` for every field the cluster reports that differs from ``spec``.

    ``adminToken`` absent from the manifest means "a generated one": any running token matches; a
    port 0, "any free port", matches the port the cluster got."""
    out: list[tuple[str, Any, Any]] = []
    for name in sorted(running):
        want = _spec_value(spec, name)
        have = running[name]
        if name == "admin_token" and (want is None or spec.admin_auth == "none"):
            continue  # adminAuth decides whether there is one; the value is the manifest's to give
        if name.endswith("_port") and want == 0:
            continue  # "any free port": whichever the cluster got
        if want != have:
            out.append((name, have, want))
    return out


def plan_cluster(name: str, spec: ClusterSpec, settings: RunningSettings | None) -> tuple[Action, str | None]:
    """The ``Cluster`` action for a running cluster, and a warning when its settings cannot be read.

    Every field the backend reports is compared: a difference it can make in place is an update
    (reason: what it restarts, :data:`CLUSTER_RESTARTS`), any other one a conflict that says why."""
    if settings is None:  # not observed (in-memory observations of tests)
        return Action(Op.NOOP, "Cluster", name), None
    if not settings.reported:
        return Action(Op.NOOP, "Cluster", name), (
            f"Cluster/{name}: the {spec.backend} backend does not report a running cluster's settings, "
            "so they are not compared with the manifest; to change them, delete the cluster and "
            "apply again"
        )
    diffs = _setting_changes(spec, settings.values)
    if not diffs:
        return Action(Op.NOOP, "Cluster", name), None
    changes = tuple(
        Change(_label(f), _HIDDEN if f == "admin_token" and old else old, _HIDDEN if f == "admin_token" else new)
        for f, old, new in diffs
    )  # fmt: skip
    refused = [f for f, _, _ in diffs if f not in settings.reconfigurable]
    if refused:
        fields = ", ".join(_label(f) for f in refused)
        return Action(
            Op.CONFLICT,
            "Cluster",
            name,
            changes,
            reason=f"{fields} cannot be changed on a running {spec.backend} cluster: delete the cluster "
            "and apply again",
        ), None
    restarts = list(dict.fromkeys(CLUSTER_RESTARTS[f] for f, _, _ in diffs))
    settings_new = tuple((f, new) for f, _, new in diffs)
    # a new token replaces the running one together with adminAuth's change
    if spec.admin_auth == "token" and spec.admin_token is not None and "admin_auth" in dict(settings_new):
        settings_new = (*settings_new, ("admin_token", spec.admin_token))
    return Action(
        Op.UPDATE,
        "Cluster",
        name,
        changes,
        reason="; ".join(restarts),
        settings=tuple(dict(settings_new).items()),
    ), None


def make_plan(desired: DesiredState, observed: Observed, owner: str, prune: bool = False) -> Plan:
    """Ordered actions that take ``observed`` to ``desired`` for the objects ``owner`` manages."""
    warnings: list[str] = []
    actions: list[Action] = []
    if not observed.running:
        actions.append(
            Action(
                Op.CREATE,
                "Cluster",
                desired.cluster_name,
                (Change("backend", None, desired.cluster.backend),),
            )
        )
    else:
        cluster_action, warning = plan_cluster(desired.cluster_name, desired.cluster, observed.settings)
        actions.append(cluster_action)
        if warning is not None:
            warnings.append(warning)
    model_actions = [
        _plan_model(desired.models[n], observed, owner, warnings) for n in sorted(desired.models)
    ]
    # the server refuses a model version whose input type differs from a linked app's: unlink first
    retyped = {
        a.name
        for a in model_actions
        if a.op is Op.REPLACE
        and a.model is not None
        and (was := observed.current(a.name)) is not None
        and was.input_type != a.model.input_type
    }
    unlinked: set[str] = set()
    for app in sorted(observed.apps.values(), key=lambda x: x.name):
        if retyped.intersection(app.linked) and _owns_app(observed, app.name, owner):
            unlinked.add(app.name)
            actions.append(
                Action(
                    Op.DELETE,
                    "Link",
                    app.name,
                    (Change("model", ", ".join(app.linked), None),),
                    reason="input type changes",
                    unlink=app.linked,
                )
            )
    actions += model_actions
    app_actions = [_plan_app(desired.apps[n], observed, owner) for n in sorted(desired.apps)]
    actions += app_actions
    for act in app_actions:
        if act.op is Op.CONFLICT:
            continue
        recreated = act.op in (Op.CREATE, Op.REPLACE)
        existing = observed.apps.get(act.name)
        linked = () if recreated or existing is None or act.name in unlinked else existing.linked
        link = _plan_link(desired.apps[act.name], linked)
        if link is not None:
            actions.append(link)
    actions += _plan_traffic(desired, observed, model_actions, app_actions)
    # deletions, reverse order: applications (their links go with them), then models
    gone = Op.DELETE if prune else Op.PRUNE
    for name in sorted(observed.apps):
        if name not in desired.apps and _owns_app(observed, name, owner):
            actions.append(
                Action(gone, "Application", name, reason="" if prune else "not in the manifests; use --prune")
            )
    for name in sorted(observed.models):
        if name not in desired.models and observed.model_owner(name) == owner:
            versions = tuple(sorted(observed.models[name]))
            actions.append(
                Action(
                    gone,
                    "Model",
                    name,
                    (Change("versions", ", ".join(versions), None),),
                    reason="" if prune else "not in the manifests; use --prune",
                )
            )
    return Plan(tuple(actions), tuple(warnings))


def make_delete_plan(desired: DesiredState, observed: Observed, owner: str) -> Plan:
    """``clipper delete``: delete the manifests' applications, then their models, that exist and
    that ``owner`` manages (the same ownership rules as :func:`make_plan`'s pruning: an app by its
    registry record, a model by the recorded owner of its versions). Objects someone else manages,
    or that do not exist, are left alone; a cluster that is not running has nothing to delete."""
    if not observed.running:
        return Plan(())
    actions = [
        Action(Op.DELETE, "Application", name)
        for name in sorted(desired.apps)
        if name in observed.apps and _owns_app(observed, name, owner)
    ]
    actions += [
        Action(Op.DELETE, "Model", name)
        for name in sorted(desired.models)
        if name in observed.models and observed.model_owner(name) == owner
    ]
    return Plan(tuple(actions))


def _after_models(desired: DesiredState, observed: Observed, model_actions: list[Action]) -> dict[str, str]:
    """The current version of each model once the model actions are done."""
    out = {name: v.version for name in observed.models if (v := observed.current(name)) is not None}
    for a in model_actions:
        if a.op in (Op.CREATE, Op.REPLACE) and a.model is not None:
            out[a.name] = a.model.version
    return out


def resolve_traffic(t: DesiredTraffic | None, versions: dict[str, str]) -> TrafficSetting | None:
    """The configuration an app's manifest asks for, each model at its current version (``versions``);
    ``None`` for a plain app (one model, no shadow, no selection). A model without a version yet is left
    out (its creation failed or comes later)."""
    if t is None or t.plain:
        return None
    targets = tuple((m, versions[m], w) for m, w in t.models if m in versions)
    shadow = None
    if t.shadow is not None:
        model, version, pct = t.shadow
        v = version or versions.get(model)
        shadow = (model, v, pct) if v else None
    return TrafficSetting(targets, t.sticky_key, shadow, t.selection) if targets else None


def describe_traffic(s: TrafficSetting | None) -> str | None:
    """``a:v1 90%, b:v2 10%; sticky user; shadow c:v3 5%; exp3``; ``None`` for a plain app."""
    if s is None:
        return None
    total = sum(w for _, _, w in s.targets) or 1.0
    parts = [", ".join(f"{m}:{v} {100 * w / total:.4g}%" for m, v, w in s.targets)]
    if s.sticky_key:
        parts.append(f"sticky {s.sticky_key}")
    if s.shadow:
        parts.append(f"shadow {s.shadow[0]}:{s.shadow[1]} {s.shadow[2]:g}%")
    if s.selection:
        parts.append(s.selection[0])
    return "; ".join(parts)


def _plan_traffic(
    desired: DesiredState, observed: Observed, model_actions: list[Action], app_actions: list[Action]
) -> list[Action]:
    """A ``Traffic`` action per managed app whose traffic configuration (A/B/N weights, sticky key,
    shadow, selection) differs from its manifest's. Apps a rollout is splitting are left to it."""
    versions = _after_models(desired, observed, model_actions)
    splitting = {a.app for r in observed.rollouts.values() if r.active for a in r.apps}
    out = []
    for act in app_actions:
        if act.op is Op.CONFLICT or act.name in splitting:
            continue
        want = resolve_traffic(desired.apps[act.name].traffic, versions)
        existing = observed.apps.get(act.name)
        have = None if act.op in (Op.CREATE, Op.REPLACE) or existing is None else existing.traffic
        if (want.normalised() if want else None) == (have.normalised() if have else None):
            continue
        op = Op.CREATE if have is None else Op.DELETE if want is None else Op.UPDATE
        change = Change("traffic", describe_traffic(have), describe_traffic(want))
        out.append(Action(op, "Traffic", act.name, (change,), traffic=want))
    return out


def _owns_app(observed: Observed, name: str, owner: str) -> bool:
    rec = observed.app_owners.get(name)
    return rec is not None and rec.owner == owner
