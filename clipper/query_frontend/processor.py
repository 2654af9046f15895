"""Per-query processing: cache -> model queue -> latency-objective timer -> default.

One :class:`PendingRequest` stands for one HTTP predict request with N inputs (N = 1 for
``"input"``). Each input is answered by a cache hit, a model output, or the app's default output;
at the app's objective every input still open gets the default. So every request is answered
exactly once, at the latest when its objective expires, whatever happens to replicas.

Per request there is no task, no future and no timer: the request *is* the HTTP server's
:class:`~clipper.http.server.Deferred`, and requests that share an objective expire in arrival
order, so one timer per objective (:class:`_Expiry`) serves all of them.
"""

from __future__ import annotations

import asyncio
from collections import deque
from time import perf_counter
from typing import TYPE_CHECKING

import orjson

from clipper.http.server import Deferred, Response
from clipper.query_frontend import responses as R
from clipper.query_frontend.queues import Task
from clipper.query_frontend.responses import OK_FORMAT as _OK_FMT

if TYPE_CHECKING:
    from collections.abc import Callable

    from clipper.metrics import MetricsRegistry
    from clipper.query_frontend.cache import PredictionCache
    from clipper.query_frontend.routes import AppRoute
    from clipper.query_frontend.traffic import TargetStats
    from clipper.query_frontend.workers import Dispatcher, ModelState


class PendingRequest(Deferred):
    __slots__ = (
        "app",
        "parts",
        "remaining",
        "defaults",
        "qid0",
        "t0",
        "batch",
        "finished",
        "deadline",
    )
    #: Nobody waits for this request's answer (a shadow, a feedback probe): its tasks may wait longer
    #: for a fuller batch (see ``Dispatcher._send``). Set per request by :class:`CapturingRequest`.
    background = False

    def __init__(self, app: AppRoute, n: int, qid0: int, t0: float, batch: bool) -> None:
        """``t0``: ``time.perf_counter()`` at arrival, for the latency metrics (the loop's clock,
        which deadlines use, has millisecond resolution)."""
        self._conn = self._slot = self._early = None  # Deferred.__init__, inline (once per request)
        self.app = app
        self.parts: list[bytes | None] = [None] * n
        self.remaining = n
        self.defaults = 0
        self.qid0 = qid0
        self.t0 = t0
        self.batch = batch
        self.finished = False
        self.deadline = 0.0  # loop.time() at which the objective expires (set when admitted)

    # -- filling slots -------------------------------------------------------------------------
    def output(self, index: int, embedded: bytes) -> None:
        """A model output (already embedded) for input ``index``; ignored once answered."""
        parts = self.parts
        if self.finished or parts[index] is not None:
            return
        parts[index] = _OK_FMT % (self.qid0 + index, embedded)  # R.ok_body, without the call
        self.remaining -= 1
        if self.remaining == 0:
            self.finish()

    def default(self, index: int, explanation: bytes) -> None:
        parts = self.parts
        if self.finished or parts[index] is not None:
            return
        parts[index] = R.default_body(self.qid0 + index, self.app.default_embedded, explanation)
        self.defaults += 1
        self.remaining -= 1
        if self.remaining == 0:
            self.finish()

    def on_timeout(self) -> None:
        """The objective expired: every open input gets the default with the SLO explanation."""
        if self.finished:
            return
        explanation = R.EXPLANATION_SLO
        app = self.app
        for i, p in enumerate(self.parts):
            if p is None:
                self.parts[i] = R.default_body(self.qid0 + i, app.default_embedded, explanation)
                self.defaults += 1
                app.default_slo.increment(1)
        self.remaining = 0
        self.finish()

    # -- answering -----------------------------------------------------------------------------
    def body(self) -> bytes:
        parts = self.parts
        if not self.batch:
            return parts[0]  # type: ignore[return-value]
        return R.batch_body(parts)  # type: ignore[arg-type]

    def finish(self) -> None:
        self.finished = True
        parts = self.parts
        self.app.record(self, len(parts), int((perf_counter() - self.t0) * 1e6))
        self.resolve(Response(200, R.batch_body(parts) if self.batch else parts[0]))  # type: ignore[arg-type]


