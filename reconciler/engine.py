"""One reconcile pass: load -> observe -> plan -> (lock, apply). Used by apply, diff, delete and watch."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from reconciler.desired import DesiredState, desired_state
from reconciler.errors import ReconcilerError
from reconciler.execute import Executor, NullReporter, Reporter
from reconciler.gitinfo import git_commit
from reconciler.history import History
from reconciler.loader import ManifestSet, load_manifests
from reconciler.lock import apply_lock, cluster_lease
from reconciler.observed import Observed, observe
from reconciler.ownership import OwnershipRegistry
from reconciler.plan import Action, Plan, make_plan
from reconciler.port import ClusterPort
from reconciler.rollout import RolloutStore

if TYPE_CHECKING:
    from clipper_admin import ClipperConnection

log = logging.getLogger(__name__)


@dataclass
class Target:
    """The cluster a manifest set describes, behind the cluster port (not yet connected)."""

    desired: DesiredState
    cluster: ClusterPort
    cluster_dir: Path
    files: list[Path]
    #: the raw admin connection, for the CLI's read-only listings (``clipper get``/``status``) only
    conn: ClipperConnection | None = None
    #: set by :func:`connect`: the running cluster keeps the reconciler's lease and records (its admin
    #: API requires the token); otherwise they stay in ``cluster_dir`` on this machine
    shared: bool = False

    @property
    def registry(self) -> OwnershipRegistry:
        return OwnershipRegistry(self.cluster_dir, self.cluster if self.shared else None)

    @property
    def history(self) -> History:
        """Kept where the ownership records are (:mod:`reconciler.history`)."""
        return History(self.cluster_dir, self.cluster if self.shared else None)

    @property
    def rollouts(self) -> RolloutStore:
        """Canary/blueGreen rollout records, kept where the ownership records are (:mod:`reconciler.rollout`)."""
        return RolloutStore(self.cluster_dir, self.cluster if self.shared else None)


def connect(t: Target) -> None:
    """Connect to the running cluster (raises when there is none) and note whether it keeps the
    reconciler's lease and records (:mod:`reconciler.lock`, :mod:`reconciler.ownership`)."""
    t.cluster.connect()
    t.shared = t.cluster.shared_state()


@contextlib.contextmanager
def shared_lease(
    t: Target,
    timeout: float,
    on_wait: Callable[[Path | str], None] | None = None,
    best_effort: bool = False,
) -> Iterator[None]:
    """Hold the cluster's apply lease when the cluster runs and keeps the reconciler's state; a
    cluster that is not running (yet) has no lease to hold: the machine-local lock covers it.
    ``best_effort``: a cluster whose management API fails is not an error (``delete --cluster``
    stops a broken cluster all the same)."""
    from clipper_admin import ClipperException

    with contextlib.ExitStack() as held:
        try:
            connect(t)
        except (ClipperException, OSError, KeyError):
            pass
        else:
            if t.shared:
                try:
                    held.enter_context(cluster_lease(t.cluster, timeout, on_wait))
                except (ClipperException, OSError) as e:
                    if not best_effort:
                        raise ReconcilerError(f"cannot take the cluster's apply lease: {e}") from e
        yield


def target_for(manifests: ManifestSet) -> Target:
    from reconciler.backends import cluster_dir, connection
    from reconciler.clipper_cluster import ClipperCluster

    desired = desired_state(manifests)
    conn = connection(desired)
    return Target(desired, ClipperCluster(conn), cluster_dir(desired, conn), manifests.files, conn)


def load_target(paths: Iterable[str], stdin: TextIO | None = None) -> Target:
    return target_for(load_manifests(paths, stdin=stdin))


def observe_target(t: Target) -> Observed:
    """Observe the cluster; a cluster that is not running is observed as empty."""
    from clipper_admin import ClipperException

    try:
        connect(t)
    except (ClipperException, OSError, KeyError):
        return Observed(running=False)
    try:
        obs = observe(t.cluster, t.registry.load(), t.registry.load_models())
        obs.rollouts = t.rollouts.all(sorted(set(t.desired.models) | set(obs.models)))
        return obs
    except (ClipperException, OSError) as e:
        raise ReconcilerError(f"cannot observe cluster {t.desired.cluster_name}: {e}") from e


def default_owner(t: Target) -> str:
    return t.desired.cluster_name


def plan_for(t: Target, owner: str, prune: bool) -> tuple[Plan, Observed]:
    obs = observe_target(t)
    return make_plan(t.desired, obs, owner, prune), obs


