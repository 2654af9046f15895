"""Redis config store in the original Clipper layout, so that original tooling can read it.

=====  ======================================  ===========================================================
DB     key                                     value
=====  ======================================  ===========================================================
1      ``<app>:0:0``                           string ``{"y_hat": "<default_output>"}`` (selection state)
2      ``<name>:<version>``                    hash, 9 fields: model_name, model_version, load, input_type,
                                               labels (``a,b``), container_name, model_data_path,
                                               batch_size, valid (``""``; absent = marked invalid)
3      ``<name>,<version>,<replica_id>``       hash: model_id, model_name, model_version, model_replica_id,
                                               zmq_connection_id, batch_size, input_type, frontend_id
5      ``<app>``                               hash, 4 fields: input_type, policy, default_output,
                                               latency_slo_micros
6      ``CURRENT_MODEL_VERSION:<name>``        string: the version
7      ``<app>``                               set of linked model names
=====  ======================================  ===========================================================

Added (keys the original never reads): DB 6 ``TRAFFIC:<app>`` (the app's traffic configuration, JSON;
watched like the rest of DB 6), DB 4 ``selection:<app>`` (hash target -> log weight, HINCRBYFLOAT) and
``traffic_stats:<app>`` (hash frontend id -> statistics JSON), ``lease:<name>`` (the reconciler's
apply lease: holder, PX expiry) and ``records:<namespace>`` (hash: the reconciler's records); DB 4 is not watched, so the frequent
state and statistics writes of query frontends notify nobody.

One client per DB (the original's shared connection with ``SELECT`` before each command could land a
command in the wrong DB). Listing uses ``SCAN`` with glob-escaped patterns. Change notification is
Redis keyspace events (``notify-keyspace-events AKE``, set by :meth:`subscribe`) on DB 2, 3, 5, 6, 7;
where ``CONFIG`` is forbidden the subscriber also polls a snapshot every 50 ms. The subscriber reconnects
with backoff when Redis goes away and signals a change after reconnecting (events may have been missed).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qs, unquote, urlparse

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from clipper.config_store.base import (
    AppRecord,
    ConfigSnapshot,
    ConfigStore,
    ContainerRecord,
    ModelRecord,
    Subscription,
)
from clipper.config_store.traffic import TrafficConfig

if TYPE_CHECKING:
    from redis.typing import EncodableT, FieldT

# Every client decodes replies (decode_responses=True), so they are str where redis-py's annotations
# say ``bytes | str``: the casts below say so, nothing is converted.

log = logging.getLogger(__name__)

STATE_DB, MODEL_DB, CONTAINER_DB, RESOURCE_DB, APPLICATION_DB, METADATA_DB, LINKS_DB = 1, 2, 3, 4, 5, 6, 7
WATCHED_DBS = (MODEL_DB, CONTAINER_DB, APPLICATION_DB, METADATA_DB, LINKS_DB)
CURRENT_VERSION_PREFIX = "CURRENT_MODEL_VERSION:"
TRAFFIC_PREFIX = "TRAFFIC:"
DEFAULT_POLICY = "DefaultOutputSelectionPolicy"
FALLBACK_POLL_S = 0.05

# add_app: write the 4-field hash only if the key is new (atomic check-and-set).
_HSET_IF_ABSENT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
"""

