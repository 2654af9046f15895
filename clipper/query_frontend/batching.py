"""Adaptive batch sizing: an AIMD controller per replica, driven by the latency objective.

The original sized batches with exploration that padded batches with duplicate inputs and a ridge
regression whose ``max_latency`` never decayed. This controller instead:

* never pads: a batch is what is queued when the replica is free, up to the current limit;
* grows the limit additively (+1) after a batch that was *full* (the limit bound it) and whose
  latency fitted the target with headroom;
* shrinks it multiplicatively (x0.7, at least 1) after a batch whose latency exceeded the target;
* caps it at the model's ``batch_size`` when that is > 0 (``-1`` = adaptive, unbounded up to
  :data:`MAX_BATCH`).

The target is ``TARGET_FRACTION`` of the tightest latency objective among the batch's queries: a
query can wait for one batch in flight and then ride in the next, so two batch latencies plus the
HTTP/RPC overhead must fit the objective.
"""

from __future__ import annotations

MAX_BATCH = 1024
TARGET_FRACTION = 0.4
INCREASE = 1.0
DECREASE = 0.7


class BatchSizeController:
    __slots__ = ("limit", "cap", "last_latency")

    def __init__(self, cap: int = -1, initial: int = 1) -> None:
        self.cap = cap
        self.limit = float(initial)
        self.last_latency = 0.0

    def set_cap(self, cap: int) -> None:
        """The model's ``batch_size``: > 0 caps the batch, anything else means adaptive."""
        self.cap = cap

    def size(self) -> int:
        """How many queued queries the next batch may take."""
        n = int(self.limit)
        cap = self.cap if self.cap > 0 else MAX_BATCH
        return max(1, min(n, cap))

    def observe(self, batch_size: int, latency_s: float, slo_s: float) -> None:
        """Feed one completed batch: its size, its round-trip latency, the tightest objective in it."""
        self.last_latency = latency_s
        target = slo_s * TARGET_FRACTION
        if latency_s > target:
            self.limit = max(1.0, self.limit * DECREASE)
        elif batch_size >= int(self.limit):
            cap = self.cap if self.cap > 0 else MAX_BATCH
            self.limit = min(float(cap), self.limit + INCREASE)
