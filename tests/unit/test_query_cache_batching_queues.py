"""Prediction cache order and bound, AIMD batch sizing, EDF queues."""

from __future__ import annotations

import pytest

from clipper.query_frontend.batching import MAX_BATCH, BatchSizeController
from clipper.query_frontend.cache import _ENTRY_OVERHEAD, PredictionCache
from clipper.query_frontend.queues import Task, TaskQueue


def key(i: int) -> tuple[str, str, bytes]:
    return ("m", "1", bytes([i]))


class TestCache:
    def test_exact_keys_and_first_output_wins(self):
        c = PredictionCache(1000)
        assert c.get(key(1)) is None
        assert c.put(key(1), b"a") and not c.put(key(1), b"b")
        assert c.get(key(1)) == b"a"
        assert c.get(("m", "2", bytes([1]))) is None  # the version is part of the key
        assert c.get(("m", "1", bytes([1, 0]))) is None

    def test_bound_in_bytes_and_lru_order(self):
        per = 2 + _ENTRY_OVERHEAD  # 1 (input) + 1 (output) + the per-entry overhead
        c = PredictionCache(3 * per)
        for i in range(3):
            c.put(key(i), b"x")
        assert c.size == 3 * per
        assert c.get(key(0)) == b"x"  # 0 becomes most recently used
        c.put(key(3), b"y")  # evicts the least recently used: 1
        assert key(1) not in c and key(0) in c and key(2) in c and key(3) in c
        assert c.size <= c.capacity
        for i in range(10, 50):
            c.put(key(i), b"zz")
            assert c.size <= c.capacity

    def test_memory_stays_within_capacity_for_many_small_entries(self):
        """The bound is real memory: a soak of distinct tiny inputs once grew ~7x past it."""
        import os
        import tracemalloc

        capacity = 2_000_000
        c = PredictionCache(capacity)
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            for i in range(50_000):
                c.put(("m", "1", os.urandom(32)), b"%d" % i)
            used = tracemalloc.get_traced_memory()[0] - base
        finally:
            tracemalloc.stop()
        assert c.size <= capacity
        assert used < 1.25 * capacity

    def test_oversized_entries_and_zero_capacity(self):
        c = PredictionCache(4 + _ENTRY_OVERHEAD)
        assert not c.put(key(1), b"12345")
        assert len(c) == 0
        assert not PredictionCache(0).put(key(1), b"1")
        with pytest.raises(ValueError):
            PredictionCache(-1)

    def test_drop_model(self):
        c = PredictionCache(10_000)
        c.put(("m", "1", b"a"), b"1")
        c.put(("m", "2", b"a"), b"1")
        assert c.drop_model("m", "1") == 1
        assert ("m", "2", b"a") in c and c.size == 2 + _ENTRY_OVERHEAD


class TestBatching:
    def test_grows_additively_while_full_batches_fit(self):
        b = BatchSizeController()
        assert b.size() == 1
        for expected in range(2, 6):
            b.observe(b.size(), 0.001, slo_s=0.1)
            assert b.size() == expected

    def test_does_not_grow_on_partial_batches(self):
        b = BatchSizeController(initial=4)
        b.observe(2, 0.001, 0.1)
        assert b.size() == 4

    def test_backs_off_multiplicatively_when_over_target(self):
        b = BatchSizeController(initial=20)
        b.observe(20, 0.09, slo_s=0.1)  # 90 ms > 40% of 100 ms
        assert b.size() == 14
        for _ in range(20):
            b.observe(b.size(), 1.0, 0.1)
        assert b.size() == 1

    def test_model_batch_size_caps(self):
        b = BatchSizeController(cap=3)
        for _ in range(10):
            b.observe(b.size(), 0.0001, 1.0)
        assert b.size() == 3
        b.set_cap(-1)
        for _ in range(5):
            b.observe(b.size(), 0.0001, 1.0)
        assert b.size() == 8
        b = BatchSizeController(initial=10**6)
        assert b.size() == MAX_BATCH

    def test_converges_under_a_linear_latency_model(self):
        """Latency 1 ms + 1 ms/item, objective 100 ms: the limit settles near the 40 ms target."""
        b = BatchSizeController()
        sizes = []
        for _ in range(500):
            n = b.size()
            b.observe(n, 0.001 + 0.001 * n, 0.1)
            sizes.append(n)
        tail = sizes[-100:]
        assert max(tail) <= 40 and min(tail) >= 20


class _Req:
    def __init__(self) -> None:
        self.finished = False