def _start_cluster(
    t: Target, plan: Plan, owner: str, prune: bool, reporter: Reporter
) -> tuple[Plan, Observed]:
    """Start the cluster (the plan's ``Cluster`` create action), then plan again from what the
    started cluster reports: a restarted cluster may keep state (SQLite store). The returned plan is
    the new one with the executed cluster action in the place of the new plan's own."""
    cluster_action = plan.cluster_action
    reporter.start(cluster_action)
    try:
        spec = t.desired.cluster
        t.cluster.start_cluster(spec.cache_size_bytes, spec.frontend_replicas)
    except BaseException as e:
        reporter.finish(cluster_action, e)
        raise
    reporter.finish(cluster_action, None)
    later, obs = plan_for(t, owner, prune)
    return later.with_cluster_action(cluster_action), obs


def apply(
    t: Target,
    owner: str,
    prune: bool = False,
    lock_timeout: float = 60.0,
    reporter: Reporter | None = None,
    on_lock_wait: Callable[[Path | str], None] | None = None,
    revision: str | None = None,
    note: Callable[[str], None] | None = None,
) -> Plan:
    """Converge the cluster to the manifests; returns the plan that was executed. An apply that
    changes something is recorded in the cluster's history (``revision``: what to call it there;
    default: the manifests' git commit). A canary or blueGreen rollout runs to its end within the
    apply (``note`` gets a line per step and analysis). A Ctrl-C stops it at a safe point where the
    caller installed :class:`reconciler.interrupt.CtrlC`."""
    from clipper_admin import ClipperException

    reporter = reporter or NullReporter()
    with apply_lock(t.cluster_dir, lock_timeout, on_lock_wait), contextlib.ExitStack() as held:
        held.enter_context(shared_lease(t, lock_timeout, on_lock_wait))
        plan, obs = plan_for(t, owner, prune)
        if plan.conflicts:
            raise ReconcilerError(
                "refusing to apply: " + "; ".join(f"{a.ref} {a.reason}" for a in plan.conflicts)
            )
        commit = git_commit(t.files)
        error: BaseException | None = None
        try:
            if not obs.running:
                plan, obs = _start_cluster(t, plan, owner, prune, reporter)
                held.enter_context(shared_lease(t, lock_timeout, on_lock_wait))
            Executor(t.cluster, t.desired, owner, t.registry, commit, reporter, rollouts=t.rollouts,
                     note=note).run(plan)  # fmt: skip
            _forget_vanished_apps(t, owner, obs)
        except ClipperException as e:
            error = e
            raise ReconcilerError(str(e)) from e
        except BaseException as e:
            error = e
            raise
        finally:
            if plan.changes:
                _record(t, plan, revision or commit, error)
        if plan.changes:
            _drop_old_versions(t, owner)
    return plan


def delete(
    t: Target,
    owner: str,
    stop_cluster: bool,
    lock_timeout: float = 60.0,
    reporter: Reporter | None = None,
    warn: Callable[[str], None] = log.warning,
) -> tuple[list[Action], list[tuple[Action, BaseException]]]:
    """Delete the objects of ``t``'s manifests that ``owner`` manages; with ``stop_cluster`` also stop
    the cluster (``clipper delete [--cluster]``, the controller's deleted Cluster). Returns the delete
    actions and those that failed (only with ``stop_cluster``: otherwise the first failure raises).

    Stopping the cluster never depends on observing it or on deleting its objects one by one: a
    cluster whose store is corrupt (management API failing) is stopped all the same (``warn`` says
    what was not deleted one by one)."""
    from reconciler.execute import Executor as _Executor  # looked up at call time (tests replace it)
    from reconciler.plan import make_delete_plan

    reporter = reporter or NullReporter()
    with apply_lock(t.cluster_dir, lock_timeout), shared_lease(t, lock_timeout, best_effort=True):
        try:
            obs: Observed | None = observe_target(t)
        except Exception as e:
            if not stop_cluster:
                raise
            refs = [f"Application/{n}" for n in sorted(t.desired.apps)] + [
                f"Model/{n}" for n in sorted(t.desired.models)]  # fmt: skip
            warn(f"{e}; objects not deleted one by one ({', '.join(refs) or 'none in the manifests'}), "
                 "stopping the cluster anyway")  # fmt: skip
            obs = None
        actions = list(make_delete_plan(t.desired, obs, owner).actions) if obs is not None else []
        failed: list[tuple[Action, BaseException]] = []
        if actions:
            executor = _Executor(t.cluster, t.desired, owner, t.registry, None, reporter)
            if not stop_cluster:
                executor.run(Plan(tuple(actions)))
            else:
                for action in actions:  # one by one: a failure never keeps the cluster running
                    try:
                        executor.run(Plan((action,)))
                    except Exception as e:
                        failed.append((action, e))
        if stop_cluster:
            t.cluster.stop_cluster()
            t.registry.remove()
    return actions, failed


