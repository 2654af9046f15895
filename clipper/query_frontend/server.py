"""The query frontend process: HTTP routes, RPC callbacks, config-store following.

Wiring only; the per-query logic lives in :mod:`.processor`, dispatch in :mod:`.workers`.

* Configuration: ``store.snapshot()`` at start and again after every change notification (store
  thread -> ``call_soon_threadsafe`` -> one reload at a time in the store executor, coalesced); the
  new routing table replaces the old one whole, so deleted apps lose their routes, version switches
  apply to the next request, and invalid (deleted) model versions are purged: queue dropped, replicas
  parked, ``store.purge_model`` called.
* Replicas: ``on_register`` puts a :class:`ContainerRecord` tagged with this frontend's id (marked
  unhealthy while the replica is suspended as hung), ``on_disconnect`` deletes it; start-up and
  shutdown drop every row of this frontend id, so a restart leaves no stale rows. Only this
  process's RPC sessions are ever used (rows of other frontends sharing the store are ignored).
* Store calls are blocking: they run on one dedicated thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from typing import Any, TypeVar, TypeVarTuple

import orjson

from clipper.compiled import hot_path
from clipper.config_store.base import ConfigSnapshot, ConfigStore, ContainerRecord, Subscription
from clipper.http.server import Deferred, HttpServer, Request, Response, serve
from clipper.metrics import PROMETHEUS_CONTENT_TYPE, MetricsRegistry
from clipper.query_frontend import responses as R
from clipper.query_frontend.cache import PredictionCache
from clipper.query_frontend.processor import (
    CapturingRequest,
    EnsembleRequest,
    PendingRequest,
    QueryProcessor,
    TargetRequest,
)
from clipper.query_frontend.requests import (
    DEFAULT_MAX_BATCH_INPUTS,
    PARSE_CHUNK,
    BatchTooLarge,
    JsonParseError,
    JsonSemanticError,
    PredictRequest,
    parse_batch,
    parse_predict,
    parse_update,
)
from clipper.query_frontend.routes import PREDICT, AppRoute, RoutingTable, build_routing_table
from clipper.query_frontend.traffic import AppTraffic, TargetStats, combine, loss
from clipper.query_frontend.workers import DEFAULT_BATCH_TIMEOUT_S, Dispatcher, ModelState, Replica
from clipper.rpc.auth import RpcKeys
from clipper.rpc.server import DEFAULT_MAX_MESSAGE_BYTES, ReplicaConnection, RpcServer

log = logging.getLogger(__name__)
_T = TypeVar("_T")
_Ts = TypeVarTuple("_Ts")

TEXT = "text/plain; charset=utf-8"
DEFAULT_CACHE_BYTES = 33554432
_HEALTH_OK = b'{"status":"ok"}'
_NOT_FOUND_ERROR = "Not Found"
_GET = ("GET", "HEAD")  # HEAD: the server sends the GET response's headers without its body


def default_frontend_id(rpc_port: int) -> str:
    """Stable across restarts on one host and port, so a restart can clean its own stale rows."""
    return f"{socket.gethostname()}:{rpc_port}"


class QueryFrontend:
    def __init__(
        self,
        store: ConfigStore,
        *,
        host: str = "127.0.0.1",
        port: int = 1337,
        rpc_host: str = "127.0.0.1",
        rpc_port: int = 7000,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        max_body_bytes: int = 16 * 1024 * 1024,
        frontend_id: str | None = None,
        batch_timeout: float = DEFAULT_BATCH_TIMEOUT_S,
        liveness_timeout: float = 3.0,
        header_timeout: float = 5.0,
        body_timeout: float = 300.0,
        max_batch_inputs: int = DEFAULT_MAX_BATCH_INPUTS,
        max_connections: int = 0,
        max_url_bytes: int = 8 * 1024,
        max_header_bytes: int = 64 * 1024,
        metrics: MetricsRegistry | None = None,
        rpc_keys: RpcKeys | None = None,
        rpc_max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        traffic_seed: int | None = None,
        rpc_socket: str | None = None,
    ) -> None:
        """``rpc_keys``: admit only replicas holding the cluster's CURVE keys (None: any container,
        as the original); ``rpc_max_message_bytes``: largest inbound RPC frame (one input/output);
        ``rpc_socket``: also serve replicas on this Unix socket (owner-only, no CURVE)."""
        if cache_bytes < 0:
            raise ValueError("--prediction-cache-size must be >= 0")
        self.store = store
        self.host, self.port = host, port
        self.rpc_host, self.rpc_port = rpc_host, rpc_port
        self.max_body_bytes = max_body_bytes
        self.header_timeout, self.body_timeout = header_timeout, body_timeout
        # HTTP limits (docs/internals.md, HTTP); max_connections=0: derived from the open-file limit
        self.max_batch_inputs = max_batch_inputs
        self.max_connections = max_connections
        self.max_url_bytes, self.max_header_bytes = max_url_bytes, max_header_bytes
        self.frontend_id = frontend_id or default_frontend_id(rpc_port)
        self.batch_timeout = batch_timeout
        self.liveness_timeout = liveness_timeout
        self.rpc_keys = rpc_keys
        self.rpc_max_message_bytes = rpc_max_message_bytes
        self.rpc_socket = rpc_socket
        self.metrics = metrics or MetricsRegistry()
        self.cache = PredictionCache(cache_bytes)
        self.table = RoutingTable()
        self.snapshot = ConfigSnapshot()
        self.models: dict[tuple[str, str], ModelState] = {}
        self.traffic: dict[str, AppTraffic] = {}  # apps with a traffic configuration
        self._traffic_random = random.Random(traffic_seed).random  # choices of splits, shadows, exp3
        # replicas of purged versions, by (name, version)
        self.parked: dict[tuple[str, str], list[ReplicaConnection]] = {}
        self._store_exec = ThreadPoolExecutor(1, thread_name_prefix="qf-store")
        self._reload_running = False
        self._reload_again = False
        self._subscription: Subscription | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.http: HttpServer | None = None
        self.rpc: RpcServer | None = None
        self._openapi: bytes | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        loop = self.loop = asyncio.get_running_loop()
        await self._in_store(self.store.delete_containers_of_frontend, self.frontend_id)
        await self._reload_once()
        self.rpc = RpcServer(
            self.rpc_host,
            self.rpc_port,
            on_register=self._on_register,
            on_response=self._on_response,
            on_disconnect=self._on_disconnect,
            liveness_timeout=self.liveness_timeout,
            allocate_replica_id=self.store.next_replica_id,
            keys=self.rpc_keys,
            max_message_bytes=self.rpc_max_message_bytes,
            ipc_path=self.rpc_socket,
        )
        self.dispatcher = Dispatcher(
            loop,
            self.rpc,
            self.cache,
            self.metrics,
            batch_timeout=self.batch_timeout,
            on_replica_removed=self._on_replica_removed,
            on_replica_health=self._on_replica_health,
        )
        self.processor = QueryProcessor(loop, self.cache, self.dispatcher, self.metrics)
        self._subscription = self.store.subscribe(self._on_store_change)
        await self.rpc.start()
        self.rpc_port = self.rpc.port
        self.http = await serve(
            self.handle,
            self.host,
            self.port,
            max_body_bytes=self.max_body_bytes,
            max_header_bytes=self.max_header_bytes,
            max_url_bytes=self.max_url_bytes,
            max_connections=self.max_connections,
            header_timeout=self.header_timeout,
            body_timeout=self.body_timeout,
        )
        self.port = self.http.port
        self._housekeeping = loop.call_later(1.0, self._housekeep)
        log.info(
            "query frontend %s: HTTP %s:%d, RPC %s:%d, hot path %s",
            self.frontend_id,
            self.host,
            self.port,
            self.rpc_host,
            self.rpc_port,
            hot_path(),
        )

    async def close(self) -> None:
        if self._subscription is not None:
            self._subscription.close()
            self._subscription = None
        try:
            self._flush_traffic()  # the last statistics and selection weights (store thread, in order)
        except Exception:
            log.exception("could not flush the traffic state")
        if self.http is not None:
            await self.http.close()
        if self.rpc is not None:
            await self.rpc.close()
        try:
            await self._in_store(self.store.delete_containers_of_frontend, self.frontend_id)
        except Exception:
            log.exception("could not remove this frontend's container rows")
        self._store_exec.shutdown(wait=True)

    async def _in_store(self, fn: Callable[[*_Ts], _T], *args: *_Ts) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._store_exec, fn, *args)

    def _store_call(self, fn: Callable[[*_Ts], object], *args: *_Ts) -> None:
        """Fire-and-forget store write (ordered: one store thread)."""

        def run() -> None:
            try:
                fn(*args)
            except Exception:
                log.exception("config store call %s failed", getattr(fn, "__name__", fn))

        self._store_exec.submit(run)

    def _housekeep(self) -> None:
        loop = self.loop
        assert loop is not None  # started
        try:
            now = loop.time()
            for m in self.models.values():
                if len(m.queue) > 0:
                    m.queue.compact(now)
            self._flush_traffic()
            self.metrics.tick_meters()  # the hot path counts meters' events without ticking them
        except Exception:
            log.exception("housekeeping failed")
        self._housekeeping = loop.call_later(1.0, self._housekeep)

    # -- configuration -------------------------------------------------------------------------
    def _on_store_change(self) -> None:  # store thread
        loop = self.loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._schedule_reload)

    def _schedule_reload(self) -> None:
        if self._reload_running:
            self._reload_again = True
            return
        self._reload_running = True
        asyncio.ensure_future(self._reload_loop())

    async def _reload_loop(self) -> None:
        try:
            while True:
                self._reload_again = False
                try:
                    await self._reload_once()
                except Exception:
                    log.exception("reloading the configuration failed")
                if not self._reload_again:
                    break
        finally:
            self._reload_running = False

    async def _reload_once(self) -> None:
        snap = await self._in_store(self.store.snapshot)
        self.apply_snapshot(snap)

    def apply_snapshot(self, snap: ConfigSnapshot) -> None:
        self.table = build_routing_table(snap, self.metrics, log)
        self.snapshot = snap
        self._attach_traffic(snap)
        for key, model in list(self.models.items()):
            rec = snap.models.get(key)
            if rec is None:
                continue
            if not rec.valid:
                self._purge(model)
            elif rec.batch_size != model.cap:
                model.set_cap(rec.batch_size)
        for key, rec in snap.models.items():
            if not rec.valid:
                if key not in self.models:
                    self._store_call(self.store.purge_model, *key)
            elif key in self.parked:
                self._unpark(key)

    # -- traffic configurations -----------------------------------------------------------------
    def _attach_traffic(self, snap: ConfigSnapshot) -> None:
        """Give each app with a traffic configuration its :class:`AppTraffic`, kept (with its
        statistics and weights) while the configuration is unchanged. ``target`` (large batches,
        pinned versions) becomes the first target's."""
        old, new = self.traffic, {}
        for name, config in snap.traffic.items():
            route = self.table.apps.get(name)
            if route is None or not config.targets:
                continue
            at = old.get(name)
            if at is None or at.config != config:
                at = AppTraffic(name, config, self.metrics, self._traffic_random)
                if at.weights is not None:
                    self._flush_selection(at)  # starts from the shared state in the store
            new[name] = at
            route.traffic = at
            route.target = at.keys[0]
        self.traffic = new

    def _flush_traffic(self) -> None:
        """Statistics rows and selection-weight additions to the store (about once a second)."""
        for at in self.traffic.values():
            text = at.stats_json()
            if text is not None:
                self._store_call(self.store.put_traffic_stats, at.app, self.frontend_id, text)
            if at.weights is not None:
                self._flush_selection(at)

    def _flush_selection(self, at: AppTraffic) -> None:
        weights = at.weights
        if weights is None:
            return
        deltas = weights.take_pending()
        loop = self.loop

        def run() -> None:
            try:
                state = self.store.add_selection_weights(at.app, deltas)
            except Exception:
                log.exception("could not write the selection weights of %r", at.app)
                return
            if loop is not None and not loop.is_closed():
                loop.call_soon_threadsafe(self._absorb, at, state)

        self._store_exec.submit(run)

    def _absorb(self, at: AppTraffic, state: dict[str, float]) -> None:
        if at.weights is not None and self.traffic.get(at.app) is at:
            at.weights.absorb(state)

    def _purge(self, model: ModelState) -> None:
        key = (model.name, model.version)
        log.info("purging model %s:%s", *key)
        model.purged = True
        self.models.pop(key, None)
        parked = self.parked.setdefault(key, [])
        for r in list(model.replicas):
            parked.append(r.conn)
            self.dispatcher.remove_replica(r, "purged")
        model.queue.clear()
        self.cache.drop_model(*key)
        self.metrics.remove_prefix(model.metrics_prefix)
        self._store_call(self.store.purge_model, *key)

    def _unpark(self, key: tuple[str, str]) -> None:
        conns = self.parked.pop(key, [])
        live = self.rpc.connections if self.rpc is not None else {}
        for conn in conns:
            if live.get(conn.identity) is conn:
                self._on_register(conn)

    def _model_for(self, key: tuple[str, str]) -> ModelState:
        model = self.models.get(key)
        if model is None:
            rec = self.snapshot.models.get(key)
            model = ModelState(key[0], key[1], self.metrics, rec.batch_size if rec is not None else -1)
            self.models[key] = model
        return model

    # -- RPC callbacks -------------------------------------------------------------------------
    def _on_register(self, conn: ReplicaConnection) -> None:
        key = (conn.model_name, conn.model_version)
        rec = self.snapshot.models.get(key)
        if rec is not None and not rec.valid:
            self.parked.setdefault(key, []).append(conn)
            return
        self.dispatcher.add_replica(conn, self._model_for(key))
        self._put_container(conn, healthy=True)

    def _put_container(self, conn: ReplicaConnection, healthy: bool) -> None:
        self._store_call(
            self.store.put_container,
            ContainerRecord(
                model_name=conn.model_name,
                model_version=conn.model_version,
                replica_id=conn.replica_id,
                input_type=conn.input_type.canonical,
                frontend_id=self.frontend_id,
                zmq_connection_id=conn.conn_id,
                healthy=healthy,
            ),
        )

    def _on_replica_health(self, r: Replica, healthy: bool) -> None:
        """A replica judged hung (or answering again after all): its row says so until it leaves."""
        if not r.removed:
            self._put_container(r.conn, healthy)

    def _on_response(
        self, conn: ReplicaConnection, msg_id: int, outputs: list[bytes], errors: dict[int, str] | None
    ) -> None:
        self.dispatcher.on_response(conn, msg_id, outputs, errors)

    def _on_disconnect(self, conn: ReplicaConnection, reason: str) -> None:
        r = self.dispatcher.by_conn.get(conn)
        if r is not None:
            self.dispatcher.remove_replica(r, reason)
        for conns in self.parked.values():
            if conn in conns:
                conns.remove(conn)

    def _on_replica_removed(self, r: Replica, reason: str) -> None:
        c = r.conn
        self._store_call(self.store.delete_container, c.model_name, c.model_version, c.replica_id)

    # -- HTTP ----------------------------------------------------------------------------------
    def handle(self, req: Request) -> Response | Deferred | Awaitable[Response | Deferred]:
        route = self.table.routes.get(req.path)
        if route is not None:
            if req.method != "POST":
                return _method_not_allowed(req, "POST")
            kind, app = route
            if kind == PREDICT:
                traffic = app.traffic
                if traffic is not None:
                    return self.predict_traffic(app, traffic, req)
                return self.predict(app, req.body)
            return self.update(app, req.body)
        path = req.path
        if path == "/metrics":
            if req.method not in _GET:
                return _method_not_allowed(req, "GET, HEAD")
            fmt = _query_param(req.query, "format")
            if fmt == "prometheus" or (fmt is None and _wants_prometheus(req.headers.get("accept", ""))):
                return Response(200, self.metrics.prometheus_text(), PROMETHEUS_CONTENT_TYPE)
            if fmt not in (None, "json"):
                return _error(400, "Bad Request", f"unknown format {fmt!r}: use json or prometheus")
            return Response(200, self.metrics.to_json())
        if path == "/prometheus":
            if req.method not in _GET:
                return _method_not_allowed(req, "GET, HEAD")
            return Response(200, self.metrics.prometheus_text(), PROMETHEUS_CONTENT_TYPE)
        if path == "/health":
            if req.method not in _GET:
                return _method_not_allowed(req, "GET, HEAD")
            return Response(200, _HEALTH_OK)
        if path == "/openapi.json":
            if req.method not in _GET:
                return _method_not_allowed(req, "GET, HEAD")
            return Response(200, self.openapi())
        return _error(404, _NOT_FOUND_ERROR, f"No route for {req.method} {path}")

    def predict(
        self, app: AppRoute, body: bytes
    ) -> Response | PendingRequest | Coroutine[Any, Any, Response | PendingRequest]:
        try:
            pr = parse_predict(body, app.input_type, self.max_batch_inputs)
        except (JsonParseError, JsonSemanticError) as bad:
            return Response(400, R.error_body("Json error", R.json_error_cause(str(bad))))
        except BatchTooLarge as large:
            return Response(413, R.error_body("Payload Too Large", str(large)))
        if pr.unparsed is not None:
            return self._predict_large(app, pr)
        target = app.target
        if pr.version is not None:
            chosen = self._target(app, pr.version)
            if isinstance(chosen, Response):
                return chosen
            target = chosen
        model = self.models.get(target) if target is not None else None
        return self.processor.predict(app, pr.inputs, pr.batch, model)

    async def _predict_large(self, app: AppRoute, pr: PredictRequest) -> Response | PendingRequest:
        """A batch of more than PARSE_CHUNK inputs: validated and admitted a chunk per loop turn."""
        values = pr.unparsed
        assert values is not None
        inputs: list[bytes] = []
        try:
            for lo in range(0, len(values), PARSE_CHUNK):
                inputs += parse_batch(values[lo : lo + PARSE_CHUNK], app.input_type)
                await asyncio.sleep(0)
        except JsonSemanticError as e:
            return Response(400, R.error_body("Json error", R.json_error_cause(str(e))))
        target = self._target(app, pr.version)
        if isinstance(target, Response):
            return target
        model = self.models.get(target) if target is not None else None
        return await self.processor.predict_chunked(app, inputs, model, PARSE_CHUNK)

    def _target(self, app: AppRoute, version: str | None) -> tuple[str, str] | None | Response:
        """The (model, version) a predict request goes to, or the 400 response saying why none."""
        if version is None:
            return app.target
        links = app.links
        if len(links) > 1:
            return Response(
                400,
                R.error_body("Query processing error", f"Too many models linked to application {app.name}"),
            )
        name = links[0] if links else ""
        if version not in self.table.versions.get(name, ()):
            return Response(
                400,
                R.error_body(
                    "Query processing error",
                    f"Requested version: {version} does not exist for model: {name}",
                ),
            )
        return (name, version)

    def predict_traffic(
        self, app: AppRoute, traffic: AppTraffic, req: Request
    ) -> Response | PendingRequest | Coroutine[Any, Any, Response | PendingRequest]:
        """A predict request of an app with a traffic configuration (see :mod:`.traffic`)."""
        try:
            pr = parse_predict(req.body, app.input_type, self.max_batch_inputs)
        except (JsonParseError, JsonSemanticError) as bad:
            return Response(400, R.error_body("Json error", R.json_error_cause(str(bad))))
        except BatchTooLarge as large:
            return Response(413, R.error_body("Payload Too Large", str(large)))
        if pr.unparsed is not None:
            return self._predict_large(app, pr)  # the first target's, unsplit
        inputs = pr.inputs
        n = len(inputs)
        if pr.version is not None or n == 0:
            name = traffic.keys[0][0]
            version = pr.version
            if version is not None and version not in self.table.versions.get(name, ()):
                return _version_missing(name, version)
            model = self.models.get((name, version)) if version is not None else None
            return self.processor.predict(app, inputs, pr.batch, model)
        p = self.processor
        if traffic.exp4 is not None:
            ens = EnsembleRequest(
                app, n, p.take_query_ids(n), time.perf_counter(), pr.batch, traffic.exp4_weights(), combine
            )
            ens.members = [
                CapturingRequest(app, n, ens.t0, pr.batch, stats, False, ens.member_done)
                for stats in traffic.stats
            ]
            ens.waiting = len(ens.members)
            for member, key in zip(ens.members, traffic.keys, strict=True):
                p.run(member, inputs, self.models.get(key))
            return ens
        sticky = _sticky_value(traffic.sticky_key, req) if traffic.sticky_key is not None else None
        i = traffic.choose(sticky)
        if not traffic.shadow_p or not traffic.shadow_now():
            qid0 = p.next_query_id  # take_query_ids(n), inline: once per request
            p.next_query_id = qid0 + n
            primary = TargetRequest(app, n, qid0, time.perf_counter(), pr.batch, traffic.stats[i])
            return p.run(primary, inputs, self.models.get(traffic.keys[i]), ends_stretch=traffic.ended)
        shadow_stats = traffic.shadow_stats
        assert shadow_stats is not None and traffic.shadow_key is not None  # set with shadow_p
        pair = _ShadowPair(shadow_stats)
        t0 = time.perf_counter()
        qid0 = p.take_query_ids(n)
        primary = CapturingRequest(app, n, t0, pr.batch, traffic.stats[i], True, pair.done, qid0)
        shadow = CapturingRequest(app, n, t0, pr.batch, shadow_stats, False, pair.done, background=True)
        result = p.run(primary, inputs, self.models.get(traffic.keys[i]), ends_stretch=traffic.ended)
        p.run(shadow, inputs, self.models.get(traffic.shadow_key))
        return result

    def _learn(self, app: AppRoute, traffic: AppTraffic, inp: bytes, label: float) -> None:
        """Feedback for a selection policy: query the target(s) with the input, compare with the label,
        update the weights (in the background; the feedback request is answered at once)."""
        p = self.processor
        exp3, exp4 = traffic.exp3, traffic.exp4
        if exp3 is not None:
            i = traffic.choose()

            def learned3(r: CapturingRequest) -> None:
                exp3.feedback(i, 1.0 - loss(r.embedded[0], label))

            probe = CapturingRequest(
                app, 1, time.perf_counter(), False, None, False, learned3, background=True
            )
            p.run(probe, [inp], self.models.get(traffic.keys[i]))
        elif exp4 is not None:
            probes: list[CapturingRequest] = []
            left = [len(traffic.keys)]

            def learned4(_r: CapturingRequest) -> None:
                left[0] -= 1
                if left[0] == 0:
                    exp4.feedback([loss(r.embedded[0], label) for r in probes])

            probes.extend(
                CapturingRequest(app, 1, time.perf_counter(), False, None, False, learned4, background=True)
                for _ in traffic.keys
            )
            for probe, key in zip(probes, traffic.keys, strict=True):
                p.run(probe, [inp], self.models.get(key))

    def update(self, app: AppRoute, body: bytes) -> Response:
        try:
            u = parse_update(body, app.input_type)
        except (JsonParseError, JsonSemanticError) as e:
            return Response(400, R.update_error_text(str(e)).encode(), TEXT)
        traffic = app.traffic
        if traffic is not None and traffic.weights is not None:
            self._learn(app, traffic, u.input, u.label)
        self.processor.take_query_ids(1)
        return Response(200, b"Feedback received? 1" if u.uid == 0 else b"Feedback received? 0", TEXT)

    def openapi(self) -> bytes:
        if self._openapi is None:
            self._openapi = resources.files("clipper.query_frontend").joinpath("openapi.json").read_bytes()
        return self._openapi


