"""The config-store contract shared by the management frontend (writer) and query frontends (readers).

A store holds applications, model versions, app->model links, each model's current version and the
connected container replicas. The management frontend validates and writes; every query frontend
reads a full :class:`ConfigSnapshot` at start-up and again whenever :meth:`ConfigStore.subscribe`
says something may have changed (within 100 ms of the write).

Two implementations: ``clipper.config_store.sqlite_store.SqliteConfigStore`` (``sqlite:///path``)
and ``clipper.config_store.redis_store.RedisConfigStore`` (``redis://host:port``), the latter in the
original Clipper's Redis layout (DB 1..7, keyspace notifications).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from clipper.config_store.traffic import TrafficConfig


@dataclass(frozen=True, slots=True)
class AppRecord:
    name: str
    input_type: str  # canonical name, e.g. "doubles"
    default_output: str
    latency_slo_micros: int
    policy: str = "DefaultOutputSelectionPolicy"


@dataclass(frozen=True, slots=True)
class ModelRecord:
    name: str
    version: str
    input_type: str  # canonical
    labels: tuple[str, ...] = ()
    container_name: str = ""
    model_data_path: str = "DEPRECATED"
    batch_size: int = -1  # -1: adaptive
    valid: bool = True  # False once delete_versioned_model marked it (purge pending)


@dataclass(frozen=True, slots=True)
class ContainerRecord:
    """A connected model replica, written by the query frontend that owns the RPC session."""

    model_name: str
    model_version: str
    replica_id: int
    input_type: str  # canonical
    frontend_id: str  # which query frontend owns the connection (never cross-wired, docs/store-layout.md)
    zmq_connection_id: int = 0
    # False while the frontend considers the replica hung (it has held a batch past --batch-timeout):
    # out of rotation until it answers or leaves. Reported by get_all_containers (verbose).
    healthy: bool = True


@dataclass(frozen=True, slots=True)
class ConfigSnapshot:
    apps: dict[str, AppRecord] = field(default_factory=dict)
    models: dict[tuple[str, str], ModelRecord] = field(default_factory=dict)  # (name, version)
    links: dict[str, tuple[str, ...]] = field(default_factory=dict)  # app -> model names
    current_versions: dict[str, str] = field(default_factory=dict)  # model name -> version
    traffic: dict[str, TrafficConfig] = field(default_factory=dict)  # app -> its traffic configuration


class Subscription(abc.ABC):
    @abc.abstractmethod
    def close(self) -> None: ...


class ConfigStore(abc.ABC):
    """Primitive, individually atomic operations. Validation and error texts live in the callers."""

    # -- reads -------------------------------------------------------------------------------
    @abc.abstractmethod
    def snapshot(self) -> ConfigSnapshot: ...

    @abc.abstractmethod
    def get_app(self, name: str) -> AppRecord | None: ...

    @abc.abstractmethod
    def list_apps(self) -> list[AppRecord]: ...

    @abc.abstractmethod
    def get_links(self, app: str) -> list[str]: ...

    @abc.abstractmethod
    def get_model(self, name: str, version: str) -> ModelRecord | None: ...

    @abc.abstractmethod
    def list_models(self) -> list[ModelRecord]: ...

    @abc.abstractmethod
    def list_model_versions(self, name: str) -> list[str]: ...

    @abc.abstractmethod
    def get_current_version(self, name: str) -> str | None: ...

    @abc.abstractmethod
    def list_containers(self) -> list[ContainerRecord]: ...

    # -- writes ------------------------------------------------------------------------------
    @abc.abstractmethod
    def add_app(self, app: AppRecord) -> bool:
        """Insert; False if an app of that name exists (nothing written)."""

    @abc.abstractmethod
    def delete_app(self, name: str) -> bool:
        """Remove the app *and* its links; False if it did not exist."""

    @abc.abstractmethod
    def update_app(
        self, name: str, default_output: str | None = None, latency_slo_micros: int | None = None
    ) -> AppRecord | None:
        """Change an app's default output and/or latency SLO in place, in one atomic write (``None``:
        unchanged); its links, traffic configuration and selection state stay. Returns the updated
        record, ``None`` when no app of that name exists. Query frontends are notified like for any
        other configuration write, so their next request uses the new values: unlike unregister +
        register + relink, no request finds the app missing or unlinked meanwhile."""

    @abc.abstractmethod
    def add_link(self, app: str, model_name: str) -> None: ...

    @abc.abstractmethod
    def remove_link(self, app: str, model_name: str) -> None: ...

    @abc.abstractmethod
    def add_model(self, model: ModelRecord, make_current: bool = True) -> bool:
        """Insert the version and (unless ``make_current`` is False: a version registered to be
        smoke-tested before it takes traffic) make it current; False if that name:version exists."""

    @abc.abstractmethod
    def set_current_version(self, name: str, version: str) -> None: ...

    @abc.abstractmethod
    def mark_model_invalid(self, name: str, version: str) -> None:
        """delete_versioned_model: mark now, purged by :meth:`purge_model` (query frontend)."""

    @abc.abstractmethod
    def purge_model(self, name: str, version: str) -> None:
        """Delete the version record and its container rows."""

    @abc.abstractmethod
    def next_replica_id(self, model_name: str, model_version: str) -> int:
        """A replica id unique across every query frontend sharing this store (0, 1, 2, ...).

        Container rows are keyed ``name,version,replica_id`` as in the original; per-process counters
        would make two frontends overwrite each other's rows (docs/store-layout.md)."""

    @abc.abstractmethod
    def put_container(self, container: ContainerRecord) -> None: ...

    @abc.abstractmethod
    def delete_container(self, model_name: str, model_version: str, replica_id: int) -> None: ...

    @abc.abstractmethod
    def delete_containers_of_frontend(self, frontend_id: str) -> None:
        """Drop the rows a (restarted) query frontend left behind."""

    # -- traffic splitting and selection (clipper.config_store.traffic) ------------------------
    @abc.abstractmethod
    def set_app_traffic(self, app: str, config: TrafficConfig | None) -> None:
        """Replace the app's traffic configuration (None: a plain app again). Also drops the app's
        selection weights and traffic statistics, which belong to the previous configuration.
        Query frontends are notified like for any other configuration write."""

    @abc.abstractmethod
    def get_app_traffic(self, app: str) -> TrafficConfig | None: ...

    @abc.abstractmethod
    def add_selection_weights(self, app: str, deltas: dict[str, float]) -> dict[str, float]:
        """Atomically add ``deltas`` (target key ``model:version`` -> log-weight change) to the app's
        selection state and return the whole state after the addition. Additions from several
        frontends commute, so each frontend batches its own and flushes them now and then.
        Not a configuration change: no notification."""

    @abc.abstractmethod
    def get_selection_weights(self, app: str) -> dict[str, float]: ...

    @abc.abstractmethod
    def put_traffic_stats(self, app: str, frontend_id: str, stats_json: str) -> None:
        """One query frontend's per-target statistics of ``app`` (replaces its previous row; no
        notification)."""

    @abc.abstractmethod
    def list_traffic_stats(self, app: str) -> list[str]:
        """Every frontend's statistics row of ``app``."""

    # -- reconciler state: leases and records (added; not configuration, no notification) -------
    @abc.abstractmethod
    def acquire_lease(self, name: str, holder: str, ttl_s: float) -> str:
        """Atomically take lease ``name`` for ``holder`` for ``ttl_s`` seconds unless another holder's
        lease is unexpired (the same holder's is renewed). Returns the holder after the call: ``holder``
        when taken, the other holder otherwise. A holder that dies stops renewing: its lease expires."""

    @abc.abstractmethod
    def renew_lease(self, name: str, holder: str, ttl_s: float) -> bool:
        """Extend ``holder``'s lease by ``ttl_s`` from now; False if it no longer holds it."""

    @abc.abstractmethod
    def release_lease(self, name: str, holder: str) -> bool:
        """Drop ``holder``'s lease (compare-and-delete); False if it did not hold it."""

    @abc.abstractmethod
    def get_record(self, namespace: str, key: str) -> str | None:
        """A small value the reconciler keeps in the cluster (ownership, history); None if absent."""

    def get_records(self, namespace: str, keys: Sequence[str]) -> dict[str, str | None]:
        """Several records at once (``None`` for an absent one); stores read them in one round trip."""
        return {key: self.get_record(namespace, key) for key in keys}

    @abc.abstractmethod
    def put_record(self, namespace: str, key: str, value: str | None) -> None:
        """Set (``None``: delete) a record."""

    # -- change notification -----------------------------------------------------------------
    @abc.abstractmethod
    def subscribe(self, on_change: Callable[[], None]) -> Subscription:
        """Call ``on_change()`` (from a background thread) after any write by any process.

        Coalescing is allowed: one call may stand for several writes. Latency <= 100 ms.
        """

    @abc.abstractmethod
    def close(self) -> None: ...


def open_store(url: str) -> ConfigStore:
    """``sqlite:///abs/path.db`` or ``redis://host:port`` (optionally ``?password=...``)."""
    if url.startswith("sqlite://"):
        from clipper.config_store.sqlite_store import SqliteConfigStore

        return SqliteConfigStore(url.removeprefix("sqlite://"))
    if url.startswith(("redis://", "rediss://")):
        from clipper.config_store.redis_store import RedisConfigStore

        return RedisConfigStore.from_url(url)
    raise ValueError(f"unsupported config store URL {url!r}: use sqlite:///path or redis://host:port")
