"""One reconcile pass: load -> observe -> plan -> (lock, apply). Used by apply, diff, delete and watch."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler.desired import DesiredState, desired_state
from reconciler.errors import ReconcilerError
from reconciler.execute import Executor, NullReporter, Reporter
from reconciler.gitinfo import git_commit
from reconciler.loader import ManifestSet, load_manifests
from reconciler.lock import apply_lock
from reconciler.observed import Observed, observe
from reconciler.ownership import OwnershipRegistry
from reconciler.plan import Plan, make_plan


@dataclass
class Target:
    """The cluster a manifest set describes, with a (not yet connected) connection to it."""

    desired: DesiredState
    conn: Any
    cluster_dir: Path
    files: list[Path]

    @property
    def registry(self) -> OwnershipRegistry:
        return OwnershipRegistry(self.cluster_dir)


def target_for(manifests: ManifestSet) -> Target:
    from reconciler.backends import cluster_dir, connection

    desired = desired_state(manifests)
    conn = connection(desired)
    return Target(desired, conn, cluster_dir(desired, conn), manifests.files)


def load_target(paths: Iterable[str], stdin=None) -> Target:
    return target_for(load_manifests(paths, stdin=stdin))


def observe_target(t: Target) -> Observed:
    """Observe the cluster; a cluster that is not running is observed as empty."""
    from clipper_admin import ClipperException

    try:
        t.conn.connect()
    except (ClipperException, OSError, KeyError) as e:
        obs = Observed(running=False)
        obs.reason = str(e)  # type: ignore[attr-defined]
        return obs
    try:
        return observe(t.conn, t.registry.load(), t.registry.load_models())
    except (ClipperException, OSError) as e:
        raise ReconcilerError(f"cannot observe cluster {t.desired.cluster_name}: {e}") from e


def default_owner(t: Target) -> str:
    return t.desired.cluster_name


def plan_for(t: Target, owner: str, prune: bool) -> tuple[Plan, Observed]:
    obs = observe_target(t)
    return make_plan(t.desired, obs, owner, prune), obs


def _start_cluster(t: Target) -> None:
    spec = t.desired.cluster
    t.conn.start_clipper(cache_size=spec.cache_size_bytes, num_frontend_replicas=spec.frontend_replicas)


def apply(
    t: Target,
    owner: str,
    prune: bool = False,
    lock_timeout: float = 60.0,
    reporter: Reporter | None = None,
    on_lock_wait=None,
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
                cluster_action = plan.actions[0]
                reporter.start(cluster_action)
                _start_cluster(t)
                reporter.finish(cluster_action, None)
                # a restarted cluster may keep state (SQLite store): plan again from what it reports
                later, obs = plan_for(t, owner, prune)
                plan = dataclasses.replace(later, actions=(cluster_action, *later.actions[1:]))
            Executor(t.conn, t.desired, owner, t.registry, git_commit(t.files), reporter).run(plan)
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