class TestQueue:
    def test_edf_order_and_expiry(self):
        q = TaskQueue()
        reqs = [_Req() for _ in range(4)]
        q.push(Task(reqs[0], 0, b"late", 30.0, 1.0))
        q.push(Task(reqs[1], 0, b"early", 10.0, 1.0))
        q.push(Task(reqs[2], 0, b"expired", 4.0, 1.0))
        q.push(Task(reqs[3], 0, b"answered", 20.0, 1.0))
        reqs[3].finished = True
        batch = q.pop_batch(10, now=5.0)
        assert [t.input for t in batch] == [b"early", b"late"]
        assert len(q) == 0

    def test_tasks_that_cannot_come_back_in_time_are_not_sent(self):
        q = TaskQueue()
        reqs = [_Req() for _ in range(3)]
        q.push(Task(reqs[0], 0, b"too-late", 5.5, 1.0))  # 0.5 s left, batches take 1 s
        q.push(Task(reqs[1], 0, b"in-time", 7.0, 1.0))
        q.push(Task(reqs[2], 0, b"later", 9.0, 1.0))
        assert [t.input for t in q.pop_batch(10, now=5.0, min_remaining=1.0)] == [b"in-time", b"later"]

    def test_a_replica_judged_too_slow_still_gets_one_task(self):
        """Otherwise one slow batch (a cold start) would stop it from ever being measured again."""
        q = TaskQueue()
        reqs = [_Req() for _ in range(2)]
        q.push(Task(reqs[0], 0, b"a", 5.2, 1.0))
        q.push(Task(reqs[1], 0, b"b", 5.4, 1.0))
        assert [t.input for t in q.pop_batch(10, now=5.0, min_remaining=3.0)] == [b"b"]
        assert len(q) == 0

    def test_pop_respects_the_limit_and_ties_keep_arrival_order(self):
        q = TaskQueue()
        r = _Req()
        for i in range(5):
            q.push(Task(r, i, bytes([i]), 10.0, 1.0))
        assert [t.index for t in q.pop_batch(3, 0.0)] == [0, 1, 2]
        assert [t.index for t in q.pop_batch(3, 0.0)] == [3, 4]

    def test_compact_drops_dead_tasks(self):
        q = TaskQueue()
        alive, dead = _Req(), _Req()
        dead.finished = True
        q.push(Task(alive, 0, b"a", 10.0, 1.0))
        q.push(Task(dead, 0, b"d", 10.0, 1.0))
        q.push(Task(alive, 1, b"x", 1.0, 1.0))
        assert q.compact(now=2.0) == 2
        assert len(q) == 1


def test_slack_is_the_time_to_the_earliest_deadline():
    q = TaskQueue()
    assert q.slack(5.0) == float("inf")
    q.push(Task(_Req(), 0, b"a", 9.0, 1.0))
    q.push(Task(_Req(), 0, b"b", 7.0, 1.0))
    assert q.slack(5.0) == 2.0


class TestQueueModes:
    """Tasks in deadline order are kept in a FIFO; one out of order turns the queue into a heap
    until it empties. Either way they leave in (deadline, arrival) order."""

    def test_tasks_in_deadline_order_leave_in_arrival_order(self):
        q = TaskQueue()
        r = _Req()
        for i, d in enumerate((1.0, 2.0, 2.0, 3.0)):
            q.push(Task(r, i, b"", d, 1.0))
        assert q.slack(0.5) == 0.5
        assert [t.index for t in q.pop_batch(10, 0.0)] == [0, 1, 2, 3]

    def test_an_earlier_deadline_goes_ahead_of_the_queue(self):
        q = TaskQueue()
        r = _Req()
        q.push(Task(r, 0, b"", 5.0, 1.0))
        q.push(Task(r, 1, b"", 6.0, 1.0))
        q.push(Task(r, 2, b"", 6.0, 1.0))
        q.push(Task(r, 3, b"", 2.0, 1.0))  # e.g. a retried task, or an app with a tighter objective
        q.push(Task(r, 4, b"", 6.0, 1.0))
        assert q.slack(0.0) == 2.0
        assert [t.index for t in q.pop_batch(2, 0.0)] == [3, 0]
        assert [t.index for t in q.pop_batch(10, 0.0)] == [1, 2, 4]
        # empty again: in-order tasks are queued as before
        q.push(Task(r, 5, b"", 1.0, 1.0))
        q.push(Task(r, 6, b"", 1.5, 1.0))
        assert [t.index for t in q.pop_batch(10, 0.0)] == [5, 6]

    def test_compact_and_clear_in_either_mode(self):
        for deadlines in ((1.0, 5.0, 6.0), (6.0, 5.0, 1.0)):
            q = TaskQueue()
            alive, dead = _Req(), _Req()
            dead.finished = True
            q.push(Task(alive, 0, b"", deadlines[0], 1.0))
            q.push(Task(dead, 1, b"", deadlines[1], 1.0))
            q.push(Task(alive, 2, b"", deadlines[2], 1.0))
            assert q.compact(now=2.0) == 2  # the expired one and the answered one
            assert [t.index for t in q.clear()] == [0 if deadlines[0] > 2.0 else 2]
            assert len(q) == 0 and q.slack(0.0) == float("inf")

    def test_background_only_in_either_mode(self):
        for deadlines in ((1.0, 2.0), (2.0, 1.0)):
            q = TaskQueue()
            bg, fg = _Req(), _Req()
            bg.background, fg.background = True, False  # type: ignore[attr-defined]
            q.push(Task(bg, 0, b"", deadlines[0], 1.0))
            assert q.background_only()
            q.push(Task(fg, 0, b"", deadlines[1], 1.0))
            assert not q.background_only()

    def test_the_same_order_as_a_sorted_reference_under_random_pushes_and_pops(self):
        import random

        rng = random.Random(7)
        q, reference, n = TaskQueue(), [], 0
        r = _Req()
        clock = 0.0
        for _ in range(3000):
            if rng.random() < 0.6:
                clock += rng.random()
                # mostly in order (one objective), sometimes earlier (another one), ties included
                deadline = clock + (10.0 if rng.random() < 0.8 else rng.choice((1.0, 10.0, 3.0)))
                q.push(Task(r, n, b"", deadline, 1.0))
                reference.append((deadline, n))
                n += 1
            else:
                k = rng.randint(1, 5)
                reference.sort()
                want, reference = reference[:k], reference[k:]
                assert [(t.deadline, t.index) for t in q.pop_batch(k, 0.0)] == want
            assert len(q) == len(reference)
