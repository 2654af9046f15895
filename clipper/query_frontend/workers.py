"""Replica workers: pull-based batch dispatch over the replicas of each model version.

There is no thread or task per replica. A replica is *free* or has exactly one batch in flight.
Work is dispatched by callbacks on the event loop:

* :meth:`Dispatcher.kick` (new tasks queued) schedules one dispatch per model per loop iteration, so
  every request parsed in the same iteration can join the same batch;
* a response frees its replica, which at once pulls the next batch (the earliest deadlines first).

Failures:

* a replica that disconnects (``on_disconnect``, ~3 s of silence) leaves the rotation for good;
* a replica that holds a batch longer than ``batch_timeout`` (default 4 s, so it is detected within
  5 s; twice its slowest answered batch once it has been slow before) is *suspended*: out of the
  rotation, but its session stays. If the late answer arrives after all, the replica was slow, not
  hung: its outputs still answer whatever is open, and it rejoins the rotation. A truly dead one is
  removed by the silence check. While suspended it is reported unhealthy (``on_replica_health``:
  the server marks its container row, so ``get_all_containers`` and ``clipper diff`` show it); our
  model containers also exit by themselves once a batch runs past ``CLIPPER_PREDICT_TIMEOUT``, so
  their backend restarts them (:mod:`clipper.container.runtime`);
* either way, the live tasks of the failed batch go back to the queue and are retried (once) by
  another replica while their deadlines allow; the others are answered by their requests' objective
  timers;
* a response for an unknown msg_id, or from a replica no longer in rotation, is ignored;
* a response whose output count differs from the batch size answers that batch with defaults;
* an input the container reports in its error frame (never an output's bytes) becomes a default
  whose explanation is the reported reason;
* every callback body is guarded: an exception is logged and never stops dispatching.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import orjson

from clipper.query_frontend.batching import BatchSizeController
from clipper.query_frontend.cache import PredictionCache
from clipper.query_frontend.queues import Task, TaskQueue
from clipper.query_frontend.responses import embed_output

if TYPE_CHECKING:
    from clipper.metrics import MetricsRegistry
    from clipper.rpc.server import ReplicaConnection, RpcServer

log = logging.getLogger(__name__)

# Batch latencies drive batch sizing, so they are taken with a fine clock: uvloop's loop.time() is
# libuv's cached millisecond clock (fine for deadlines and timers, too coarse for a 2 ms batch).
_clock = time.perf_counter

DEFAULT_BATCH_TIMEOUT_S = 4.0
GATHER_FRACTION = 0.25  # delayed batching: wait up to this share of the last batch latency
MIN_GATHER_S = 0.0002  # below this a wait costs more loop work than it gathers
# A queue of background tasks only (shadow traffic, feedback probes: nobody waits for their answers)
# waits longer for a fuller batch: up to this long, and at most this share of its head task's slack.
BACKGROUND_GATHER_S = 0.02
BACKGROUND_SLACK_FRACTION = 0.25
# A *minority* version (under MINORITY_SHARE of the busiest version's client queries: a canary's or
# an A/B split's small share) on a busy frontend (a typical client query rides in a batch of at
# least BUSY_BATCH) waits for a fuller batch as long as a typical query's oldest batch-mate waits
# for its answer -- at most MINORITY_GATHER_S and a share of its head task's slack, and only when
# its own rate promises at least one more query meanwhile.
MINORITY_SHARE = 0.25
BUSY_BATCH = 4.0
MINORITY_GATHER_S = 0.005
TYPICAL_DECAY = 0.99  # the typical query's batch size and latency: sums decayed per batch
RATE_WINDOW_S = 0.25  # versions' query rates: counted over windows of this length
MAX_ATTEMPTS = 2  # a task of a failed batch is retried once, on another replica
# Small outputs repeat (labels, scores): their embedded JSON form is memoized (bounded).
_MEMO_MAX_OUTPUT = 64
_MEMO_ENTRIES = 4096


class ModelState:
    """One model version served by this frontend: its queue, replicas and metrics."""

    def __init__(self, name: str, version: str, metrics: MetricsRegistry, cap: int = -1) -> None:
        self.name = name
        self.version = version
        self.queue = TaskQueue()
        self.replicas: list[Replica] = []
        self.cap = cap
        self.purged = False
        self.kick_pending = False
        # A split just ended this version's stretch of runs (QueryProcessor.run's ends_stretch):
        # its queued tasks are all that is coming for a while, so they go without a gathering wait.
        self.run_ended = False
        self.rotation = 0
        self.window_tasks = 0  # client queries answered in the dispatcher's current rate window
        self.rate = 0.0  # client queries per second in the last complete window
        p = f"model:{name}:{version}:"
        self.metrics_prefix = p
        self.latency = metrics.histogram(p + "prediction_latency", "microseconds", 4096)
        self.throughput = metrics.meter(p + "prediction_throughput")
        self.num_predictions = metrics.counter(p + "num_predictions")
        self.cache_hit_ratio = metrics.ratio_counter(p + "cache_hit_ratio")
        self.batch_size = metrics.histogram(p + "batch_size", "queries", 4096)
        self.queue_depth = metrics.gauge(p + "queue_depth", fn=lambda: float(len(self.queue)))
        self.retries = metrics.counter(p + "retried_tasks")
        self.replica_failures = metrics.counter(p + "replica_failures")

    def set_cap(self, cap: int) -> None:
        self.cap = cap
        for r in self.replicas:
            r.controller.set_cap(cap)


class Replica:
    __slots__ = (
        "conn",
        "model",
        "controller",
        "msg_id",
        "batch",
        "sent_at",
        "hang_at",
        "removed",
        "suspended",
        "slowest",
        "gather",
        "gather_background",
    )

    def __init__(self, conn: ReplicaConnection, model: ModelState) -> None:
        self.conn = conn
        self.model = model
        self.controller = BatchSizeController(cap=model.cap)
        self.msg_id: int | None = None
        self.batch: list[Task] = []
        self.sent_at = 0.0
        self.hang_at = 0.0  # loop.time() after which the batch in flight counts as hung
        self.removed = False
        self.suspended = False  # held a batch too long: out of rotation until it answers
        self.slowest = 0.0  # slowest answered batch, seconds
        self.gather: asyncio.TimerHandle | None = None  # a short wait for a fuller batch
        self.gather_background = False  # that wait is a background queue's longer one


class Dispatcher:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        rpc: RpcServer,
        cache: PredictionCache,
        metrics: MetricsRegistry,
        *,
        batch_timeout: float = DEFAULT_BATCH_TIMEOUT_S,
        on_replica_removed: Callable[[Replica, str], None] | None = None,
        on_replica_health: Callable[[Replica, bool], None] | None = None,
    ) -> None:
        self.loop = loop
        self.rpc = rpc
        self.cache = cache
        self.batch_timeout = batch_timeout
        self.on_replica_removed = on_replica_removed
        self.on_replica_health = on_replica_health
        self.inflight: dict[int, Replica] = {}
        self.by_conn: dict[object, Replica] = {}
        self.throughput = metrics.meter("internal:aggregate_model_throughput")
        self.ignored_responses = metrics.counter("internal:ignored_responses")
        self._embedded: dict[bytes, bytes] = {}
        # One timer looks for hung batches while any is in flight (not a timer per batch).
        self._hang_check: asyncio.TimerHandle | None = None
        self._hang_check_interval = min(0.25, batch_timeout / 4)
        # What a typical client query sees, over recent batches weighted by their size (decayed
        # sums): the size of the batch it rides in, and the latency of that batch's oldest query.
        self._tasks = 0.0
        self._tasks_batch = 0.0
        self._tasks_latency = 0.0
        # Client query rates per version, counted over windows of RATE_WINDOW_S.
        self._window_start = 0.0
        self._window_models: list[ModelState] = []  # answered a client query in the current window
        self._rated_models: list[ModelState] = []  # a rate > 0 from the last window
        self._busiest_rate = 0.0

    # -- replicas ------------------------------------------------------------------------------
    def add_replica(self, conn: ReplicaConnection, model: ModelState) -> Replica:
        r = Replica(conn, model)
        model.replicas.append(r)
        self.by_conn[conn] = r
        self.kick(model)
        return r

    def remove_replica(self, r: Replica, reason: str) -> None:
        """Take a replica out of rotation; retry its in-flight batch elsewhere when deadlines allow."""
        if r.removed:
            return
        r.removed = True
        model = r.model
        try:
            model.replicas.remove(r)
        except ValueError:
            pass
        self.by_conn.pop(r.conn, None)
        if r.msg_id is not None:
            self.inflight.pop(r.msg_id, None)
            if not r.suspended:  # a suspended replica's batch was requeued already
                self._requeue(model, r.batch)
            r.batch = []
            r.msg_id = None
        if reason != "purged":
            model.replica_failures.increment(1)
        if self.on_replica_removed is not None:
            try:
                self.on_replica_removed(r, reason)
            except Exception:
                log.exception("on_replica_removed failed")
        if model.queue and model.replicas:
            self.kick(model)

    def _requeue(self, model: ModelState, batch: list[Task]) -> None:
        """Retry the live tasks of a failed batch on another replica (once at most: a poison input
        must not take every replica down in turn)."""
        now = self.loop.time()
        retried = 0
        for t in batch:
            if t.attempts < MAX_ATTEMPTS and t.deadline > now and not t.request.finished and not model.purged:
                model.queue.push(t)
                retried += 1
        model.retries.increment(retried)

    # -- dispatch ------------------------------------------------------------------------------
    def kick(self, model: ModelState) -> None:
        if not model.kick_pending:
            model.kick_pending = True
            self.loop.call_soon(self._dispatch_model, model)

    def _dispatch_model(self, model: ModelState) -> None:
        model.kick_pending = False
        replicas = model.replicas
        n = len(replicas)
        if not n or not model.queue:
            return
        start = model.rotation % n
        model.rotation += 1
        queued = len(model.queue)
        for k in range(n):
            r = replicas[(start + k) % n]
            if r.msg_id is None:
                if r.gather is None:
                    self._send(r)
                elif queued >= r.controller.size() or model.run_ended:  # gathered all there is
                    self._send_now(r)
                elif r.gather_background and not model.queue.background_only():
                    self._send_now(r)  # a client now waits: no background-length wait
                if not model.queue:
                    break

    def _send(self, r: Replica) -> None:
        """Send the free replica its next batch -- after a short gathering wait when that pays.

        Delayed batching (the Clipper paper's, Triton's ``max_queue_delay``): when fewer tasks are
        queued than the replica's batch limit, the replica waits up to :data:`GATHER_FRACTION` of its
        last batch latency (never eating into the head task's slack) for more to arrive. Under a
        closed loop of clients this turns alternating half batches into full ones: a model with a
        high fixed cost per call serves about twice the queries at a lower latency.

        A queue holding only background tasks (shadow traffic, feedback probes) waits longer, up to
        :data:`BACKGROUND_GATHER_S`: nobody waits for those answers, and a mirrored 10 % of the
        traffic would otherwise reach its replica in batches of one or two, each costing the frontend
        and the replica a whole message. A client's task arriving meanwhile ends that wait.

        A *minority* version -- under a quarter of the busiest version's queries, such as a canary's
        10 % beside its stable version, on a frontend busy enough that a typical query rides in a
        batch of four or more -- waits up to the latency a typical query's oldest batch-mate already
        sees (see :meth:`_minority_wait`). Its queries then take about as long as everyone else's,
        and the busy machine is spared most of its one-query messages. No setting to tune: an idle
        frontend, versions that share the traffic about evenly, and a version too rarely queried for
        anyone to arrive during the wait never wait this way.

        No queue waits once a split's run of requests to its version has ended the version's stretch
        (``model.run_ended``, set by ``QueryProcessor.run`` from ``traffic.AppTraffic.ended``): the rest
        of the traffic goes elsewhere for a while, so the wait would gather nobody.
        """
        model = r.model
        queue = model.queue
        if r.gather is None and len(queue) < r.controller.size() and not model.run_ended:
            last = r.controller.last_latency
            wait = last * GATHER_FRACTION
            background = queue.background_only()
            minority = 0.0 if background else self._minority_wait(model)
            if background or minority or wait >= MIN_GATHER_S:  # else no wait: the slack is not needed
                slack = queue.slack(self.loop.time())
                if background:
                    wait = max(wait, min(BACKGROUND_GATHER_S, slack * BACKGROUND_SLACK_FRACTION))
                elif minority:
                    wait = max(wait, min(minority, slack * BACKGROUND_SLACK_FRACTION))
                if wait >= MIN_GATHER_S and slack > 2 * last + wait:
                    r.gather = self.loop.call_later(wait, self._gathered, r)
                    r.gather_background = background
                    return
        self._send_now(r)

    def _minority_wait(self, model: ModelState) -> float:
        """How long ``model``'s queue may wait as a minority version (0.0: it is not one, the
        frontend is not busy, or nobody would arrive meanwhile).

        Minority is judged by traffic share, not by batch size: the wait grows the batches it
        judges by, and would switch itself off."""
        rate = model.rate
        tasks = self._tasks
        if not tasks or rate >= self._busiest_rate * MINORITY_SHARE or self._tasks_batch < BUSY_BATCH * tasks:
            return 0.0
        wait = min(MINORITY_GATHER_S, self._tasks_latency / tasks)
        return wait if rate * wait >= 1.0 else 0.0

    def _observe_typical(self, model: ModelState, n: int, oldest_latency: float, now: float) -> None:
        """Feed one answered client batch into the typical query (a batch weighs its size: a
        query's view, not a batch's) and into its version's query count."""
        d = TYPICAL_DECAY
        self._tasks = self._tasks * d + n
        self._tasks_batch = self._tasks_batch * d + n * n
        self._tasks_latency = self._tasks_latency * d + n * oldest_latency
        if not model.window_tasks:
            self._window_models.append(model)
        model.window_tasks += n
        if now - self._window_start >= RATE_WINDOW_S:
            self._roll_rate_window(now)

    def _roll_rate_window(self, now: float) -> None:
        """Close the rate window: each version's rate is its count over the window just closed."""
        elapsed = now - self._window_start
        for m in self._rated_models:
            m.rate = 0.0
        busiest = 0.0
        for m in self._window_models:
            m.rate = m.window_tasks / elapsed
            m.window_tasks = 0
            busiest = max(busiest, m.rate)
        self._busiest_rate = busiest
        self._rated_models, self._window_models = self._window_models, []
        self._window_start = now

    def _gathered(self, r: Replica) -> None:
        r.gather = None
        if r.removed or r.suspended or r.msg_id is not None:
            return
        self._send_now(r)

    def _send_now(self, r: Replica) -> None:
        model = r.model
        if r.gather is not None:
            r.gather.cancel()
            r.gather = None
        try:
            now = self.loop.time()
            # a task that cannot come back before its deadline (judged by this replica's last batch
            # latency) is not worth the model's time
            batch = model.queue.pop_batch(r.controller.size(), now, r.controller.last_latency)
            if not model.queue:
                model.run_ended = False
            if not batch:
                return
            sent_at = _clock()
            for t in batch:
                t.attempts += 1
                if t.request.background:  # its latency excludes the lazy batching's wait
                    t.request.t0 = sent_at
            msg_id = self.rpc.send_batch(r.conn, r.conn.input_type, [t.input for t in batch])
            r.msg_id = msg_id
            r.batch = batch
            r.sent_at = sent_at
            self.inflight[msg_id] = r
            # A replica known to be slow (it answered late before) gets twice its slowest batch.
            r.hang_at = now + max(self.batch_timeout, 2.0 * r.slowest)
            if self._hang_check is None:
                self._hang_check = self.loop.call_later(self._hang_check_interval, self._check_hung)
        except Exception:
            log.exception("dispatch to %s:%s failed", model.name, model.version)

    def _check_hung(self) -> None:
        """Suspend the replicas whose batch in flight is past its allowance; again while any is in flight."""
        self._hang_check = None
        now = self.loop.time()
        for msg_id, r in list(self.inflight.items()):
            if not r.suspended and r.hang_at <= now:
                self._on_hung(r, msg_id)
        if self.inflight:
            self._hang_check = self.loop.call_later(self._hang_check_interval, self._check_hung)

    def _on_hung(self, r: Replica, msg_id: int) -> None:
        if r.removed or r.msg_id != msg_id:
            return
        model = r.model
        log.warning(
            "replica %d of %s:%s has held a batch for %.1f s: suspended from rotation",
            r.conn.replica_id,
            model.name,
            model.version,
            _clock() - r.sent_at,
        )
        try:
            r.suspended = True
            try:
                model.replicas.remove(r)
            except ValueError:
                pass
            model.replica_failures.increment(1)
            self._requeue(model, r.batch)
            if model.queue and model.replicas:
                self.kick(model)
        except Exception:
            log.exception("suspending a hung replica failed")
        self._report_health(r, False)

    def _report_health(self, r: Replica, healthy: bool) -> None:
        if self.on_replica_health is not None:
            try:
                self.on_replica_health(r, healthy)
            except Exception:
                log.exception("on_replica_health failed")

    # -- responses -----------------------------------------------------------------------------
    def on_response(
        self, conn: ReplicaConnection, msg_id: int, outputs: list[bytes], errors: dict[int, str] | None = None
    ) -> None:
        r = self.inflight.get(msg_id)
        if r is None or r.conn is not conn:
            self.ignored_responses.increment(1)
            return
        del self.inflight[msg_id]
        batch = r.batch
        r.batch = []
        r.msg_id = None
        model = r.model
        if r.suspended:
            # Slow, not hung: back into the rotation, with a hang allowance that fits it.
            r.suspended = False
            r.slowest = max(r.slowest, _clock() - r.sent_at)
            if not r.removed and not model.purged:
                model.replicas.append(r)
                log.info(
                    "replica %d of %s:%s answered late: back in rotation",
                    r.conn.replica_id,
                    model.name,
                    model.version,
                )
                self._report_health(r, True)
        try:
            self._record(r, model, batch)
        except Exception:
            log.exception("recording a response of %s:%s failed", model.name, model.version)
        # The next batch goes out before this one's answers are written: the replica predicts while
        # the frontend writes responses instead of idling through them (+12 % at 32 connections).
        # The batch holds the same queries either way: nothing new is read until this returns.
        if model.queue and not r.removed and not r.suspended:
            self._send(r)
        try:
            self._complete(model, batch, outputs, errors)
        except Exception:
            log.exception("handling a response of %s:%s failed", model.name, model.version)

    def _record(self, r: Replica, model: ModelState, batch: list[Task]) -> None:
        n = len(batch)
        now = _clock()
        latency = now - r.sent_at
        r.controller.observe(n, latency, min(t.slo for t in batch))
        oldest = batch[0].request  # the earliest deadline: the longest wait of its objective's queries
        if not oldest.background:
            self._observe_typical(model, n, now - oldest.t0, now)
        self.throughput.events += n  # meters ticked by the frontend's housekeeping
        model.throughput.events += n
        model.num_predictions.count += n
        model.batch_size.insert(n)
        model.latency.insert_n(int(latency * 1e6), n)

    def _complete(
        self,
        model: ModelState,
        batch: list[Task],
        outputs: list[bytes],
        errors: dict[int, str] | None = None,
    ) -> None:
        n = len(batch)
        if len(outputs) != n:
            text = orjson.dumps(
                f"Model {model.name}:{model.version} returned {len(outputs)} outputs for a batch of {n} inputs"
            )
            log.warning(
                "output count mismatch from %s:%s: %d for %d", model.name, model.version, len(outputs), n
            )
            for t in batch:
                t.request.default(t.index, text)
            return
        cache = self.cache
        use_cache = cache.capacity > 0
        name, version = model.name, model.version
        memo = self._embedded
        for i, (t, out) in enumerate(zip(batch, outputs, strict=True)):
            if errors and i in errors:
                t.request.default(t.index, orjson.dumps(errors[i]))
                continue
            embedded = memo.get(out)
            if embedded is None:
                embedded = embed_output(out)
                if len(out) <= _MEMO_MAX_OUTPUT:
                    if len(memo) >= _MEMO_ENTRIES:
                        memo.clear()
                    memo[out] = embedded
            if use_cache:
                cache.put((name, version, t.input), embedded)
            t.request.output(t.index, embedded)
