"""Per model-version task queues, earliest deadline first.

A task is one input of one request. Tasks whose request is already answered (its latency objective
fired) or whose deadline passed are dropped lazily when popped and by :meth:`TaskQueue.compact`, so
nothing is ever sent for a query nobody waits for and the queue cannot grow without bound.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from clipper.query_frontend.processor import PendingRequest

_seq = itertools.count()


class Task:
    __slots__ = ("request", "index", "input", "deadline", "slo", "attempts")

    def __init__(self, request: PendingRequest, index: int, input: bytes, deadline: float, slo: float):
        self.request = request
        self.index = index
        self.input = input
        self.deadline = deadline  # loop.time() seconds
        self.slo = slo  # seconds
        self.attempts = 0  # batches this task was sent in (a failed one may be retried once)

    @property
    def live(self) -> bool:
        return not self.request.finished


class TaskQueue:
    """Tasks in (deadline, arrival) order.

    Tasks usually arrive in deadline order already: a deadline is the loop's clock at arrival plus
    the application's objective, and a model's queue usually serves applications of one objective.
    While they do, the queue is a FIFO (a deque: append and popleft, no comparisons); the first task
    that arrives with an earlier deadline than the last one's (another objective, a retried task)
    turns it into a min-heap on (deadline, arrival order) until it is empty again. Either way tasks
    leave in the same order.
    """

    __slots__ = ("_fifo", "_last", "_heap")

    def __init__(self) -> None:
        self._fifo: deque[Task] = deque()
        # the deadline of the FIFO's newest task, kept rather than read as self._fifo[-1].deadline:
        # that subscript per push cost the compiled prediction path 1.5 % (bench/micro.py)
        self._last = float("-inf")
        self._heap: list[tuple[float, int, Task]] = []

    def __len__(self) -> int:
        return len(self._fifo) + len(self._heap)

    def push(self, task: Task) -> None:
        if not self._heap:
            if task.deadline >= self._last or not self._fifo:
                self._fifo.append(task)
                self._last = task.deadline
                return
            self._heap = [(t.deadline, next(_seq), t) for t in self._fifo]  # already a heap: sorted
            self._fifo.clear()
        heapq.heappush(self._heap, (task.deadline, next(_seq), task))

    def _tasks(self) -> list[Task]:
        return [e[2] for e in self._heap] if self._heap else list(self._fifo)

    def pop_batch(self, n: int, now: float, min_remaining: float = 0.0) -> list[Task]:
        """Up to ``n`` live tasks in deadline order.

        Answered and expired tasks are discarded. So are tasks with less than ``min_remaining``
        seconds left (the batch cannot come back in time; their requests get the default at their
        objective anyway), so an overloaded model spends its time on queries that can still be
        answered -- except that a batch that would be empty for that reason alone carries the
        latest such task, so the replica keeps being measured and a slow spell does not starve it.
        """
        out: list[Task] = []
        cutoff = now + min_remaining
        probe: Task | None = None
        source: list[tuple[float, int, Task]] | deque[Task] = self._heap or self._fifo
        take: Callable[[], Task] = self._pop_heap if self._heap else self._fifo.popleft
        while source and len(out) < n:
            task = take()
            if task.request.finished or task.deadline <= now:
                continue
            if task.deadline > cutoff:
                out.append(task)
            else:
                probe = task
        if not out and probe is not None:
            out.append(probe)
        return out

    def _pop_heap(self) -> Task:
        return heapq.heappop(self._heap)[2]

    def background_only(self) -> bool:
        """Whether every live task belongs to a background request (nobody waits for its answer)."""
        first = self._heap[0][2] if self._heap else self._fifo[0] if self._fifo else None
        if first is not None and not first.request.background:  # the common case, without a scan
            return False
        return all(t.request.background for t in self._tasks() if not t.request.finished)

    def slack(self, now: float) -> float:
        """Seconds until the earliest deadline in the queue (infinite when empty)."""
        if self._heap:
            return self._heap[0][0] - now
        return self._fifo[0].deadline - now if self._fifo else float("inf")

    def compact(self, now: float) -> int:
        """Drop every expired or answered task; returns how many were dropped."""
        if self._heap:
            heap = self._heap
            keep = [e for e in heap if e[0] > now and not e[2].request.finished]
            dropped = len(heap) - len(keep)
            if dropped:
                heapq.heapify(keep)
                self._heap = keep
            return dropped
        fifo = self._fifo
        live = [t for t in fifo if t.deadline > now and not t.request.finished]
        dropped = len(fifo) - len(live)
        if dropped:
            self._fifo = deque(live)
        return dropped

    def clear(self) -> list[Task]:
        tasks = self._tasks()
        self._heap = []
        self._fifo = deque()
        return tasks
