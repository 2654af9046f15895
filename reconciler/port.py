"""The cluster port: everything the reconciler may do to a cluster, and nothing else.

:class:`reconciler.execute.Executor` and :mod:`reconciler.engine` talk to a cluster only through
:class:`ClusterPort`. It is implemented once over ``ClipperConnection``
(:class:`reconciler.clipper_cluster.ClipperCluster`) and once in memory
(:class:`reconciler.testing.FakeCluster`) for unit tests of the executor.

A rollout is a sequence of explicit steps on the port — build, start replicas, wait until they are
connected (or, with :attr:`Readiness.HEALTHY`, answering), register the version (which makes it
current), stop the previous version's replicas — so that traffic moves only once the new replicas
can serve, whatever the backend.

Errors: a cluster operation that fails raises ``ClipperException`` (the management API refused it,
see :mod:`clipper_admin.exceptions` for its ``status``/``kind``), ``OSError`` (a backend could not
be reached), or :class:`reconciler.errors.ReconcilerError` (a wait gave up).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from reconciler.observed import Observed, RunningSettings, TrafficReport, TrafficSetting

#: ``on_progress(done, wanted)`` while replicas come up.
Progress = Callable[[int, int], None]


class Readiness(enum.Enum):
    """What a replica must be before it counts in :meth:`ClusterPort.wait_replicas`."""

    CONNECTED = "connected"  # registered its RPC connection with the query frontend(s)
    HEALTHY = "healthy"  # connected and not reported hung by the query frontend


@dataclass(frozen=True)
class ModelBuild:
    """What :meth:`ClusterPort.build_model` needs: a model directory a deployer prepared."""

    name: str
    version: str
    model_dir: str
    base_image: str
    registry: str | None = None
    packages: tuple[str, ...] = ()


class ClusterPort(Protocol):
    # -- lifecycle -------------------------------------------------------------------------------
    def connect(self) -> None:
        """Connect to the running cluster; raises (``ClipperException``/``OSError``) when there is none.
        Where the manifest's admin token differs from the running one, the connection uses the running
        one (see :meth:`cluster_settings`): the plan reports the change, the connection never hides it."""

    def start_cluster(self, cache_size_bytes: int, frontend_replicas: int) -> None:
        """Start the cluster (frontends, store) and connect to it."""

    def stop_cluster(self) -> None:
        """Stop the whole cluster, its model replicas included."""

    def cluster_settings(self) -> RunningSettings | None:
        """The settings the running cluster runs with; ``None`` when the backend cannot tell (every
        backend here reports them). Keys are ``ClusterSpec`` fields, dotted for nested settings
        (``redis.host``). Where the running admin token differs from the manifest's, the connection uses
        the running one until :meth:`reconfigure_cluster` changes it."""

    def reconfigure_cluster(self, changes: Mapping[str, object]) -> None:
        """Change settings (keys: ``RunningSettings.reconfigurable``) of the running cluster,
        restarting the affected frontends one at a time, each answering before the next."""

    # -- observation -----------------------------------------------------------------------------
    def observe(self) -> Observed:
        """Apps (with their traffic configurations), model versions and their healthy replica counts
        (no ownership: that is the registry's)."""

    def replica_count(self, name: str, version: str, readiness: Readiness) -> int:
        """Replicas of ``name:version`` the query frontend(s) report, at least ``readiness``."""

    def running_replicas(self, name: str, version: str) -> int:
        """Replicas of ``name:version`` the backend runs (connected or not)."""

    # -- model versions --------------------------------------------------------------------------
    def build_model(self, build: ModelBuild) -> str:
        """Build a model image from a model directory; returns the image to start."""

    def start_replicas(
        self,
        name: str,
        version: str,
        input_type: str,
        image: str,
        count: int,
        min_start_timeout_s: float | None = None,
    ) -> None:
        """Start ``count`` replicas of a version none of whose replicas run (nothing is registered).

        ``min_start_timeout_s``: the backend waits at least this long for them to start (a JVM)."""

    def scale_replicas(self, name: str, version: str, input_type: str, image: str, count: int) -> None:
        """Scale a version that has running replicas to ``count`` (starting more of ``image``)."""

    def wait_replicas(
        self,
        name: str,
        version: str,
        want: int,
        readiness: Readiness = Readiness.CONNECTED,
        timeout_s: float = 120.0,
        on_progress: Progress | None = None,
    ) -> None:
        """Return once ``want`` replicas are at least ``readiness``; ``ReconcilerError`` after ``timeout_s``."""

    def register_version(
        self,
        name: str,
        version: str,
        input_type: str,
        image: str,
        labels: Sequence[str],
        batch_size: int,
        make_current: bool = True,
    ) -> None:
        """Register ``name:version``; it becomes the current version (traffic moves to it) unless
        ``make_current`` is False (then :meth:`smoke_predict` can reach it before any traffic)."""

    def smoke_predict(
        self, name: str, version: str, input_type: str, sample: list[int | float] | str, timeout_s: float
    ) -> None:
        """Send one prediction on ``sample`` to the registered (not necessarily current) version
        ``name:version``; return once it answers without error. ``ReconcilerError`` saying what went
        wrong (the replica's error or a default output's explanation, and its log tail where the
        backend keeps one) when it does not within ``timeout_s``. No application sees this request."""

    def set_current_version(self, name: str, version: str) -> None:
        """Make a registered version current (traffic moves to it)."""

    def stop_replicas(self, name: str, versions: Sequence[str], timeout_s: float = 30.0) -> None:
        """Stop the replicas of ``versions`` (they stay registered: rollback), then wait (bounded, not
        an error when exceeded) until the query frontend(s) let go of them."""

    def remove_versions(self, name: str, versions: Sequence[str]) -> None:
        """Stop and unregister ``versions`` of ``name`` (never its current one), then delete their
        images or model directories where the backend keeps them (local, Docker)."""

    def delete_model(self, name: str) -> None:
        """Stop every replica of every version of ``name`` and unregister those versions."""

    # -- applications and links ------------------------------------------------------------------
    def register_application(
        self, name: str, input_type: str, default_output: str, slo_micros: int
    ) -> None: ...

    def update_application(self, name: str, default_output: str, slo_micros: int) -> None:
        """Change an app's default output and SLO in place: it stays registered and linked, so no
        request is lost while it changes."""

    def unregister_application(self, name: str) -> None: ...

    def link(self, app: str, model: str) -> None: ...

    def unlink(self, app: str, model: str) -> None: ...

    # -- traffic of applications (splits, shadow, selection; canary steps) -------------------------
    def set_app_traffic(self, app: str, setting: TrafficSetting | None) -> None:
        """Route ``app`` by ``setting`` (its targets must be registered versions); ``None`` clears it:
        the app routes to its linked model's current version again, as in the original."""

    def get_app_traffic(self, app: str) -> TrafficReport:
        """The app's traffic configuration and the per-target statistics counted since it took effect
        (summed over the query frontends, which report them about once a second)."""

    # -- the reconciler's own state in the cluster (lease and records) ----------------------------
    def shared_state(self) -> bool:
        """Whether the connected cluster may keep the reconciler's lock and records: its management
        API refuses callers without the admin token. (With ``adminAuth: none`` anybody could write
        them, so the records stay on the machine running ``clipper``.)"""

    def acquire_lease(self, name: str, holder: str, ttl_s: float) -> str:
        """Take the lease ``name`` for ``ttl_s`` unless another holder's is unexpired; returns who
        holds it now (``holder`` when taken)."""

    def renew_lease(self, name: str, holder: str, ttl_s: float) -> bool:
        """Extend ``holder``'s lease; False when it no longer holds it."""

    def release_lease(self, name: str, holder: str) -> bool: ...

    def get_record(self, namespace: str, key: str) -> str | None: ...

    def get_records(self, namespace: str, keys: Sequence[str]) -> dict[str, str | None]:
        """Several records in one request (``None`` for an absent one)."""

    def put_record(self, namespace: str, key: str, value: str | None) -> None:
        """Set (``None``: delete) one of the reconciler's records."""
