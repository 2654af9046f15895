"""The dispatcher: a replica it suspends as hung is reported unhealthy, and healthy again if it
answers; background tasks (shadow traffic, feedback probes) wait for fuller batches, client tasks do
not -- unless their version is a small minority beside a busy one (a canary's share)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from clipper.datatypes import InputType
from clipper.metrics import MetricsRegistry
from clipper.query_frontend import workers
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
    background = False

    def __init__(self, waited: float = 0.0) -> None:
        self.answers: dict[int, bytes] = {}
        self.t0 = workers._clock() - waited  # arrival, as the query processor's requests have it

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


class BackgroundRequest(Request):
    background = True


def _dispatcher(loop: asyncio.AbstractEventLoop) -> tuple[Dispatcher, Rpc, ModelState]:
    rpc = Rpc()
    metrics = MetricsRegistry()
    d = Dispatcher(loop, rpc, PredictionCache(0), metrics)
    model = ModelState("m", "1", metrics)
    replica = d.add_replica(Conn(), model)
    replica.controller.limit = 8.0  # batches of up to 8
    return d, rpc, model


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def test_background_tasks_wait_for_a_fuller_batch_and_a_client_task_ends_the_wait(loop, monkeypatch):
    """Shadow traffic and feedback probes (nobody waits for them) are gathered into fuller batches;
    a task a client waits for is sent at once, taking the gathered background tasks along."""
    monkeypatch.setattr(workers, "BACKGROUND_GATHER_S", 30.0)  # no expiry of the wait during the test
    d, rpc, model = _dispatcher(loop)
    deadline = loop.time() + 600
    shadows = [BackgroundRequest(), BackgroundRequest()]
    model.queue.push(Task(shadows[0], 0, b"a", deadline, 600))
    d.kick(model)
    loop.run_until_complete(asyncio.sleep(0.01))
    assert rpc.sent == []  # waiting for more (a client's task would have gone at once)
    model.queue.push(Task(shadows[1], 0, b"b", deadline, 600))
    d.kick(model)
    loop.run_until_complete(asyncio.sleep(0.01))
    assert rpc.sent == [] and len(model.queue) == 2
    before_send = time.perf_counter()
    model.queue.push(Task(Request(), 0, b"c", deadline, 600))
    d.kick(model)
    loop.run_until_complete(asyncio.sleep(0))
    assert rpc.sent == [1] and len(model.queue) == 0  # one batch of three
    # a background request's latency is measured from its batch's departure, not its wait
    assert all(r.t0 >= before_send for r in shadows)


def test_a_background_only_batch_leaves_within_the_background_wait(loop, monkeypatch):
    monkeypatch.setattr(workers, "BACKGROUND_GATHER_S", 0.05)
    d, rpc, model = _dispatcher(loop)
    model.queue.push(Task(BackgroundRequest(), 0, b"a", loop.time() + 60, 60))
    d.kick(model)
    end = loop.time() + 10.0
    while not rpc.sent and loop.time() < end:
        loop.run_until_complete(asyncio.sleep(0.005))
    assert rpc.sent == [1] and len(model.queue) == 0


def test_client_tasks_are_not_held_back_by_the_background_wait(loop):
    d, rpc, model = _dispatcher(loop)
    model.queue.push(Task(Request(), 0, b"a", loop.time() + 60, 60))
    d.kick(model)
    loop.run_until_complete(asyncio.sleep(0))
    assert rpc.sent == [1]  # no latency measured yet: no gathering wait at all


class Clock:
    """The dispatcher's fine clock, moved by hand: rate windows and latencies the test chooses."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _busy_frontend(loop, monkeypatch, traffic: dict[str, tuple[int, int]]):
    """A dispatcher whose versions ``{version: (batches, batch size)}`` answered that traffic in one
    rate window of client queries that had each waited 10 ms; returns it, its rpc and versions."""
    clock = Clock()
    monkeypatch.setattr(workers, "_clock", clock)
    rpc = Rpc()
    metrics = MetricsRegistry()
    d = Dispatcher(loop, rpc, PredictionCache(0), metrics)
    models = {}
    for version in traffic:
        models[version] = m = ModelState("m", version, metrics)
        d.add_replica(Conn(), m).controller.limit = 64.0
    loop.run_until_complete(asyncio.sleep(0))

    def serve(m: ModelState, n: int) -> None:
        for i in range(n):
            m.queue.push(Task(Request(waited=0.010), 0, b"%d" % i, loop.time() + 60, 60))
        d.kick(m)
        loop.run_until_complete(asyncio.sleep(0))
        assert len(m.queue) == 0  # sent at once: nothing measured yet
        d.on_response(m.replicas[0].conn, rpc.sent[-1], [b"1"] * n)

    first = next(iter(models.values()))
    serve(first, 1)  # opens the rate window
    for version, (batches, n) in traffic.items():
        for _ in range(batches):
            serve(models[version], n)
    clock.t += workers.RATE_WINDOW_S
    serve(first, 1)  # closes it
    return d, rpc, models