class TargetRequest(PendingRequest):
    """A request of an app with a traffic configuration, sent to one of its targets.

    Records the target's statistics when answered. ``respond=False``: an internal request (shadow,
    ensemble member, feedback probe) that answers no client and counts nothing on the app.
    ``on_done`` is called once answered."""

    __slots__ = ("stats", "errors", "respond", "on_done")

    def __init__(
        self,
        app: AppRoute,
        n: int,
        qid0: int,
        t0: float,
        batch: bool,
        stats: TargetStats | None,
        respond: bool = True,
        on_done: Callable[[TargetRequest], None] | None = None,
    ) -> None:
        PendingRequest.__init__(self, app, n, qid0, t0, batch)
        self.stats = stats
        self.errors = 0
        self.respond = respond
        self.on_done = on_done

    def default(self, index: int, explanation: bytes) -> None:
        if not self.finished and self.parts[index] is None and explanation is not R.EXPLANATION_NO_MODELS:
            self.errors += 1  # the dispatcher's defaults: a model error or a malformed batch reply
        PendingRequest.default(self, index, explanation)

    def on_timeout(self) -> None:
        if self.respond:
            PendingRequest.on_timeout(self)
            return
        if self.finished:
            return
        for i, p in enumerate(self.parts):
            if p is None:
                self.parts[i] = b""
                self.defaults += 1
        self.remaining = 0
        self.finish()

    def finish(self) -> None:
        self.finished = True
        n = len(self.parts)
        micros = int((perf_counter() - self.t0) * 1e6)
        if self.stats is not None:
            self.stats.record(n, self.defaults, self.errors, micros)
        if self.respond:
            self.app.record(self, n, micros)
            self.resolve(Response(200, self.body()))
        cb = self.on_done
        if cb is not None:
            self.on_done = None
            cb(self)


class CapturingRequest(TargetRequest):
    """A :class:`TargetRequest` that keeps its embedded outputs (None where the input got the
    default): shadow pairs, ensemble members, feedback probes. (Kept apart so that a plain split
    request pays nothing for it.) ``background``: see :attr:`PendingRequest.background`."""

    __slots__ = ("embedded", "background")

    def __init__(
        self,
        app: AppRoute,
        n: int,
        t0: float,
        batch: bool,
        stats: TargetStats | None,
        respond: bool,
        on_done: Callable[[CapturingRequest], None],
        qid0: int = 0,
        background: bool = False,
    ) -> None:
        TargetRequest.__init__(self, app, n, qid0, t0, batch, stats, respond, on_done)  # type: ignore[arg-type]
        self.embedded: list[bytes | None] = [None] * n
        self.background = background

    def output(self, index: int, embedded: bytes) -> None:
        if not self.finished and self.parts[index] is None:
            self.embedded[index] = embedded
        PendingRequest.output(self, index, embedded)


class EnsembleRequest(PendingRequest):
    """An exp4 request: every target answers (internal :class:`CapturingRequest` members, each bounded
    by the objective), then each input's outputs are combined by ``combine(outputs, weights)``."""

    __slots__ = ("members", "waiting", "weights", "combine")

    def __init__(
        self,
        app: AppRoute,
        n: int,
        qid0: int,
        t0: float,
        batch: bool,
        weights: list[float],
        combine: Callable[[list[bytes | None], list[float]], bytes | None],
    ) -> None:
        PendingRequest.__init__(self, app, n, qid0, t0, batch)
        self.members: list[CapturingRequest] = []
        self.waiting = 0
        self.weights = weights
        self.combine = combine

    def member_done(self, _member: CapturingRequest) -> None:
        self.waiting -= 1
        if self.waiting > 0:
            return
        for i in range(len(self.parts)):
            out = self.combine([m.embedded[i] for m in self.members], self.weights)
            if out is None:
                self.default(i, EXPLANATION_NO_ENSEMBLE)
            else:
                self.output(i, out)


