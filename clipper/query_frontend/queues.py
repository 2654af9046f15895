"""Per model-version task queues, earliest deadline first.

A task is one input of one request. Tasks whose request is already answered (its latency objective
fired) or whose deadline passed are dropped lazily when popped and by :meth:`TaskQueue.compact`, so
nothing is ever sent for a query nobody waits for and the heap cannot grow without bound.
"""

from __future__ import annotations

import heapq
import itertools
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
    """A min-heap on (deadline, arrival order)."""

    __slots__ = ("_heap",)

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Task]] = []

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, task: Task) -> None:
        heapq.heappush(self._heap, (task.deadline, next(_seq), task))

    def pop_batch(self, n: int, now: float, min_remaining: float = 0.0) -> list[Task]:
        """Up to ``n`` live tasks in deadline order.

        Answered and expired tasks are discarded. So are tasks with less than ``min_remaining``
        seconds left (the batch cannot come back in time; their requests get the default at their
        objective anyway), so an overloaded model spends its time on queries that can still be
        answered -- except that a batch that would be empty for that reason alone carries the
        latest such task, so the replica keeps being measured and a slow spell does not starve it.
        """
        heap = self._heap
        out: list[Task] = []
        pop = heapq.heappop
        cutoff = now + min_remaining
        probe: Task | None = None
        while heap and len(out) < n:
            deadline, _, task = pop(heap)
            if task.request.finished or deadline <= now:
                continue
            if deadline > cutoff:
                out.append(task)
            else:
                probe = task
        if not out and probe is not None:
            out.append(probe)
        return out

    def background_only(self) -> bool:
        """Whether every live task belongs to a background request (nobody waits for its answer)."""
        heap = self._heap
        if heap and not heap[0][2].request.background:  # the common case, without a scan
            return False
        return all(e[2].request.background for e in heap if not e[2].request.finished)

    def slack(self, now: float) -> float:
        """Seconds until the earliest deadline in the queue (infinite when empty)."""
        heap = self._heap
        return heap[0][0] - now if heap else float("inf")

    def compact(self, now: float) -> int:
        """Drop every expired or answered task; returns how many were dropped."""
        heap = self._heap
        keep = [e for e in heap if e[0] > now and not e[2].request.finished]
        dropped = len(heap) - len(keep)
        if dropped:
            heapq.heapify(keep)
            self._heap = keep
        return dropped

    def clear(self) -> list[Task]:
        tasks = [e[2] for e in self._heap]
        self._heap = []
        return tasks