def test_a_minority_version_beside_a_busy_one_waits_for_a_fuller_batch(loop, monkeypatch):
    """A canary's 10 % would reach its replica in batches of one or two, each a whole message for
    both processes of a busy machine: it waits (about as long as a typical query) for batch-mates."""
    d, rpc, models = _busy_frontend(loop, monkeypatch, {"1": (10, 40), "2": (60, 1)})
    canary = models["2"]
    replica = canary.replicas[0]
    replica.controller.limit = 3.0
    sent = len(rpc.sent)
    canary.queue.push(Task(Request(), 0, b"a", loop.time() + 60, 60))
    d.kick(canary)
    loop.run_until_complete(asyncio.sleep(0))
    assert len(rpc.sent) == sent and replica.gather is not None  # waiting for batch-mates
    for x in (b"b", b"c"):  # the batch limit reached: it leaves at once
        canary.queue.push(Task(Request(), 0, x, loop.time() + 60, 60))
        d.kick(canary)
        loop.run_until_complete(asyncio.sleep(0))
    assert len(rpc.sent) == sent + 1 and len(canary.queue) == 0
    d.on_response(replica.conn, rpc.sent[-1], [b"2"] * 3)
    canary.queue.push(Task(Request(), 0, b"d", loop.time() + 60, 60))
    d.kick(canary)
    started = time.monotonic()
    while len(rpc.sent) == sent + 1 and time.monotonic() < started + 5:
        loop.run_until_complete(asyncio.sleep(0.001))
    # alone, it leaves when the wait ends: what a typical query waits (10 ms), at most the cap
    assert len(rpc.sent) == sent + 2 and len(canary.queue) == 0
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize(
    ("traffic", "why"),
    [
        ({"1": (10, 40)}, "a lone version is no minority of itself (a plain app between bursts)"),
        ({"1": (10, 40), "2": (10, 40)}, "versions sharing the traffic evenly (an A/B test, many apps)"),
        ({"1": (600, 1), "2": (60, 1)}, "a frontend keeping up without batching: every query rides alone"),
        ({"1": (10, 40), "2": (1, 1)}, "a version so rarely queried that nobody would join its batch"),
    ],
)
def test_no_minority_wait_without_a_busy_majority_and_a_minority_worth_waiting_for(
    loop, monkeypatch, traffic, why
):
    d, rpc, models = _busy_frontend(loop, monkeypatch, traffic)
    last = models[list(traffic)[-1]]
    sent = len(rpc.sent)
    last.queue.push(Task(Request(), 0, b"a", loop.time() + 60, 60))
    d.kick(last)
    loop.run_until_complete(asyncio.sleep(0))
    assert len(rpc.sent) == sent + 1, why  # sent at once


def test_the_next_batch_is_sent_before_the_answered_batch_is_completed():
    """A replica's next batch goes out before the answers of its last one are written to their
    clients: the replica (on another core) predicts while the frontend writes responses, instead
    of idling through them (measured: +12 % throughput at 32 connections)."""
    loop = asyncio.new_event_loop()
    try:
        order: list[str] = []

        class LoggedRpc(Rpc):
            def send_batch(self, conn, input_type, inputs) -> int:
                order.append(f"send {len(inputs)}")
                return super().send_batch(conn, input_type, inputs)

        rpc = LoggedRpc()
        metrics = MetricsRegistry()
        d = Dispatcher(loop, rpc, PredictionCache(0), metrics, batch_timeout=5.0)
        model = ModelState("m", "1", metrics)
        conn = Conn()
        d.add_replica(conn, model)

        class Logged(Request):
            def output(self, index: int, embedded: bytes) -> None:
                order.append("answer")
                super().output(index, embedded)

        first = Logged()
        model.queue.push(Task(first, 0, b"x", loop.time() + 60, 60))
        d.kick(model)
        loop.run_until_complete(asyncio.sleep(0.01))
        assert order == ["send 1"]
        waiting = [Logged() for _ in range(2)]  # arrived while the first batch was at the replica
        for r in waiting:
            model.queue.push(Task(r, 0, b"y", loop.time() + 60, 60))
        d.on_response(conn, 1, [b"1"])
        assert order[1].startswith("send ") and order[2:] == ["answer"]
        assert first.answers == {0: b"1"}
    finally:
        loop.close()