EXPLANATION_NO_ENSEMBLE = orjson.dumps("No model of the ensemble answered")


class _Expiry:
    """The pending requests of one latency objective, in arrival (= deadline) order, and one timer
    armed for the earliest. Answered requests are skipped when they reach the head."""

    __slots__ = ("loop", "queue", "timer")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: deque[PendingRequest] = deque()
        self.timer: asyncio.TimerHandle | None = None

    def add(self, req: PendingRequest) -> None:
        """Track ``req`` until its ``deadline`` (not before any earlier-added request's)."""
        q = self.queue
        while q and q[0].finished:  # keep the queue short when requests finish in order
            q.popleft()
        q.append(req)
        if self.timer is None:
            self.timer = self.loop.call_at(req.deadline, self._fire)

    def _fire(self) -> None:
        self.timer = None
        q = self.queue
        now = self.loop.time()
        while q:
            req = q[0]
            if req.finished:
                q.popleft()
            elif req.deadline <= now:
                q.popleft()
                req.on_timeout()
            else:
                self.timer = self.loop.call_at(req.deadline, self._fire)
                return


class QueryProcessor:
    """Turns a parsed predict request into a Response or a future of one."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        cache: PredictionCache,
        dispatcher: Dispatcher,
        metrics: MetricsRegistry,
    ) -> None:
        self.loop = loop
        self.cache = cache
        self.dispatcher = dispatcher
        self.next_query_id = 0
        # one expiry queue per objective; requests nobody waits for (shadows, feedback probes) have
        # queues of their own: they finish late (lazily batched), and a late head would keep every
        # answered client request behind it in the client queue until it finishes
        self._expiries: dict[float, _Expiry] = {}
        self._background_expiries: dict[float, _Expiry] = {}
        self.cache_lookups = metrics.counter("internal:prediction_cache_lookups")
        self.cache_hit_ratio = metrics.ratio_counter("internal:prediction_cache_hit_ratio")
        self.num_predictions = metrics.counter("internal:aggregate_num_predictions")

    def _hit(self, app: AppRoute, model: ModelState, embedded: bytes, t0: float) -> Response:
        qid = self.next_query_id
        self.next_query_id = qid + 1
        self.num_predictions.increment(1)
        self.cache_lookups.increment(1)
        self.cache_hit_ratio.increment(1, 1)
        model.cache_hit_ratio.increment(1, 1)
        body = R.ok_body(qid, embedded)
        app.record_one(perf_counter() - t0)
        return Response(200, body)

    def take_query_ids(self, n: int) -> int:
        qid = self.next_query_id
        self.next_query_id = qid + n
        return qid

    def predict(
        self, app: AppRoute, inputs: list[bytes], batch: bool, model: ModelState | None
    ) -> Response | PendingRequest:
        n = len(inputs)
        if n == 0:
            return Response(200, R.EMPTY_BATCH)
        t0 = perf_counter()
        missed = False
        if n == 1 and model is not None and not model.purged and self.cache.capacity > 0:
            hit = self.cache.get((model.name, model.version, inputs[0]))
            if hit is not None:  # the cache-hit fast path: no request object at all
                return self._hit(app, model, hit, t0)
            missed = True
        qid = self.next_query_id
        self.next_query_id = qid + n
        return self.run(PendingRequest(app, n, qid, t0, batch), inputs, model, missed)

    def run(
        self,
        req: PendingRequest,
        inputs: list[bytes],
        model: ModelState | None,
        missed: bool = False,
        ends_stretch: bool = False,
    ) -> Response | PendingRequest:
        """Admit ``req`` (made for ``inputs``): answered now (a Response) or later (``req``).
        ``missed``: the cache was just consulted for the single input and has no answer for it.
        ``ends_stretch``: ``req`` is the last of a split's stretch of runs to ``model``
        (``traffic.AppTraffic.ended``): what it queues leaves without a gathering wait."""
        app = req.app
        n = len(inputs)
        if model is None or model.purged:
            self._admit(req, app, model, inputs, 0, n, 0.0)
            return Response(200, req.body())
        # the per-request metrics as plain adds, not increment() calls (see clipper/metrics/types.py)
        self.num_predictions.count += n
        self.cache_lookups.count += n
        slo = app.slo_s
        req.deadline = deadline = self.loop.time() + slo
        if n == 1 and model.replicas and (missed or self.cache.capacity == 0):  # the common case, inline
            model.queue.push(Task(req, 0, inputs[0], deadline, slo))
            queued = 1
        else:
            queued, hits = self._admit(req, app, model, inputs, 0, n, deadline)
            if hits:
                self.cache_hit_ratio.numerator += hits
                model.cache_hit_ratio.numerator += hits
        self.cache_hit_ratio.denominator += n
        model.cache_hit_ratio.denominator += n
        if queued == 0:
            return Response(200, req.body())
        if ends_stretch:
            model.run_ended = True  # nothing more of this stretch is coming: no wait for batch-mates
        expiries = self._background_expiries if req.background else self._expiries
        (expiries.get(slo) or self._expiry(slo, expiries)).add(req)
        if not model.kick_pending:  # once per loop turn, not per request
            self.dispatcher.kick(model)
        return req

    async def predict_chunked(
        self, app: AppRoute, inputs: list[bytes], model: ModelState | None, chunk: int
    ) -> Response | PendingRequest:
        """:meth:`predict` for a large ``input_batch``: inputs are admitted ``chunk`` at a time with
        the event loop free in between, so one request never holds the loop for O(n) work."""
        n = len(inputs)
        req = PendingRequest(app, n, self.take_query_ids(n), perf_counter(), True)
        deadline = 0.0
        if model is not None and not model.purged:
            self.num_predictions.increment(n)
            self.cache_lookups.increment(n)
            req.deadline = deadline = self.loop.time() + app.slo_s
            self._expiry(app.slo_s, self._expiries).add(req)  # now: the queue stays in deadline order
        hits = 0
        for lo in range(0, n, chunk):
            if req.finished:  # e.g. the objective expired meanwhile: every input is answered
                break
            queued, h = self._admit(req, app, model, inputs, lo, min(n, lo + chunk), deadline)
            hits += h
            if queued:
                self.dispatcher.kick(model)  # type: ignore[arg-type]
            await asyncio.sleep(0)
        if model is not None:
            self.cache_hit_ratio.increment(hits, n)
            model.cache_hit_ratio.increment(hits, n)
        return req

    def _admit(
        self,
        req: PendingRequest,
        app: AppRoute,
        model: ModelState | None,
        inputs: list[bytes],
        lo: int,
        hi: int,
        deadline: float,
    ) -> tuple[int, int]:
        """Inputs ``lo:hi`` of ``req``: a cache hit, the model's queue, or the default when no replica
        can answer. Returns (queued, cache hits)."""
        if model is None or model.purged:
            for i in range(lo, hi):
                req.default(i, R.EXPLANATION_NO_MODELS)
            app.default_no_model.increment(hi - lo)
            return 0, 0
        cache = self.cache
        name, version = model.name, model.version
        have_replicas = bool(model.replicas)
        queued = 0
        hits = 0
        queue = model.queue
        use_cache = cache.capacity > 0
        for i in range(lo, hi):
            inp = inputs[i]
            hit = cache.get((name, version, inp)) if use_cache else None
            if hit is not None:
                hits += 1
                req.output(i, hit)
            elif have_replicas:
                queue.push(Task(req, i, inp, deadline, app.slo_s))
                queued += 1
            else:
                req.default(i, R.EXPLANATION_NO_MODELS)
                app.default_no_model.increment(1)
        return queued, hits

    def _expiry(self, slo: float, expiries: dict[float, _Expiry]) -> _Expiry:
        expiry = expiries.get(slo)
        if expiry is None:
            expiry = expiries[slo] = _Expiry(self.loop)
        return expiry
