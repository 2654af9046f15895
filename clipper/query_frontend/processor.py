"""Per-query processing (spec §5.2): cache -> model queue -> latency-objective timer -> default.

One :class:`PendingRequest` stands for one HTTP predict request with N inputs (N = 1 for
``"input"``). Each input is answered by a cache hit, a model output, or the app's default output;
one timer at the app's objective answers every input still open with the default. So every request
is answered exactly once, at the latest when its objective expires, whatever happens to replicas.
No task is created per request: the HTTP server gets a plain future resolved from callbacks.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from clipper.http.server import Response
from clipper.query_frontend import responses as R
from clipper.query_frontend.queues import Task

if TYPE_CHECKING:
    from clipper.query_frontend.cache import PredictionCache
    from clipper.query_frontend.routes import AppRoute
    from clipper.query_frontend.workers import Dispatcher, ModelState


class PendingRequest:
    __slots__ = (
        "app",
        "parts",
        "remaining",
        "defaults",
        "qid0",
        "t0",
        "batch",
        "future",
        "timer",
        "finished",
    )

    def __init__(self, app: AppRoute, n: int, qid0: int, t0: float, batch: bool) -> None:
        self.app = app
        self.parts: list[bytes | None] = [None] * n
        self.remaining = n
        self.defaults = 0
        self.qid0 = qid0
        self.t0 = t0
        self.batch = batch
        self.future: asyncio.Future | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.finished = False

    # -- filling slots -------------------------------------------------------------------------
    def output(self, index: int, embedded: bytes) -> None:
        """A model output (already embedded) for input ``index``; ignored once answered."""
        parts = self.parts
        if self.finished or parts[index] is not None:
            return
        parts[index] = R.ok_body(self.qid0 + index, embedded)
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
        self.timer = None
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
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.app.record(self, len(self.parts))
        fut = self.future
        if fut is not None and not fut.done():
            fut.set_result(Response(200, self.body()))


class QueryProcessor:
    """Turns a parsed predict request into a Response or a future of one."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, cache: PredictionCache, dispatcher: Dispatcher, metrics
    ) -> None:
        self.loop = loop
        self.cache = cache
        self.dispatcher = dispatcher
        self.next_query_id = 0
        self.cache_lookups = metrics.counter("internal:prediction_cache_lookups")
        self.cache_hit_ratio = metrics.ratio_counter("internal:prediction_cache_hit_ratio")
        self.num_predictions = metrics.counter("internal:aggregate_num_predictions")

    def take_query_ids(self, n: int) -> int:
        qid = self.next_query_id
        self.next_query_id = qid + n
        return qid

    def predict(
        self, app: AppRoute, inputs: list[bytes], batch: bool, model: ModelState | None
    ) -> Response | asyncio.Future:
        n = len(inputs)
        if n == 0:
            return Response(200, R.EMPTY_BATCH)
        loop = self.loop
        now = loop.time()
        req = PendingRequest(app, n, self.take_query_ids(n), now, batch)
        if model is None or model.purged:
            for i in range(n):
                req.default(i, R.EXPLANATION_NO_MODELS)
            app.default_no_model.increment(n)
            return Response(200, req.body())
        self.num_predictions.increment(n)
        self.cache_lookups.increment(n)
        cache = self.cache
        name, version = model.name, model.version
        have_replicas = bool(model.replicas)
        deadline = now + app.slo_s
        queued = 0
        hits = 0
        queue = model.queue
        use_cache = cache.capacity > 0
        for i, inp in enumerate(inputs):
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
        self.cache_hit_ratio.increment(hits, n)
        model.cache_hit_ratio.increment(hits, n)
        if queued == 0:
            return Response(200, req.body())
        fut = loop.create_future()
        req.future = fut
        req.timer = loop.call_at(deadline, req.on_timeout)
        self.dispatcher.kick(model)
        return fut