class _ShadowPair:
    """Compares a primary request's outputs with its shadow's once both have answered."""

    __slots__ = ("stats", "first")

    def __init__(self, stats: TargetStats) -> None:
        self.stats = stats
        self.first: CapturingRequest | None = None

    def done(self, r: CapturingRequest) -> None:
        first = self.first
        if first is None:
            self.first = r
            return
        compared = agreed = 0
        for a, b in zip(first.embedded, r.embedded, strict=True):
            if a is not None and b is not None:
                compared += 1
                agreed += a == b
        self.stats.compare(compared, agreed)


def _sticky_value(key: str, req: Request) -> str | None:
    """The request's sticky key: a top-level field of its JSON body, else the header of that name."""
    try:
        doc = orjson.loads(req.body)
    except orjson.JSONDecodeError:
        doc = None
    if isinstance(doc, dict) and key in doc:
        v = doc[key]
        return v if isinstance(v, str) else orjson.dumps(v).decode()
    return req.headers.get(key.lower())


def _version_missing(name: str, version: str) -> Response:
    return Response(
        400,
        R.error_body(
            "Query processing error", f"Requested version: {version} does not exist for model: {name}"
        ),
    )


def _wants_prometheus(accept: str) -> bool:
    """A stock Prometheus scrape asks for openmetrics or ``text/plain``; browsers and the admin client
    (``*/*``, ``application/json``) get the original JSON."""
    if not accept or "application/json" in accept:
        return False
    return "openmetrics-text" in accept or accept.lstrip().startswith("text/plain")


def _error(status: int, error: str, cause: str) -> Response:
    return Response(status, R.error_body(error, cause))


def _method_not_allowed(req: Request, allowed: str) -> Response:
    return Response(
        405,
        R.error_body("Method Not Allowed", f"{req.path} accepts {allowed}, not {req.method}"),
        headers=(("Allow", allowed),),
    )


def _query_param(query: str, name: str) -> str | None:
    for part in query.split("&"):
        key, _, value = part.partition("=")
        if key == name:
            return value
    return None
