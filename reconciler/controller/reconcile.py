"""One reconcile pass over a namespace: its custom resources -> the CLI's plan/apply -> their status.

A pass is level-triggered: it lists the namespace's Cluster, Models and Applications and plans them
together, whatever event woke it (:mod:`reconciler.controller.run`). In order:

1. every live resource gets the finalizer ``clipper.ai/cleanup``;
2. a Cluster being deleted stops its Clipper cluster (as ``clipper delete --cluster``), then its
   finalizer goes;
3. the live resources become a manifest set (:mod:`reconciler.controller.manifests`); refused ones
   get InvalidSpec, everything NoCluster when there is no usable Cluster;
4. :func:`reconciler.engine.plan_for`; when it changes something, the resources concerned say
   Progressing (Applying) and :func:`reconciler.engine.apply` runs with ``prune=True``, so what
   deleted resources owned goes (owner: the Cluster's name, as ``clipper apply`` uses: a namespace
   applied with the CLI before is taken over without conflicts). A failed apply (a new version
   failing its health gate: the old one keeps serving) is ApplyFailed on the resources whose actions
   failed, and the pass is retried with a backoff;
5. the statuses of :func:`reconciler.status.statuses` are written to the resources whose status
   changed (:mod:`reconciler.controller.conditions`), and the finalizers of deleted resources go once
   the apply pruned what they owned.

Events: Normal per executed action (Created, Updated, RolledOut, Deleted), Warning when a resource
becomes InvalidSpec, NoCluster or ApplyFailed (once per new message, not per retry).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from reconciler.controller import COMPONENT, FINALIZER, PLURALS, VERSION
from reconciler.controller.conditions import (
    APPLY_FAILED,
    APPLYING,
    DELETING,
    FAILURES,
    Verdict,
    rfc3339,
    status_doc,
    status_patch,
)
from reconciler.controller.kube import KubeError, KubePort, NotFound
from reconciler.controller.manifests import Ref, Resource, desired, doc_name, document, in_namespace
from reconciler.plan import Action, Op
from reconciler.watch import Backoff

if TYPE_CHECKING:
    from reconciler.engine import Target
    from reconciler.loader import ManifestSet
    from reconciler.status import ObjectStatus

log = logging.getLogger(__name__)

#: seconds between passes while something is progressing (a rollout, replicas starting)
PROGRESS_S = 5.0
#: first retry after a failed pass, doubled per failure in a row up to MAX_BACKOFF_S
RETRY_S = 5.0
MAX_BACKOFF_S = 300.0
#: Event reasons per executed action
EVENT_REASONS = {Op.CREATE: "Created", Op.UPDATE: "Updated", Op.REPLACE: "RolledOut", Op.DELETE: "Deleted"}


def _now() -> datetime:
    return datetime.now(UTC)


def cr_ref(action: Action) -> Ref:
    """The custom resource an action is about (a link or traffic change is its Application's)."""
    return ("Application" if action.kind in ("Link", "Traffic") else action.kind), action.name


class Recorder:
    """A :class:`reconciler.execute.Reporter` keeping every executed action and its error."""

    def __init__(self) -> None:
        self.finished: list[tuple[Action, BaseException | None]] = []

    def start(self, action: Action) -> None:
        pass

    def progress(self, action: Action, done: int, total: int) -> None:
        pass

    def finish(self, action: Action, error: BaseException | None) -> None:
        from reconciler.render import event_line

        self.finished.append((action, error))
        log.info("%s", event_line(action, error, None))


def _retrying(r: Resource) -> bool:
    """Whether a pass retries ``r``'s failed apply (same spec): its status stays ApplyFailed meanwhile
    instead of flipping to Applying and back at every retry."""
    degraded = [c for c in r.status.get("conditions") or () if c.get("type") == "Degraded"]
    return r.status.get("observedGeneration") == r.generation and any(
        c.get("status") == "True" and c.get("reason") == APPLY_FAILED for c in degraded)  # fmt: skip


def _target_for(manifests: ManifestSet) -> Target:
    from reconciler.engine import target_for

    return target_for(manifests)


class Controller:
    """The passes over one namespace (state kept between them: the last valid documents, what the
    watches have already seen, the backoff)."""

    def __init__(self, api: KubePort, namespace: str,
                 make_target: Callable[[ManifestSet], Target] = _target_for,
                 clock: Callable[[], datetime] = _now, lock_timeout: float = 60.0) -> None:  # fmt: skip
        self.api, self.namespace, self.make_target = api, namespace, make_target
        self.clock, self.lock_timeout = clock, lock_timeout
        self.last_good: dict[Ref, dict[str, Any]] = {}
        self.seen: dict[Ref, tuple[Any, ...]] = {}
        self.backoff = Backoff(RETRY_S, MAX_BACKOFF_S)

    # -- what wakes a pass -----------------------------------------------------------------------
    @staticmethod
    def key(obj: dict[str, Any]) -> tuple[Any, ...]:
        """What of a resource a pass depends on; a status write changes none of it."""
        m = obj.get("metadata") or {}
        return (m.get("uid"), m.get("generation"), bool(m.get("deletionTimestamp")),
                tuple(m.get("finalizers") or ()), tuple(sorted((m.get("labels") or {}).items())))  # fmt: skip

    def relevant(self, event: str, obj: dict[str, Any]) -> bool:
        """Whether a watch event may change what a pass does (not our own status writes)."""
        ref = (str(obj.get("kind")), str((obj.get("metadata") or {}).get("name")))
        if event == "DELETED":
            return ref in self.seen
        return self.seen.get(ref) != self.key(obj)

    # -- the pass --------------------------------------------------------------------------------
    def reconcile(self) -> float | None:
        """One pass (see the module's docstring). Returns in how many seconds the next pass is due
        at the latest (retry or progress), None: at the next resync."""
        started = time.monotonic()
        resources: list[Resource] = []
        for kind in PLURALS:
            items, _ = self.api.list_objects(kind, self.namespace)
            resources += [Resource({"kind": kind, **o}) for o in items]
        resources = [self._with_finalizer(r) for r in resources]
        self.seen = {r.ref: self.key(r.raw) for r in resources}
        failed = False
        for r in resources:
            if r.kind == "Cluster" and r.deleting and FINALIZER in r.finalizers:
                failed |= not self._stop_cluster(r)
        live = [r for r in resources if not r.deleting]
        going = [r for r in resources if r.deleting and r.kind != "Cluster" and FINALIZER in r.finalizers]
        d = desired(live, self.namespace, self.last_good)
        actions = 0
        progressing = False
        if d.manifests is None:
            for r in live:
                self._write(r, None, d.verdicts.get(r.ref))
            for r in going:  # no cluster: nothing it owned can be running under this namespace's Cluster
                self._drop_finalizer(r, "nothing to clean up: no Cluster")
        else:
            ok, actions, progressing = self._plan_and_apply(d, live, going)
            failed |= not ok
        delay: float | None
        if failed:
            delay = self.backoff.failed()
        else:
            self.backoff.succeeded()
            delay = PROGRESS_S if progressing else None
        log.info("reconciled namespace %s: %d resource(s), %d action(s)%s in %.1f s", self.namespace,
                 len(resources), actions, f", failed: retrying in {delay:g} s" if failed and delay else "",
                 time.monotonic() - started)  # fmt: skip
        return delay

    def _plan_and_apply(self, d: Any, live: list[Resource], going: list[Resource]) -> tuple[bool, int, bool]:
        from reconciler.engine import apply, default_owner, pending, plan_for
        from reconciler.status import statuses

        t = self.make_target(d.manifests)
        owner = default_owner(t)
        plan, obs = plan_for(t, owner, d.prune)
        by_ref = {r.ref: r for r in (*live, *going)}
        recorder = Recorder()
        error: BaseException | None = None
        if plan.changes or plan.conflicts:
            before = {(o.kind, o.name): o for o in statuses(t.desired, obs, plan)}
            changing: dict[Ref, list[str]] = {}
            for a, line in zip(plan.changes, pending(plan), strict=False):
                changing.setdefault(cr_ref(a), []).append(line)
            for ref, lines in changing.items():
                if ref in by_ref and not by_ref[ref].deleting and not _retrying(by_ref[ref]):
                    self._write(by_ref[ref], before.get(ref), Verdict(APPLYING, "; ".join(lines)))
            try:
                apply(t, owner, d.prune, self.lock_timeout, recorder, revision=COMPONENT,
                      note=lambda line: log.info("%s", line))  # fmt: skip
            except Exception as e:  # ReconcilerError, ClipperException, OSError: reported, retried
                error = e
                log.warning("apply in namespace %s failed: %s", self.namespace, e)
            plan, obs = plan_for(t, owner, d.prune)
        failures = self._events(recorder, by_ref)
        if error is not None and not failures:  # not one action's fault: every resource it would change
            failures = {cr_ref(a): str(error) for a in plan.changes or plan.conflicts}
        objects = {(o.kind, o.name): o for o in statuses(t.desired, obs, plan)}
        verdicts = dict(d.verdicts)
        verdicts.update(
            {ref: Verdict(APPLY_FAILED, msg) for ref, msg in failures.items() if ref not in verdicts}
        )
        for r in live:
            self._write(r, objects.get(r.ref), verdicts.get(r.ref))
        for r in going:
            if error is None and d.prune:
                self._drop_finalizer(r, "what it owned is deleted")
            else:
                why = (f"waiting to delete what it owns: {error}" if error is not None else
                       "waiting to delete what it owns: a resource of this namespace has an invalid spec "
                       "and no earlier valid one; nothing is pruned until it is fixed")  # fmt: skip
                self._write(r, objects.get(r.ref), Verdict(DELETING, why))
        progressing = any(o.health.value == "Progressing" for o in objects.values())
        return error is None, len(recorder.finished), progressing

    # -- finalizers and deletion -----------------------------------------------------------------
    def _with_finalizer(self, r: Resource) -> Resource:
        if r.deleting or FINALIZER in r.finalizers:
            return r
        try:
            obj = self.api.set_finalizers(r.kind, self.namespace, r.name, [*r.finalizers, FINALIZER],
                                          str(r.meta.get("resourceVersion", "")))  # fmt: skip
        except KubeError as e:  # changed meanwhile (its event wakes another pass) or gone
            log.info("%s/%s: finalizer not added yet: %s", r.kind, r.name, e)
            return r
        return Resource({"kind": r.kind, **obj})

    def _drop_finalizer(self, r: Resource, why: str) -> None:
        try:
            self.api.set_finalizers(r.kind, self.namespace, r.name, [f for f in r.finalizers if f != FINALIZER],
                                    str(r.meta.get("resourceVersion", "")))  # fmt: skip
        except NotFound:
            return
        except KubeError as e:
            log.warning("%s/%s: cannot remove the finalizer: %s", r.kind, r.name, e)
            return
        log.info("%s/%s: finalizer removed (%s)", r.kind, r.name, why)

    def _stop_cluster(self, r: Resource) -> bool:
        """Stop the Clipper cluster of a deleted Cluster resource, then let the resource go."""
        from reconciler.engine import delete
        from reconciler.errors import ReconcilerError
        from reconciler.loader import load_documents

        doc = self.last_good.get(r.ref) or in_namespace(document(r), self.namespace)
        minimal = {**doc, "spec": {"backend": "kubernetes", "kubernetes": {"namespace": self.namespace}}}
        try:
            try:
                manifests = load_documents([(doc_name(self.namespace, r.ref), doc)])
            except ReconcilerError:  # never valid (or not any more): its name is what stopping needs
                manifests = load_documents([(doc_name(self.namespace, r.ref), minimal)])
            t = self.make_target(manifests)
            delete(t, t.desired.cluster_name, True, self.lock_timeout, Recorder(), warn=log.warning)
        except Exception as e:
            log.warning("Cluster/%s: cannot stop the cluster: %s", r.name, e)
            self._event(r, "Warning", "DeleteFailed", f"cannot stop the cluster: {e}")
            self._write(r, None, Verdict(DELETING, f"cannot stop the cluster: {e}"))
            return False
        self._event(r, "Normal", "Deleted", f"cluster {r.name} stopped")
        self.last_good.pop(r.ref, None)
        self._drop_finalizer(r, "cluster stopped")
        return True

    # -- status and events -----------------------------------------------------------------------
    def _write(self, r: Resource, obj: ObjectStatus | None, verdict: Verdict | None) -> None:
        """Write ``r``'s status when it changed; a Warning Event when it newly says a failure."""
        doc = status_doc(r.kind, obj, r.generation, r.status, self.clock(), verdict)
        patch = status_patch(r.status, doc)
        if patch is None:
            return
        try:
            written = self.api.patch_status(r.kind, self.namespace, r.name, patch)
        except NotFound:
            return
        except KubeError as e:
            log.warning("%s/%s: cannot write its status: %s", r.kind, r.name, e)
            return
        before = r.status
        r.raw["status"] = doc
        r.raw.setdefault("metadata", {})["resourceVersion"] = (written.get("metadata") or {}).get(
            "resourceVersion", r.meta.get("resourceVersion")
        )
        if verdict is not None and verdict.reason in FAILURES and doc["message"] != before.get("message"):
            self._event(r, "Warning", verdict.reason, doc["message"])

    def _events(self, recorder: Recorder, by_ref: dict[Ref, Resource]) -> dict[Ref, str]:
        """Normal Events for the executed actions; returns the failed ones' messages by resource."""
        from reconciler.render import event_line

        failures: dict[Ref, str] = {}
        for action, error in recorder.finished:
            ref = cr_ref(action)
            if error is not None:
                failures[ref] = event_line(action, error, None)
                continue
            r = by_ref.get(ref)
            if r is not None:
                self._event(
                    r, "Normal", EVENT_REASONS.get(action.op, "Updated"), event_line(action, None, None)
                )
        return failures

    def _event(self, r: Resource, type_: str, reason: str, message: str) -> None:
        now = rfc3339(self.clock())
        event = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": f"{r.name}.", "namespace": self.namespace},
            "involvedObject": {"apiVersion": f"{r.raw.get('apiVersion') or 'clipper.ai/' + VERSION}",
                               "kind": r.kind, "name": r.name, "namespace": self.namespace,
                               "uid": r.meta.get("uid"), "resourceVersion": r.meta.get("resourceVersion")},
            "reason": reason, "message": message[:1024], "type": type_,
            "source": {"component": COMPONENT}, "reportingComponent": COMPONENT,
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        }  # fmt: skip
        try:
            self.api.create_event(self.namespace, event)
        except KubeError as e:
            log.warning("cannot record an Event on %s/%s: %s", r.kind, r.name, e)
