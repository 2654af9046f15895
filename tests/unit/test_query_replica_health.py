"""The dispatcher reports a replica it suspends as hung unhealthy, and healthy again if it answers."""

from __future__ import annotations

import asyncio

from clipper.datatypes import InputType
from clipper.metrics import MetricsRegistry
from clipper.query_frontend.cache import PredictionCache
from clipper.query_frontend.queues import Task
from clipper.query_frontend.workers import Dispatcher, ModelState


class Conn:
    replica_id = 0
    input_type = InputType.DOUBLES


class Rpc:
    def __init__(self) -> None:
        self.sent: list[int] = []

    def send_batch(self, conn, input_type, inputs) -> int:
        self.sent.append(len(self.sent) + 1)
        return self.sent[-1]


class Request:
    finished = False

    def __init__(self) -> None:
        self.answers: dict[int, bytes] = {}

    def output(self, index: int, embedded: bytes) -> None:
        self.answers[index] = embedded

    def default(self, index: int, explanation: bytes) -> None:
        self.answers[index] = b"default:" + explanation


def test_a_suspended_replica_is_reported_unhealthy_until_it_answers():
    loop = asyncio.new_event_loop()
    try:
        events: list[tuple[int, bool]] = []
        rpc = Rpc()
        metrics = MetricsRegistry()
        d = Dispatcher(
            loop,
            rpc,
            PredictionCache(0),
            metrics,
            batch_timeout=0.05,
            on_replica_health=lambda r, healthy: events.append((r.conn.replica_id, healthy)),
        )
        model = ModelState("m", "1", metrics)
        conn = Conn()
        replica = d.add_replica(conn, model)
        request = Request()
        model.queue.push(Task(request, 0, b"x", loop.time() + 60, 60))
        d.kick(model)
        loop.run_until_complete(asyncio.sleep(0.3))  # sent, then held past the batch timeout
        assert rpc.sent == [1]
        assert replica.suspended and events == [(0, False)]
        d.on_response(conn, 1, [b"1.5"])  # slow, not hung: back in rotation, healthy again
        assert not replica.suspended and events == [(0, False), (0, True)]
        assert request.answers == {0: b"1.5"}
    finally:
        loop.close()