def old_versions(t: Target, owner: str, obs: Observed) -> dict[str, list[str]]:
    """Per desired model, this owner's registered versions beyond ``Cluster.spec.keepVersions``.

    Versions are ranked by their last appearance in the apply history (newest first), the current
    one first; versions the history does not know are older than those it does. Nothing is dropped
    for a model whose previous version the history does not name (rollback needs it)."""
    keep = t.desired.cluster.keep_versions
    entries = t.history.entries()
    out: dict[str, list[str]] = {}
    for name in t.desired.models:
        cur = obs.current(name)
        owned = [v for v in obs.models.get(name, {}) if (r := obs.recorded(name, v)) and r.owner == owner]
        if cur is None or len(owned) <= keep:
            continue
        ranked = [cur.version]
        for e in reversed(entries):
            v = e.desired.get("models", {}).get(name, {}).get("version")
            if v in owned and v not in ranked:
                ranked.append(v)
        if len(ranked) < 2:
            continue
        ranked += sorted(v for v in owned if v not in ranked)
        out[name] = ranked[keep:]
    return {n: vs for n, vs in out.items() if vs}


def _drop_old_versions(t: Target, owner: str) -> None:
    """Unregister the versions beyond ``keepVersions`` and remove their images (never fails the apply)."""
    try:
        for name, versions in old_versions(t, owner, observe_target(t)).items():
            t.cluster.remove_versions(name, versions)
    except Exception as e:
        log.warning("could not remove old model versions (keepVersions): %s", e)


def _record(t: Target, plan: Plan, revision: str | None, error: BaseException | None) -> None:
    """Append the apply to the cluster's history; a failure to record never fails the apply."""
    from reconciler.history import desired_doc
    from reconciler.lock import who

    result = "succeeded" if error is None else f"failed: {error}"
    try:
        t.history.append(revision, who(), [f"{a.op.value} {p}" for a, p in zip(plan.changes, pending(plan),
                         strict=False)], result, desired_doc(t.desired))  # fmt: skip
    except Exception as e:
        log.warning("could not record the apply in the cluster's history: %s", e)


#: seconds between observations while :func:`wait_converged` waits
CONVERGE_POLL_S = 0.25
#: default of ``clipper apply --timeout``
CONVERGE_TIMEOUT_S = 300.0


def pending(plan: Plan) -> list[str]:
    """What keeps ``plan`` from being converged, one phrase per object: its changes or conflict."""
    out = []
    for a in (*plan.changes, *plan.conflicts):
        what = ", ".join(f"{c.field} {c.old} -> {c.new}" for c in a.changes) or a.reason or a.op.value
        out.append(f"{a.ref} ({what})")
    return out


def wait_converged(
    t: Target,
    owner: str,
    prune: bool,
    timeout_s: float = CONVERGE_TIMEOUT_S,
    poll_s: float = CONVERGE_POLL_S,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Plan:
    """Re-observe until the plan is empty (no change, no conflict) or ``timeout_s`` has passed;
    returns the last plan, so :func:`pending` says what did not converge.

    An apply's last steps are not all synchronous: a stopped replica leaves the query frontend's
    list a moment later, a replica killed meanwhile reconnects after a restart. Observed replicas are
    the healthy ones (:mod:`reconciler.observed`), so an empty plan means every object is converged
    and healthy: ``clipper apply && clipper diff`` then holds."""
    deadline = clock() + timeout_s
    while True:
        plan, _ = plan_for(t, owner, prune)
        if (not plan.has_changes and not plan.conflicts) or clock() >= deadline:
            return plan
        sleep(poll_s)


def _forget_vanished_apps(t: Target, owner: str, obs: Observed) -> None:
    """Drop registry entries of this owner's apps that neither exist nor are desired."""
    records = t.registry.load()
    stale = [
        n for n, r in records.items() if r.owner == owner and n not in t.desired.apps and n not in obs.apps
    ]
    if stale:
        for n in stale:
            records.pop(n)
        t.registry.save(records)
