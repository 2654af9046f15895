"""A split's runs and its batches: when the request that ends a target's stretch of runs is queued
(the next requests go to another target), the target's queue is sent without a gathering wait --
nothing more is coming for it, and each waiting query holds a client."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from clipper.config_store.base import AppRecord, ConfigSnapshot, ModelRecord
from clipper.config_store.traffic import Shadow, Target, TrafficConfig
from clipper.http.server import Request as HttpRequest
from clipper.metrics import MetricsRegistry
from clipper.query_frontend.cache import PredictionCache
from clipper.query_frontend.processor import QueryProcessor
from clipper.query_frontend.queues import Task
from clipper.query_frontend.server import QueryFrontend
from clipper.query_frontend.traffic import ROUTING_RUN
from clipper.query_frontend.workers import Dispatcher, ModelState

from .test_query_replica_health import Conn, Request, Rpc, _busy_frontend

SPLIT = (Target("m", "1", 90), Target("m", "2", 10))


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def _frontend(loop: asyncio.AbstractEventLoop, config: TrafficConfig) -> QueryFrontend:
    """A QueryFrontend wired as ``start`` wires it (no store, no sockets) with app ``s`` routed by
    ``config`` and one replica per version; the loop never runs, so nothing is dispatched."""
    fe = QueryFrontend(store=None, cache_bytes=0)  # type: ignore[arg-type]  # the store is never used
    fe.loop = loop
    fe.apply_snapshot(
        ConfigSnapshot(
            apps={"s": AppRecord("s", "doubles", "-1.0", 1_000_000)},
            models={("m", v): ModelRecord("m", v, "doubles") for v in ("1", "2")},
            links={"s": ("m",)},
            current_versions={"m": "1"},
            traffic={"s": config},
        )
    )
    fe.dispatcher = Dispatcher(loop, Rpc(), fe.cache, fe.metrics)  # type: ignore[arg-type]
    fe.processor = QueryProcessor(loop, fe.cache, fe.dispatcher, fe.metrics)
    for v in ("1", "2"):
        fe.dispatcher.add_replica(Conn(), fe._model_for(("m", v)))  # type: ignore[arg-type]
    return fe


def _predict(fe: QueryFrontend) -> None:
    fe.handle(HttpRequest("POST", "/s/predict", "", {}, b'{"input": [1.0]}', True))


def test_the_request_ending_a_targets_stretch_marks_its_queue_to_leave_at_once(loop):
    fe = _frontend(loop, TrafficConfig(SPLIT))
    models = [fe.models[("m", v)] for v in ("1", "2")]
    picks, marked = [], []
    for _ in range(20 * ROUTING_RUN):
        queued = [len(m.queue) for m in models]
        _predict(fe)
        (target,) = [i for i, m in enumerate(models) if len(m.queue) > queued[i]]
        picks.append(target)
        marked.append([m.run_ended for m in models])
        for m in models:
            m.run_ended = False
    for n in range(len(picks) - 1):
        ends = picks[n + 1] != picks[n]
        assert marked[n] == [ends and picks[n] == i for i in range(2)], n
    assert sum(map(any, marked)) == 4  # two rounds of ten runs: each version's stretch ends twice


def test_keyed_requests_and_shadow_copies_mark_no_queue(loop):
    """A sticky key's choice is no run; a shadow's copies wait as background work (in batches of up to
    a hundred and more: their runs' ends would cut them short)."""
    keyed = _frontend(loop, TrafficConfig(SPLIT, sticky_key="user"))
    for i in range(10 * ROUTING_RUN):
        keyed.handle(HttpRequest("POST", "/s/predict", "", {}, b'{"input": [1.0], "user": "%d"}' % i, True))
    assert not any(m.run_ended for m in keyed.models.values())
    shadowed = _frontend(loop, TrafficConfig((Target("m", "1", 1),), shadow=Shadow("m", "2", 10)))
    for _ in range(20 * ROUTING_RUN):
        _predict(shadowed)
    assert len(shadowed.models[("m", "2")].queue) == 2 * ROUTING_RUN  # mirrored
    assert not any(m.run_ended for m in shadowed.models.values())


def test_a_minority_whose_stretch_ended_leaves_without_waiting_for_batch_mates(loop, monkeypatch):
    d, rpc, models = _busy_frontend(loop, monkeypatch, {"1": (10, 40), "2": (60, 1)})
    canary = models["2"]
    replica = canary.replicas[0]

    def queue(*inputs: bytes, ended: bool = False) -> None:
        for x in inputs:
            canary.queue.push(Task(Request(), 0, x, loop.time() + 60, 60))
        canary.run_ended = ended
        d.kick(canary)
        loop.run_until_complete(asyncio.sleep(0))

    sent = len(rpc.sent)
    queue(b"a")
    assert len(rpc.sent) == sent and replica.gather is not None  # a minority waits for batch-mates
    queue(b"b", ended=True)  # the run's last request: the wait ends
    assert len(rpc.sent) == sent + 1 and len(canary.queue) == 0 and replica.gather is None
    assert not canary.run_ended  # its queue left: the next run's first query waits again
    queue(b"c", b"d", ended=True)  # ended while the replica is busy ...
    assert len(rpc.sent) == sent + 1
    d.on_response(replica.conn, rpc.sent[-1], [b"2"] * 2)
    loop.run_until_complete(asyncio.sleep(0))
    # ... its answer sends the rest at once, with no wait
    assert len(rpc.sent) == sent + 2 and len(canary.queue) == 0 and replica.gather is None
    d.on_response(replica.conn, rpc.sent[-1], [b"2"] * 2)
    queue(b"e")
    assert len(rpc.sent) == sent + 2 and replica.gather is not None


def test_a_stretch_longer_than_the_batch_limit_goes_in_full_batches(loop):
    """Marked or not, a batch takes at most the replica's limit; the rest goes when it is free."""
    rpc = Rpc()
    metrics = MetricsRegistry()
    d = Dispatcher(loop, rpc, PredictionCache(0), metrics)  # type: ignore[arg-type]
    model = ModelState("m", "2", metrics)
    replica = d.add_replica(Conn(), model)  # type: ignore[arg-type]
    replica.controller.limit = 4.0
    for i in range(6):
        model.queue.push(Task(Request(), 0, b"%d" % i, loop.time() + 60, 60))
    model.run_ended = True
    d.kick(model)
    loop.run_until_complete(asyncio.sleep(0))
    assert len(rpc.sent) == 1 and len(model.queue) == 2 and model.run_ended
    d.on_response(replica.conn, rpc.sent[-1], [b"2"] * 4)
    loop.run_until_complete(asyncio.sleep(0))
    assert len(rpc.sent) == 2 and len(model.queue) == 0 and not model.run_ended