# leases: renew / release only by the holder (compare-and-renew, compare-and-delete)
_RENEW_IF_HOLDER = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_DELETE_IF_HOLDER = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_HSET_IF_PRESENT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if #ARGV > 0 then redis.call('HSET', KEYS[1], unpack(ARGV)) end
return 1
"""


def glob_escape(s: str) -> str:
    """Escape a literal for a Redis MATCH/KEYS pattern (names with ``*?[]`` broke the original)."""
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in s)


def model_key(name: str, version: str) -> str:
    return f"{name}:{version}"


def container_key(name: str, version: str, replica_id: int) -> str:
    return f"{name},{version},{replica_id}"


def state_key(app: str) -> str:
    return f"{app}:0:0"


def _labels(text: str | None) -> tuple[str, ...]:
    return tuple(text.split(",")) if text else ()


def _int(text: str | None, default: int) -> int:
    try:
        return int(text) if text not in (None, "") else default
    except ValueError:
        return default


def app_from_hash(name: str, h: dict[str, str]) -> AppRecord:
    return AppRecord(
        name=name,
        input_type=h.get("input_type", ""),
        default_output=h.get("default_output", ""),
        latency_slo_micros=_int(h.get("latency_slo_micros"), 0),
        policy=h.get("policy", DEFAULT_POLICY),
    )


def model_from_hash(key: str, h: dict[str, str]) -> ModelRecord:
    name, _, version = key.partition(":")
    return ModelRecord(
        name=h.get("model_name", name),
        version=h.get("model_version", version),
        input_type=h.get("input_type", ""),
        labels=_labels(h.get("labels")),
        container_name=h.get("container_name", ""),
        model_data_path=h.get("model_data_path", "DEPRECATED"),
        batch_size=_int(h.get("batch_size"), -1),
        valid="valid" in h,
    )


def model_hash(m: ModelRecord) -> dict[str, str]:
    """The original's 9 fields, in its order."""
    h = {
        "model_name": m.name,
        "model_version": m.version,
        "load": "0.000000",
        "input_type": m.input_type,
        "labels": ",".join(m.labels),
        "container_name": m.container_name,
        "model_data_path": m.model_data_path,
        "batch_size": str(int(m.batch_size)),
    }
    if m.valid:
        h["valid"] = ""
    return h


def container_from_hash(key: str, h: dict[str, str]) -> ContainerRecord:
    parts = key.split(",")
    return ContainerRecord(
        model_name=h.get("model_name", parts[0]),
        model_version=h.get("model_version", parts[1] if len(parts) > 1 else ""),
        replica_id=_int(h.get("model_replica_id"), _int(parts[-1], 0)),
        input_type=h.get("input_type", ""),
        frontend_id=h.get("frontend_id", ""),
        zmq_connection_id=_int(h.get("zmq_connection_id"), 0),
        healthy=h.get("healthy", "1") != "0",  # absent in rows written by the original
    )


