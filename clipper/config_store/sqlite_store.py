"""SQLite config store: the local embedded default (``sqlite:///abs/path/config.db``).

WAL mode so that readers (query frontends) never block the writer (management frontend); one
connection guarded by a lock per store object; multi-step writes in ``BEGIN IMMEDIATE`` transactions.
Change notification polls ``PRAGMA data_version`` on a separate connection: it moves whenever another
connection (this process or another) commits, so writes are seen within one poll interval (15 ms).
Labels are kept as the Redis layout keeps them (joined by ``,``; empty list = ``""``).

Traffic configurations (``traffic`` table) are configuration like the rest. Selection weights and
per-target statistics, which query frontends write every second or so while serving, live in a
second file (``<path>.traffic``): writes there do not move the main file's ``data_version``, so they
do not make every query frontend reload its configuration.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from clipper.config_store.base import (
    AppRecord,
    ConfigSnapshot,
    ConfigStore,
    ContainerRecord,
    ModelRecord,
    Subscription,
)
from clipper.config_store.traffic import TrafficConfig

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.015

_SCHEMA = """
CREATE TABLE IF NOT EXISTS apps (
    name TEXT PRIMARY KEY, input_type TEXT NOT NULL, default_output TEXT NOT NULL,
    latency_slo_micros INTEGER NOT NULL, policy TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS models (
    name TEXT NOT NULL, version TEXT NOT NULL, input_type TEXT NOT NULL, labels TEXT NOT NULL,
    container_name TEXT NOT NULL, model_data_path TEXT NOT NULL, batch_size INTEGER NOT NULL,
    valid INTEGER NOT NULL, PRIMARY KEY (name, version));
CREATE TABLE IF NOT EXISTS links (app TEXT NOT NULL, model_name TEXT NOT NULL, PRIMARY KEY (app, model_name));
CREATE TABLE IF NOT EXISTS current_versions (name TEXT PRIMARY KEY, version TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS replica_counters (
    model_name TEXT NOT NULL, model_version TEXT NOT NULL, next_id INTEGER NOT NULL,
    PRIMARY KEY (model_name, model_version));
CREATE TABLE IF NOT EXISTS containers (
    model_name TEXT NOT NULL, model_version TEXT NOT NULL, replica_id INTEGER NOT NULL,
    input_type TEXT NOT NULL, frontend_id TEXT NOT NULL, zmq_connection_id INTEGER NOT NULL,
    healthy INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (model_name, model_version, replica_id));
CREATE TABLE IF NOT EXISTS traffic (app TEXT PRIMARY KEY, config TEXT NOT NULL);
"""
_STATE_SCHEMA = """
CREATE TABLE IF NOT EXISTS selection_weights (
    app TEXT NOT NULL, target TEXT NOT NULL, value REAL NOT NULL, PRIMARY KEY (app, target));
CREATE TABLE IF NOT EXISTS traffic_stats (
    app TEXT NOT NULL, frontend_id TEXT NOT NULL, stats TEXT NOT NULL, PRIMARY KEY (app, frontend_id));
CREATE TABLE IF NOT EXISTS leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    namespace TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (namespace, key));
"""
_CONTAINER_COLUMNS = (
    "model_name, model_version, replica_id, input_type, frontend_id, zmq_connection_id, healthy"
)


def encode_labels(labels: tuple[str, ...] | list[str]) -> str:
    return ",".join(labels)


def decode_labels(text: str | None) -> tuple[str, ...]:
    return tuple(text.split(",")) if text else ()


_BUSY_TIMEOUT_S = 30.0
_SQL_VARIABLES = 500  # bound variables per statement (SQLite allows at least 999)


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {int(_BUSY_TIMEOUT_S * 1000)}")
    return conn


def _use_wal(conn: sqlite3.Connection) -> None:
    """``PRAGMA journal_mode=WAL``, retried while the file is locked (within the busy timeout).

    Switching a new database to WAL takes an exclusive lock and fails at once with "database is
    locked", without waiting for the busy timeout, while another process opens the same new file: the
    management and query frontends of a new cluster start together (a quickstart's query frontend
    crashed so).
    """
    deadline = time.monotonic() + _BUSY_TIMEOUT_S
    delay = 0.002
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            message = str(e)
            if ("locked" not in message and "busy" not in message) or time.monotonic() > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


class _PollSubscription(Subscription):
    """A daemon thread calling ``on_change`` whenever ``probe()`` returns a new value."""

    def __init__(
        self, probe: Callable[[], object], on_change: Callable[[], None], interval: float, name: str
    ):
        self._probe = probe
        self._on_change = on_change
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._last: object = probe()
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                now = self._probe()
            except Exception as e:  # the store file may be briefly locked or replaced: keep polling
                log.warning("config store poll failed: %s", e)
                continue
            if now != self._last:
                self._last = now
                try:
                    self._on_change()
                except Exception:
                    log.exception("config store on_change callback failed")

    def close(self) -> None:
        self._stop.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=2.0)


class SqliteConfigStore(ConfigStore):
    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._conn = _connect(self.path)
        _use_wal(self._conn)
        self._conn.execute("PRAGMA synchronous=NORMAL")
        with self._tx() as c:
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    c.execute(stmt)
            columns = {row[1] for row in c.execute("PRAGMA table_info(containers)")}
            if "healthy" not in columns:  # a store written before replica health was recorded
                c.execute("ALTER TABLE containers ADD COLUMN healthy INTEGER NOT NULL DEFAULT 1")
        if self.path == ":memory:":
            self._state_conn = self._conn
        else:
            self._state_conn = _connect(self.path + ".traffic")
            _use_wal(self._state_conn)
            self._state_conn.execute("PRAGMA synchronous=NORMAL")
        with self._tx(self._state_conn) as c:
            for stmt in _STATE_SCHEMA.split(";"):
                if stmt.strip():
                    c.execute(stmt)
        self._subs: list[Subscription] = []

    @contextmanager
    def _tx(self, conn: sqlite3.Connection | None = None) -> Iterator[sqlite3.Connection]:
        """A write transaction (``BEGIN IMMEDIATE`` takes the write lock up front: no upgrade deadlock)."""
        with self._lock:
            c = self._conn if conn is None else conn
            c.execute("BEGIN IMMEDIATE")
            try:
                yield c
            except BaseException:
                c.execute("ROLLBACK")
                raise
            else:
                c.execute("COMMIT")

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    # -- row decoding ------------------------------------------------------------------------
    @staticmethod
    def _app(row: tuple[Any, ...]) -> AppRecord:
        return AppRecord(
            name=row[0], input_type=row[1], default_output=row[2], latency_slo_micros=row[3], policy=row[4]
        )

    @staticmethod
    def _model(row: tuple[Any, ...]) -> ModelRecord:
        return ModelRecord(
            name=row[0],
            version=row[1],
            input_type=row[2],
            labels=decode_labels(row[3]),
            container_name=row[4],
            model_data_path=row[5],
            batch_size=row[6],
            valid=bool(row[7]),
        )

    # -- reads -------------------------------------------------------------------------------
    def snapshot(self) -> ConfigSnapshot:
        with self._lock:
            c = self._conn
            c.execute("BEGIN")  # one consistent read view across the tables
            try:
                apps = {r[0]: self._app(r) for r in c.execute("SELECT * FROM apps ORDER BY rowid")}
                models = {
                    (r[0], r[1]): self._model(r) for r in c.execute("SELECT * FROM models ORDER BY rowid")
                }
                links: dict[str, list[str]] = {}
                for app, m in c.execute("SELECT app, model_name FROM links ORDER BY rowid"):
                    links.setdefault(app, []).append(m)
                current = dict(c.execute("SELECT name, version FROM current_versions").fetchall())
                traffic = {
                    a: TrafficConfig.from_json(t)
                    for a, t in c.execute("SELECT app, config FROM traffic")
                    if a in apps
                }
            finally:
                c.execute("COMMIT")
        return ConfigSnapshot(
            apps=apps,
            models=models,
            links={a: tuple(ms) for a, ms in links.items()},
            current_versions=current,
            traffic=traffic,
        )

    def get_app(self, name: str) -> AppRecord | None:
        rows = self._query("SELECT * FROM apps WHERE name = ?", (name,))
        return self._app(rows[0]) if rows else None

    def list_apps(self) -> list[AppRecord]:
        return [self._app(r) for r in self._query("SELECT * FROM apps ORDER BY rowid")]

    def get_links(self, app: str) -> list[str]:
        return [
            r[0] for r in self._query("SELECT model_name FROM links WHERE app = ? ORDER BY rowid", (app,))
        ]

    def get_model(self, name: str, version: str) -> ModelRecord | None:
        rows = self._query("SELECT * FROM models WHERE name = ? AND version = ?", (name, version))
        return self._model(rows[0]) if rows else None

    def list_models(self) -> list[ModelRecord]:
        return [self._model(r) for r in self._query("SELECT * FROM models ORDER BY rowid")]

    def list_model_versions(self, name: str) -> list[str]:
        return [
            r[0] for r in self._query("SELECT version FROM models WHERE name = ? ORDER BY rowid", (name,))
        ]

    def get_current_version(self, name: str) -> str | None:
        rows = self._query("SELECT version FROM current_versions WHERE name = ?", (name,))
        return rows[0][0] if rows and rows[0][0] else None

    def list_containers(self) -> list[ContainerRecord]:
        return [
            ContainerRecord(
                model_name=r[0],
                model_version=r[1],
                replica_id=r[2],
                input_type=r[3],
                frontend_id=r[4],
                zmq_connection_id=r[5],
                healthy=bool(r[6]),
            )
            for r in self._query(f"SELECT {_CONTAINER_COLUMNS} FROM containers ORDER BY rowid")
        ]

    # -- writes ------------------------------------------------------------------------------
    def add_app(self, app: AppRecord) -> bool:
        with self._tx() as c:
            if c.execute("SELECT 1 FROM apps WHERE name = ?", (app.name,)).fetchone():
                return False
            c.execute("DELETE FROM links WHERE app = ?", (app.name,))  # never inherit stale links
            c.execute("DELETE FROM traffic WHERE app = ?", (app.name,))
            c.execute(
                "INSERT INTO apps VALUES (?, ?, ?, ?, ?)",
                (app.name, app.input_type, app.default_output, int(app.latency_slo_micros), app.policy),
            )
            return True

    def delete_app(self, name: str) -> bool:
        with self._tx() as c:
            gone = c.execute("DELETE FROM apps WHERE name = ?", (name,)).rowcount > 0
            c.execute("DELETE FROM links WHERE app = ?", (name,))
            c.execute("DELETE FROM traffic WHERE app = ?", (name,))
        self._drop_traffic_state(name)
        return gone

    def update_app(
        self, name: str, default_output: str | None = None, latency_slo_micros: int | None = None
    ) -> AppRecord | None:
        with self._tx() as c:
            c.execute(
                "UPDATE apps SET default_output = COALESCE(?, default_output), "
                "latency_slo_micros = COALESCE(?, latency_slo_micros) WHERE name = ?",
                (default_output, None if latency_slo_micros is None else int(latency_slo_micros), name),
            )
            row = c.execute("SELECT * FROM apps WHERE name = ?", (name,)).fetchone()
        return self._app(row) if row else None

    def add_link(self, app: str, model_name: str) -> None:
        with self._tx() as c:
            c.execute("INSERT OR IGNORE INTO links VALUES (?, ?)", (app, model_name))

    def remove_link(self, app: str, model_name: str) -> None:
        with self._tx() as c:
            c.execute("DELETE FROM links WHERE app = ? AND model_name = ?", (app, model_name))

    def add_model(self, model: ModelRecord, make_current: bool = True) -> bool:
        with self._tx() as c:
            if c.execute(
                "SELECT 1 FROM models WHERE name = ? AND version = ?", (model.name, model.version)
            ).fetchone():
                return False
            c.execute(
                "INSERT INTO models VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    model.name,
                    model.version,
                    model.input_type,
                    encode_labels(model.labels),
                    model.container_name,
                    model.model_data_path,
                    int(model.batch_size),
                    1 if model.valid else 0,
                ),
            )
            if make_current:
                c.execute(
                    "INSERT OR REPLACE INTO current_versions VALUES (?, ?)", (model.name, model.version)
                )
            return True

    def set_current_version(self, name: str, version: str) -> None:
        with self._tx() as c:
            c.execute("INSERT OR REPLACE INTO current_versions VALUES (?, ?)", (name, version))

    def mark_model_invalid(self, name: str, version: str) -> None:
        with self._tx() as c:
            c.execute("UPDATE models SET valid = 0 WHERE name = ? AND version = ?", (name, version))

    def purge_model(self, name: str, version: str) -> None:
        """Delete the version, its container rows, and the current-version pointer if it pointed here."""
        with self._tx() as c:
            c.execute("DELETE FROM models WHERE name = ? AND version = ?", (name, version))
            c.execute("DELETE FROM containers WHERE model_name = ? AND model_version = ?", (name, version))
            c.execute("DELETE FROM current_versions WHERE name = ? AND version = ?", (name, version))

    def next_replica_id(self, model_name: str, model_version: str) -> int:
        with self._tx() as c:
            c.execute(
                "INSERT INTO replica_counters VALUES (?, ?, 1) ON CONFLICT (model_name, model_version) "
                "DO UPDATE SET next_id = next_id + 1",
                (model_name, model_version),
            )
            (n,) = c.execute(
                "SELECT next_id FROM replica_counters WHERE model_name = ? AND model_version = ?",
                (model_name, model_version),
            ).fetchone()
            return int(n) - 1

    def put_container(self, container: ContainerRecord) -> None:
        with self._tx() as c:
            c.execute(
                f"INSERT OR REPLACE INTO containers ({_CONTAINER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    container.model_name,
                    container.model_version,
                    int(container.replica_id),
                    container.input_type,
                    container.frontend_id,
                    int(container.zmq_connection_id),
                    int(container.healthy),
                ),
            )

    def delete_container(self, model_name: str, model_version: str, replica_id: int) -> None:
        with self._tx() as c:
            c.execute(
                "DELETE FROM containers WHERE model_name = ? AND model_version = ? AND replica_id = ?",
                (model_name, model_version, int(replica_id)),
            )

    def delete_containers_of_frontend(self, frontend_id: str) -> None:
        with self._tx() as c:
            c.execute("DELETE FROM containers WHERE frontend_id = ?", (frontend_id,))

    # -- traffic -----------------------------------------------------------------------------
    def _drop_traffic_state(self, app: str) -> None:
        with self._tx(self._state_conn) as c:
            c.execute("DELETE FROM selection_weights WHERE app = ?", (app,))
            c.execute("DELETE FROM traffic_stats WHERE app = ?", (app,))

    def set_app_traffic(self, app: str, config: TrafficConfig | None) -> None:
        self._drop_traffic_state(app)
        with self._tx() as c:
            if config is None:
                c.execute("DELETE FROM traffic WHERE app = ?", (app,))
            else:
                c.execute("INSERT OR REPLACE INTO traffic VALUES (?, ?)", (app, config.to_json()))

    def get_app_traffic(self, app: str) -> TrafficConfig | None:
        rows = self._query("SELECT config FROM traffic WHERE app = ?", (app,))
        return TrafficConfig.from_json(rows[0][0]) if rows else None

    def add_selection_weights(self, app: str, deltas: dict[str, float]) -> dict[str, float]:
        with self._tx(self._state_conn) as c:
            for target, delta in deltas.items():
                c.execute(
                    "INSERT INTO selection_weights VALUES (?, ?, ?) ON CONFLICT (app, target) "
                    "DO UPDATE SET value = value + excluded.value",
                    (app, target, float(delta)),
                )
            rows = c.execute("SELECT target, value FROM selection_weights WHERE app = ?", (app,)).fetchall()
        return {str(t): float(v) for t, v in rows}

    def get_selection_weights(self, app: str) -> dict[str, float]:
        with self._lock:
            rows = self._state_conn.execute(
                "SELECT target, value FROM selection_weights WHERE app = ?", (app,)
            ).fetchall()
        return {str(t): float(v) for t, v in rows}

    def put_traffic_stats(self, app: str, frontend_id: str, stats_json: str) -> None:
        with self._tx(self._state_conn) as c:
            c.execute("INSERT OR REPLACE INTO traffic_stats VALUES (?, ?, ?)", (app, frontend_id, stats_json))

    def list_traffic_stats(self, app: str) -> list[str]:
        with self._lock:
            rows = self._state_conn.execute(
                "SELECT stats FROM traffic_stats WHERE app = ? ORDER BY frontend_id", (app,)
            ).fetchall()
        return [str(r[0]) for r in rows]

    # -- reconciler state (in the state file: no configuration reload) -------------------------
    def acquire_lease(self, name: str, holder: str, ttl_s: float) -> str:
        now = time.time()
        with self._tx(self._state_conn) as c:
            row = c.execute("SELECT holder, expires FROM leases WHERE name = ?", (name,)).fetchone()
            if row is not None and row[0] != holder and float(row[1]) > now:
                return str(row[0])
            c.execute("INSERT OR REPLACE INTO leases VALUES (?, ?, ?)", (name, holder, now + ttl_s))
        return holder

    def renew_lease(self, name: str, holder: str, ttl_s: float) -> bool:
        now = time.time()
        with self._tx(self._state_conn) as c:
            cur = c.execute(
                "UPDATE leases SET expires = ? WHERE name = ? AND holder = ? AND expires > ?",
                (now + ttl_s, name, holder, now),
            )
            return cur.rowcount > 0

    def release_lease(self, name: str, holder: str) -> bool:
        with self._tx(self._state_conn) as c:
            cur = c.execute("DELETE FROM leases WHERE name = ? AND holder = ?", (name, holder))
            return cur.rowcount > 0

    def get_record(self, namespace: str, key: str) -> str | None:
        with self._lock:
            row = self._state_conn.execute(
                "SELECT value FROM records WHERE namespace = ? AND key = ?", (namespace, key)
            ).fetchone()
        return None if row is None else str(row[0])

    def get_records(self, namespace: str, keys: Sequence[str]) -> dict[str, str | None]:
        found: dict[str, str | None] = dict.fromkeys(keys)
        unique = list(found)
        with self._lock:
            for i in range(0, len(unique), _SQL_VARIABLES):  # SQLite's limit on bound variables
                chunk = unique[i : i + _SQL_VARIABLES]
                rows = self._state_conn.execute(
                    f"SELECT key, value FROM records WHERE namespace = ? AND key IN ({', '.join('?' * len(chunk))})",
                    (namespace, *chunk),
                ).fetchall()
                found.update((str(k), str(v)) for k, v in rows)
        return found

    def put_record(self, namespace: str, key: str, value: str | None) -> None:
        with self._tx(self._state_conn) as c:
            if value is None:
                c.execute("DELETE FROM records WHERE namespace = ? AND key = ?", (namespace, key))
            else:
                c.execute("INSERT OR REPLACE INTO records VALUES (?, ?, ?)", (namespace, key, value))

    # -- change notification -----------------------------------------------------------------
    def subscribe(self, on_change: Callable[[], None]) -> Subscription:
        conn = _connect(self.path)

        def probe() -> int:
            version: int = conn.execute("PRAGMA data_version").fetchone()[0]
            return version

        sub = _SqliteSubscription(conn, probe, on_change)
        self._subs.append(sub)
        return sub

    def close(self) -> None:
        for s in self._subs:
            s.close()
        self._subs.clear()
        with self._lock:
            if self._state_conn is not self._conn:
                self._state_conn.close()
            self._conn.close()


class _SqliteSubscription(_PollSubscription):
    def __init__(self, conn: sqlite3.Connection, probe: Callable[[], object], on_change: Callable[[], None]):
        self._conn = conn
        super().__init__(probe, on_change, POLL_INTERVAL_S, "sqlite-config-watch")

    def close(self) -> None:
        super().close()
        self._conn.close()
