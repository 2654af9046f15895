"""One reconcile pass: load -> observe -> plan -> (lock, apply). Used by apply, diff, delete and watch."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from reconciler.desired import DesiredState, desired_state
from reconciler.errors import ReconcilerError
from reconciler.execute import Executor, NullReporter, Reporter
from reconciler.gitinfo import git_commit
from reconciler.loader import ManifestSet, load_manifests
from reconciler.lock import apply_lock
from reconciler.observed import Observed, observe
from reconciler.ownership import OwnershipRegistry
from reconciler.plan import Plan, make_plan
from reconciler.port import ClusterPort

if TYPE_CHECKING:
    from clipper_admin import ClipperConnection


@dataclass
class Target:
    """The cluster a manifest set describes, behind the cluster port (not yet connected)."""

    desired: DesiredState
    cluster: ClusterPort
    cluster_dir: Path
    files: list[Path]
    #: the raw admin connection, for the CLI's read-only listings (``clipper get``/``status``) only
    conn: ClipperConnection | None = None

    @property
    def registry(self) -> OwnershipRegistry:
        return OwnershipRegistry(self.cluster_dir)


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
        t.cluster.connect()
    except (ClipperException, OSError, KeyError):
        return Observed(running=False)
    try:
        return observe(t.cluster, t.registry.load(), t.registry.load_models())
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
    on_lock_wait: Callable[[Path], None] | None = None,
) -> Plan:
    """Converge the cluster to the manifests; returns the plan that was executed."""
    from clipper_admin import ClipperException

    reporter = reporter or NullReporter()
    with apply_lock(t.cluster_dir, lock_timeout, on_lock_wait):
        plan, obs = plan_for(t, owner, prune)
        if plan.conflicts:
            raise ReconcilerError(
                "refusing to apply: " + "; ".join(f"{a.ref} {a.reason}" for a in plan.conflicts)
            )
        try:
            if not obs.running:
                plan, obs = _start_cluster(t, plan, owner, prune, reporter)
            Executor(t.cluster, t.desired, owner, t.registry, git_commit(t.files), reporter).run(plan)
            _forget_vanished_apps(t, owner, obs)
        except ClipperException as e:
            raise ReconcilerError(str(e)) from e
    return plan


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