class RedisConfigStore(ConfigStore):
    def __init__(
        self, host: str = "localhost", port: int = 6379, password: str | None = None, ssl: bool = False
    ):
        self.host, self.port, self._password, self._ssl = host, int(port), password, ssl
        self._dbs = {db: self._client(db) for db in (STATE_DB, RESOURCE_DB, *WATCHED_DBS)}
        self._add_app_script = self._dbs[APPLICATION_DB].register_script(_HSET_IF_ABSENT)
        self._update_app_script = self._dbs[APPLICATION_DB].register_script(_HSET_IF_PRESENT)
        self._renew_script = self._dbs[RESOURCE_DB].register_script(_RENEW_IF_HOLDER)
        self._release_script = self._dbs[RESOURCE_DB].register_script(_DELETE_IF_HOLDER)
        self._subs: list[Subscription] = []

    @classmethod
    def from_url(cls, url: str) -> RedisConfigStore:
        u = urlparse(url)
        q = parse_qs(u.query)
        password = q.get("password", [None])[0] or (unquote(u.password) if u.password else None)
        return cls(u.hostname or "localhost", u.port or 6379, password=password, ssl=u.scheme == "rediss")

    def _client(self, db: int, retries: int = 5, **kw: Any) -> redis.Redis:
        return redis.Redis(
            host=self.host,
            port=self.port,
            db=db,
            password=self._password,
            ssl=self._ssl,
            decode_responses=True,
            socket_connect_timeout=2.0,
            socket_keepalive=True,
            health_check_interval=kw.pop("health_check_interval", 10),
            retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries),
            retry_on_error=[redis.ConnectionError, redis.TimeoutError],
            **kw,
        )

    def _scan(self, db: int, match: str = "*") -> list[str]:
        return list(self._dbs[db].scan_iter(match=match, count=1000))

    def _hgetall_many(self, db: int, keys: list[str]) -> list[dict[str, str]]:
        if not keys:
            return []
        p = self._dbs[db].pipeline(transaction=False)
        for k in keys:
            p.hgetall(k)
        return p.execute()

    # -- reads -------------------------------------------------------------------------------
    def snapshot(self) -> ConfigSnapshot:
        apps = self.list_apps()
        app_names = [a.name for a in apps]
        links: dict[str, tuple[str, ...]] = {}
        link_keys = self._scan(LINKS_DB)
        if link_keys:
            p = self._dbs[LINKS_DB].pipeline(transaction=False)
            for k in link_keys:
                p.smembers(k)
            for k, members in zip(link_keys, p.execute(), strict=True):
                if members and k in app_names:
                    links[k] = tuple(sorted(members))
        return ConfigSnapshot(
            apps={a.name: a for a in apps},
            models={(m.name, m.version): m for m in self.list_models()},
            links=links,
            current_versions=self._current_versions(),
            traffic={a: t for a, t in self._traffic().items() if a in app_names},
        )

    def _traffic(self) -> dict[str, TrafficConfig]:
        keys = self._scan(METADATA_DB, glob_escape(TRAFFIC_PREFIX) + "*")
        if not keys:
            return {}
        values = self._dbs[METADATA_DB].mget(keys)
        return {
            k.removeprefix(TRAFFIC_PREFIX): TrafficConfig.from_json(str(v))
            for k, v in zip(keys, values, strict=True)
            if v
        }

    def _current_versions(self) -> dict[str, str]:
        keys = self._scan(METADATA_DB, glob_escape(CURRENT_VERSION_PREFIX) + "*")
        if not keys:
            return {}
        values = cast("list[str | None]", self._dbs[METADATA_DB].mget(keys))
        return {k.removeprefix(CURRENT_VERSION_PREFIX): v for k, v in zip(keys, values, strict=True) if v}

    def get_app(self, name: str) -> AppRecord | None:
        h = cast("dict[str, str]", self._dbs[APPLICATION_DB].hgetall(name))
        return app_from_hash(name, h) if h else None

    def list_apps(self) -> list[AppRecord]:
        keys = self._scan(APPLICATION_DB)
        hashes = self._hgetall_many(APPLICATION_DB, keys)
        return [app_from_hash(k, h) for k, h in zip(keys, hashes, strict=True) if h]

    def get_links(self, app: str) -> list[str]:
        return sorted(cast("set[str]", self._dbs[LINKS_DB].smembers(app)))

    def get_model(self, name: str, version: str) -> ModelRecord | None:
        key = model_key(name, version)
        h = cast("dict[str, str]", self._dbs[MODEL_DB].hgetall(key))
        return model_from_hash(key, h) if h else None

    def list_models(self) -> list[ModelRecord]:
        keys = self._scan(MODEL_DB)
        hashes = self._hgetall_many(MODEL_DB, keys)
        return [model_from_hash(k, h) for k, h in zip(keys, hashes, strict=True) if h]

    def list_model_versions(self, name: str) -> list[str]:
        prefix = name + ":"
        return [k[len(prefix) :] for k in self._scan(MODEL_DB, glob_escape(prefix) + "*")]

    def get_current_version(self, name: str) -> str | None:
        return cast("str | None", self._dbs[METADATA_DB].get(CURRENT_VERSION_PREFIX + name)) or None

    def list_containers(self) -> list[ContainerRecord]:
        keys = self._scan(CONTAINER_DB)
        hashes = self._hgetall_many(CONTAINER_DB, keys)
        return [container_from_hash(k, h) for k, h in zip(keys, hashes, strict=True) if h]

    # -- writes ------------------------------------------------------------------------------
    def add_app(self, app: AppRecord) -> bool:
        if self._dbs[APPLICATION_DB].exists(app.name):
            return False
        self._dbs[LINKS_DB].delete(app.name)  # never inherit links the original's delete_app left behind
        self._dbs[METADATA_DB].delete(TRAFFIC_PREFIX + app.name)
        fields = [
            "input_type",
            app.input_type,
            "policy",
            app.policy,
            "default_output",
            app.default_output,
            "latency_slo_micros",
            str(int(app.latency_slo_micros)),
        ]
        if not self._add_app_script(keys=[app.name], args=fields):
            return False
        self._dbs[STATE_DB].set(state_key(app.name), json.dumps({"y_hat": app.default_output}))
        return True

    def delete_app(self, name: str) -> bool:
        existed = self._dbs[APPLICATION_DB].delete(name) > 0
        self._dbs[LINKS_DB].delete(name)
        self._dbs[STATE_DB].delete(state_key(name))
        self.set_app_traffic(name, None)
        return existed

    def update_app(
        self, name: str, default_output: str | None = None, latency_slo_micros: int | None = None
    ) -> AppRecord | None:
        fields: list[str] = []
        if default_output is not None:
            fields += ["default_output", default_output]
        if latency_slo_micros is not None:
            fields += ["latency_slo_micros", str(int(latency_slo_micros))]
        if not self._update_app_script(keys=[name], args=fields):
            return None
        if default_output is not None:  # the default output policy's state, as add_app writes it
            self._dbs[STATE_DB].set(state_key(name), json.dumps({"y_hat": default_output}))
        return self.get_app(name)

    def add_link(self, app: str, model_name: str) -> None:
        self._dbs[LINKS_DB].sadd(app, model_name)

    def remove_link(self, app: str, model_name: str) -> None:
        self._dbs[LINKS_DB].srem(app, model_name)

    def add_model(self, model: ModelRecord, make_current: bool = True) -> bool:
        key = model_key(model.name, model.version)
        db = self._dbs[MODEL_DB]
        with db.pipeline(transaction=True) as p:
            try:
                p.watch(key)
                if p.exists(key):
                    p.unwatch()
                    return False
                p.multi()
                p.hset(key, mapping=cast("Mapping[FieldT, EncodableT]", model_hash(model)))
                p.execute()
            except redis.WatchError:
                return False  # someone created it between our check and our write
        if make_current:
            self.set_current_version(model.name, model.version)
        return True

    def set_current_version(self, name: str, version: str) -> None:
        self._dbs[METADATA_DB].set(CURRENT_VERSION_PREFIX + name, version)

    def mark_model_invalid(self, name: str, version: str) -> None:
        self._dbs[MODEL_DB].hdel(model_key(name, version), "valid")

    def purge_model(self, name: str, version: str) -> None:
        """Delete the version, its container rows, and the current-version pointer if it pointed here."""
        self._dbs[MODEL_DB].delete(model_key(name, version))
        rows = self._scan(CONTAINER_DB, f"{glob_escape(name)},{glob_escape(version)},*")
        if rows:
            self._dbs[CONTAINER_DB].delete(*rows)
        meta = self._dbs[METADATA_DB]
        cur_key = CURRENT_VERSION_PREFIX + name
        with meta.pipeline(transaction=True) as p:
            try:
                p.watch(cur_key)
                if p.get(cur_key) == version:
                    p.multi()
                    p.delete(cur_key)
                    p.execute()
                else:
                    p.unwatch()
            except redis.WatchError:
                pass  # the pointer moved meanwhile: it no longer points at the purged version

    def next_replica_id(self, model_name: str, model_version: str) -> int:
        # DB 4 ("RESOURCE") is unused by the original; INCR is atomic across frontends.
        return int(self._dbs[RESOURCE_DB].incr(f"replica_id:{model_name}:{model_version}")) - 1

    def put_container(self, container: ContainerRecord) -> None:
        c = container
        key = container_key(c.model_name, c.model_version, c.replica_id)
        self._dbs[CONTAINER_DB].hset(
            key,
            mapping={
                "model_id": model_key(c.model_name, c.model_version),
                "model_name": c.model_name,
                "model_version": c.model_version,
                "model_replica_id": str(int(c.replica_id)),
                "zmq_connection_id": str(int(c.zmq_connection_id)),
                "batch_size": "1",
                "input_type": c.input_type,
                "frontend_id": c.frontend_id,
                "healthy": "1" if c.healthy else "0",
            },
        )

    def delete_container(self, model_name: str, model_version: str, replica_id: int) -> None:
        self._dbs[CONTAINER_DB].delete(container_key(model_name, model_version, replica_id))

    def delete_containers_of_frontend(self, frontend_id: str) -> None:
        doomed = [
            container_key(c.model_name, c.model_version, c.replica_id)
            for c in self.list_containers()
            if c.frontend_id == frontend_id
        ]
        if doomed:
            self._dbs[CONTAINER_DB].delete(*doomed)

    # -- traffic -----------------------------------------------------------------------------
    def set_app_traffic(self, app: str, config: TrafficConfig | None) -> None:
        self._dbs[RESOURCE_DB].delete(f"selection:{app}", f"traffic_stats:{app}")
        if config is None:
            self._dbs[METADATA_DB].delete(TRAFFIC_PREFIX + app)
        else:
            self._dbs[METADATA_DB].set(TRAFFIC_PREFIX + app, config.to_json())

    def get_app_traffic(self, app: str) -> TrafficConfig | None:
        text = self._dbs[METADATA_DB].get(TRAFFIC_PREFIX + app)
        return TrafficConfig.from_json(str(text)) if text else None

    def add_selection_weights(self, app: str, deltas: dict[str, float]) -> dict[str, float]:
        key = f"selection:{app}"
        with self._dbs[RESOURCE_DB].pipeline(transaction=True) as p:
            for target, delta in deltas.items():
                p.hincrbyfloat(key, target, float(delta))
            p.hgetall(key)
            result = p.execute()
        return {str(k): float(v) for k, v in dict(result[-1]).items()}

    def get_selection_weights(self, app: str) -> dict[str, float]:
        return {str(k): float(v) for k, v in self._dbs[RESOURCE_DB].hgetall(f"selection:{app}").items()}

    def put_traffic_stats(self, app: str, frontend_id: str, stats_json: str) -> None:
        self._dbs[RESOURCE_DB].hset(f"traffic_stats:{app}", frontend_id, stats_json)

    def list_traffic_stats(self, app: str) -> list[str]:
        h = self._dbs[RESOURCE_DB].hgetall(f"traffic_stats:{app}")
        return [str(h[k]) for k in sorted(h)]

    # -- reconciler state (DB 4, not watched: no configuration reload) ---------------------------
    def acquire_lease(self, name: str, holder: str, ttl_s: float) -> str:
        key, ms = f"lease:{name}", max(1, int(ttl_s * 1000))
        db = self._dbs[RESOURCE_DB]
        if db.set(key, holder, nx=True, px=ms):
            return holder
        if self._renew_script(keys=[key], args=[holder, ms]):
            return holder
        current = db.get(key)
        if current is None:  # expired between the two calls: try once more
            return holder if db.set(key, holder, nx=True, px=ms) else str(db.get(key) or "")
        return str(current)

    def renew_lease(self, name: str, holder: str, ttl_s: float) -> bool:
        return bool(self._renew_script(keys=[f"lease:{name}"], args=[holder, max(1, int(ttl_s * 1000))]))

    def release_lease(self, name: str, holder: str) -> bool:
        return bool(self._release_script(keys=[f"lease:{name}"], args=[holder]))

    def get_record(self, namespace: str, key: str) -> str | None:
        value = self._dbs[RESOURCE_DB].hget(f"records:{namespace}", key)
        return None if value is None else str(value)

    def get_records(self, namespace: str, keys: Sequence[str]) -> dict[str, str | None]:
        if not keys:
            return {}
        values = self._dbs[RESOURCE_DB].hmget(f"records:{namespace}", list(keys))
        return {key: None if v is None else str(v) for key, v in zip(keys, values, strict=True)}

    def put_record(self, namespace: str, key: str, value: str | None) -> None:
        if value is None:
            self._dbs[RESOURCE_DB].hdel(f"records:{namespace}", key)
        else:
            self._dbs[RESOURCE_DB].hset(f"records:{namespace}", key, value)

    # -- change notification -----------------------------------------------------------------
    def subscribe(self, on_change: Callable[[], None]) -> Subscription:
        sub = _KeyspaceSubscription(self, on_change)
        self._subs.append(sub)
        return sub

    def _fingerprint(self) -> object:
        return (self.snapshot(), sorted(self.list_containers(), key=repr))

    def close(self) -> None:
        for s in self._subs:
            s.close()
        self._subs.clear()
        for c in self._dbs.values():
            c.close()


