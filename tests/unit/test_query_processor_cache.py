"""The query processor and the prediction cache: a single-input query consults the cache once,
whether it hits or misses, and a miss is queued for the model and cached when it is answered."""

from __future__ import annotations

import asyncio

from clipper.config_store.base import AppRecord
from clipper.datatypes import InputType
from clipper.http.server import Response
from clipper.metrics import MetricsRegistry
from clipper.query_frontend.cache import CacheKey, PredictionCache
from clipper.query_frontend.processor import PendingRequest, QueryProcessor
from clipper.query_frontend.routes import AppRoute
from clipper.query_frontend.workers import Dispatcher, ModelState


class CountingCache(PredictionCache):
    __slots__ = ("gets",)

    def __init__(self, capacity_bytes: int) -> None:
        super().__init__(capacity_bytes)
        self.gets = 0

    def get(self, key: CacheKey) -> bytes | None:
        self.gets += 1
        return super().get(key)


class Conn:
    replica_id = 0
    input_type = InputType.DOUBLES


class Rpc:
    def __init__(self) -> None:
        self.batches: list[list[bytes]] = []

    def send_batch(self, conn, input_type, inputs) -> int:
        self.batches.append(list(inputs))
        return len(self.batches)


def test_a_single_input_consults_the_cache_once_on_a_miss_and_once_on_a_hit() -> None:
    loop = asyncio.new_event_loop()
    try:
        metrics, rpc, cache = MetricsRegistry(), Rpc(), CountingCache(1 << 20)
        dispatcher = Dispatcher(loop, rpc, cache, metrics)
        model = ModelState("m", "1", metrics)
        conn = Conn()
        dispatcher.add_replica(conn, model)
        processor = QueryProcessor(loop, cache, dispatcher, metrics)
        app = AppRoute(AppRecord("a", "doubles", "-1.0", 1_000_000), ("m",), ("m", "1"), metrics)

        miss = processor.predict(app, [b"input"], False, model)
        assert isinstance(miss, PendingRequest) and cache.gets == 1
        loop.run_until_complete(asyncio.sleep(0.05))  # the dispatcher sends the batch
        assert rpc.batches == [[b"input"]]
        dispatcher.on_response(conn, 1, [b"2.5"])  # answered: the output is cached
        assert miss.finished

        hit = processor.predict(app, [b"input"], False, model)
        assert isinstance(hit, Response) and cache.gets == 2
        assert b'"output":2.5' in hit.body
        assert rpc.batches == [[b"input"]]  # the model was not asked again
    finally:
        loop.close()


def test_answered_client_requests_are_not_kept_behind_a_pending_background_request() -> None:
    """A shadow (answered late: lazily batched) has an expiry queue of its own, so the answered
    client requests that arrived after it are released at once, not when it finishes."""
    from clipper.query_frontend.processor import CapturingRequest

    loop = asyncio.new_event_loop()
    try:
        metrics, rpc = MetricsRegistry(), Rpc()
        cache = PredictionCache(0)
        dispatcher = Dispatcher(loop, rpc, cache, metrics)
        model = ModelState("m", "1", metrics)
        dispatcher.add_replica(Conn(), model)
        processor = QueryProcessor(loop, cache, dispatcher, metrics)
        app = AppRoute(AppRecord("a", "doubles", "-1.0", 1_000_000), ("m",), ("m", "1"), metrics)
        shadow = CapturingRequest(app, 1, 0.0, False, None, False, lambda _r: None, background=True)
        processor.run(shadow, [b"s"], model)
        for i in range(50):
            req = processor.run(PendingRequest(app, 1, i, 0.0, False), [b"%d" % i], model)
            assert isinstance(req, PendingRequest)
            req.output(0, b"1.0")  # answered at once
        processor.run(PendingRequest(app, 1, 99, 0.0, False), [b"x"], model)
        (client,) = processor._expiries.values()
        (background,) = processor._background_expiries.values()
        assert len(client.queue) == 1 and list(background.queue) == [shadow]
        shadow.output(0, b"1.0")
        assert shadow.finished
    finally:
        loop.close()