class _KeyspaceSubscription(Subscription):
    """psubscribe to the keyspace channels of the watched DBs in a daemon thread; never dies.

    On (re)connect: ``CONFIG SET notify-keyspace-events AKE`` (a restarted Redis forgot it), psubscribe,
    then signal a change, since events may have been missed while disconnected. If ``CONFIG`` is refused
    the thread also polls a snapshot every 50 ms, so changes still arrive (slower, costlier).
    """

    def __init__(self, store: RedisConfigStore, on_change: Callable[[], None]) -> None:
        self._store = store
        self._on_change = on_change
        self._stop = threading.Event()
        self._connected = threading.Event()
        self.polling = False
        self._thread = threading.Thread(target=self._run, name="redis-config-watch", daemon=True)
        self._thread.start()

    def wait_connected(self, timeout: float) -> bool:
        """True once the subscription is live (psubscribed); for tests and orderly start-ups."""
        return self._connected.wait(timeout)

    def _enable_notifications(self, client: redis.Redis) -> bool:
        try:
            client.config_set("notify-keyspace-events", "AKE")
            return True
        except redis.ResponseError as e:
            log.warning(
                "Redis refused CONFIG SET notify-keyspace-events AKE (%s); enable keyspace notifications on "
                "the server (notify-keyspace-events AKE). Falling back to polling the store every %d ms.",
                e,
                int(FALLBACK_POLL_S * 1000),
            )
            return False

    def _patterns(self) -> Iterable[str]:
        return [f"__keyspace@{db}__:*" for db in WATCHED_DBS]

    def _fire(self) -> None:
        try:
            self._on_change()
        except Exception:
            log.exception("config store on_change callback failed")

    def _run(self) -> None:
        backoff = 0.05
        first = True
        while not self._stop.is_set():
            # no client-side retry: a lost connection must surface here (re-CONFIG, re-signal)
            client = self._store._client(0, retries=0)
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                self.polling = not self._enable_notifications(client)
                pubsub.psubscribe(*self._patterns())
                fingerprint = self._store._fingerprint() if self.polling else None
                self._connected.set()
                if not first:
                    log.info(
                        "config store subscription to redis %s:%s re-established",
                        self._store.host,
                        self._store.port,
                    )
                    self._fire()
                first = False
                backoff = 0.05
                self._loop(pubsub, fingerprint)
            except (redis.ConnectionError, redis.TimeoutError, OSError) as e:
                self._connected.clear()
                if self._stop.is_set():
                    break
                log.warning(
                    "config store lost redis %s:%s (%s); reconnecting in %.2f s",
                    self._store.host,
                    self._store.port,
                    e,
                    backoff,
                )
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 2.0)
            except Exception:
                log.exception("config store subscription error; restarting it")
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 2.0)
            finally:
                try:
                    pubsub.close()
                    client.close()
                except Exception:
                    pass

    def _loop(self, pubsub: redis.client.PubSub, fingerprint: object) -> None:
        timeout = FALLBACK_POLL_S if self.polling else 0.5
        while not self._stop.is_set():
            msg = pubsub.get_message(timeout=timeout)
            changed = msg is not None
            while msg is not None:  # coalesce everything already queued into one callback
                msg = pubsub.get_message(timeout=0)
            if self.polling:
                now = self._store._fingerprint()
                changed = changed or now != fingerprint
                fingerprint = now
            if changed:
                self._fire()

    def close(self) -> None:
        self._stop.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=3.0)
