"""The original's metric types: Counter, RatioCounter, Meter (lazy EWMA ticks), Histogram (reservoir).

Hot-path cost is the point: ``Counter.increment`` is one int add, ``Histogram.insert`` an append or a
count, ``Meter.mark`` two adds and a clock read. None of them lock: the serving plane updates
metrics from one event-loop thread, and readers (``/metrics``, Prometheus scrapes) only read, so a
report may be off by the update in flight, never corrupt.

``Counter.count``, ``RatioCounter.numerator``/``denominator`` and ``Meter.events`` are plain public
ints: code that runs once per request adds to them directly (``c.count += n``), since the method call
would cost several times the add (bench/micro.py's instruction counts); the reported values are the
same (a meter's ticks need a periodic caller then, see :class:`Meter`).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence

#: EWMA tick interval of the original (seconds) and the three load averages (minutes).
TICK_INTERVAL_S = 5.0
_ALPHAS = tuple(1.0 - math.exp(-TICK_INTERVAL_S / 60.0 / m) for m in (1.0, 5.0, 15.0))


class Metric:
    """Base: a name, optional Prometheus naming overrides, a ``report()`` dict of typed values."""

    __slots__ = ("name", "prom_name", "labels")
    category = ""  # JSON category: counters, ratio_counters, meters, histograms

    def __init__(self, name: str, prom_name: str | None = None, labels: dict[str, str] | None = None):
        self.name = name
        self.prom_name = prom_name
        self.labels = dict(labels) if labels else None

    def report(self) -> dict[str, object]:  # pragma: no cover - abstract
        raise NotImplementedError

    def clear(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class Counter(Metric):
    __slots__ = ("count",)
    category = "counters"

    def __init__(
        self,
        name: str,
        initial: int = 0,
        *,
        prom_name: str | None = None,
        labels: dict[str, str] | None = None,
    ) -> None:
        super().__init__(name, prom_name, labels)
        self.count = initial

    def increment(self, n: int = 1) -> None:
        self.count += n

    def decrement(self, n: int = 1) -> None:
        self.count -= n

    def value(self) -> int:
        return self.count

    def report(self) -> dict[str, object]:
        return {"count": self.count}

    def clear(self) -> None:
        self.count = 0


class Gauge(Metric):
    """Not in the original: a level (queue depth, connected replicas). Reported in JSON as a counter.

    ``fn`` makes it lazy: the value is computed only when a report is made, so the hot path pays nothing.
    """

    __slots__ = ("value_", "fn")
    category = "counters"

    def __init__(
        self,
        name: str,
        fn: Callable[[], float] | None = None,
        *,
        prom_name: str | None = None,
        labels: dict[str, str] | None = None,
    ) -> None:
        super().__init__(name, prom_name, labels)
        self.value_: float = 0.0
        self.fn = fn

    def set(self, v: float) -> None:
        self.value_ = v

    def inc(self, n: float = 1) -> None:
        self.value_ += n

    def dec(self, n: float = 1) -> None:
        self.value_ -= n

    def value(self) -> float:
        if self.fn is not None:
            try:
                return self.fn()
            except Exception:  # a reporting callback must never break /metrics
                return math.nan
        return self.value_

    def report(self) -> dict[str, object]:
        return {"count": self.value()}

    def clear(self) -> None:
        self.value_ = 0.0


class RatioCounter(Metric):
    __slots__ = ("numerator", "denominator")
    category = "ratio_counters"

    def __init__(
        self,
        name: str,
        numerator: int = 0,
        denominator: int = 0,
        *,
        prom_name: str | None = None,
        labels: dict[str, str] | None = None,
    ) -> None:
        super().__init__(name, prom_name, labels)
        self.numerator = numerator
        self.denominator = denominator

    def increment(self, num: int, denom: int) -> None:
        self.numerator += num
        self.denominator += denom

    def ratio(self) -> float:
        d = self.denominator
        return self.numerator / d if d else math.nan

    def report(self) -> dict[str, object]:
        return {"ratio": self.ratio()}

    def clear(self) -> None:
        self.numerator = 0
        self.denominator = 0


class Meter(Metric):
    """Events per second: the mean rate since creation/clear and 1/5/15-minute EWMAs.

    Ticks are applied lazily (on ``mark`` and on read), ``floor(elapsed / 5 s)`` of them at once: the
    first consumes the events counted since the previous tick, later ones see 0 (as the original).
    A rate is -1 until its first tick.

    ``events`` (every event ever marked: the Prometheus counter) is a plain public int, like
    ``Counter.count``: code that runs once per request adds to it directly (``m.events += n``), which
    skips ``mark``'s call and clock read -- provided something calls :meth:`tick_if_necessary` at
    least once per tick interval while events arrive (the query frontend's housekeeping does, every
    second), so that each tick still sees the events of its own interval.
    """

    __slots__ = ("events", "_clock", "_start", "_last_tick", "_cleared_events", "_ticked_events", "rates")
    category = "meters"
    unit = "events per second"

    def __init__(
        self,
        name: str,
        clock: Callable[[], float] = time.monotonic,
        *,
        prom_name: str | None = None,
        labels: dict[str, str] | None = None,
    ) -> None:
        super().__init__(name, prom_name, labels)
        self._clock = clock
        self.events = 0  # never cleared
        self._cleared_events = 0  # ``events`` at the last clear (``count`` is counted from there)
        self._ticked_events = 0  # ``events`` at the last tick (later ones are the next tick's)
        self._start = clock()
        self._last_tick = self._start
        self.rates = [-1.0, -1.0, -1.0]

    @property
    def count(self) -> int:
        """Events since creation or clear (for ``rate``)."""
        return self.events - self._cleared_events

    @property
    def total(self) -> int:
        """Events since creation, never cleared (the Prometheus counter)."""
        return self.events

    def mark(self, n: int = 1) -> None:
        self.events += n
        now = self._clock()
        if now - self._last_tick >= TICK_INTERVAL_S:
            self._tick(now)

    def _tick(self, now: float) -> None:
        elapsed = now - self._last_tick
        ticks = int(elapsed // TICK_INTERVAL_S)
        if ticks <= 0:
            return
        self._last_tick = now - (elapsed % TICK_INTERVAL_S)
        # ``mark`` counts its events before checking, so the events that triggered this tick count in it.
        for _ in range(ticks):
            current = (self.events - self._ticked_events) / TICK_INTERVAL_S
            self._ticked_events = self.events
            rates = self.rates
            for i, alpha in enumerate(_ALPHAS):
                rates[i] = current if rates[i] == -1.0 else rates[i] + alpha * (current - rates[i])

    def tick_if_necessary(self) -> None:
        now = self._clock()
        if now - self._last_tick >= TICK_INTERVAL_S:
            self._tick(now)

    def rate(self) -> float:
        elapsed = self._clock() - self._start
        return self.count / elapsed if elapsed > 0 else 0.0

    def rate_1min(self) -> float:
        self.tick_if_necessary()
        return self.rates[0]

    def rate_5min(self) -> float:
        self.tick_if_necessary()
        return self.rates[1]

    def rate_15min(self) -> float:
        self.tick_if_necessary()
        return self.rates[2]

    def report(self) -> dict[str, object]:
        self.tick_if_necessary()
        return {
            "unit": self.unit,
            "rate": self.rate(),
            "rate_1min": self.rates[0],
            "rate_5min": self.rates[1],
            "rate_15min": self.rates[2],
        }

    def clear(self) -> None:
        self._start = self._clock()
        self._last_tick = self._start
        self._cleared_events = self._ticked_events = self.events
        self.rates = [-1.0, -1.0, -1.0]


def percentile(values: Sequence[float], rank: float) -> float:
    """The original's percentile of a sample (sorts a copy), pinned by its tests.

    ``x = 1`` if ``rank <= 1/(n+1)``; ``x = rank*(n+1)`` if ``rank < n/(n+1)``; else ``x = n``;
    result ``s[i] + frac(x) * (s[i+1] - s[i])`` with ``i = floor(x) - 1``.
    """
    if rank < 0 or rank > 1:
        raise ValueError("Percentile rank must be in [0,1]!")
    n = len(values)
    if n <= 0:
        raise ValueError("Percentile snapshot must have length greater than zero!")
    s = sorted(values)
    return _percentile_sorted(s, rank)


def _percentile_sorted(s: Sequence[float], rank: float) -> float:
    n = len(s)
    cond = 1.0 / (n + 1)
    if rank <= cond:
        x = 1.0
    elif rank < n * cond:
        x = rank * (n + 1)
    else:
        x = float(n)
    fl = math.floor(x)
    i = int(fl) - 1
    v = s[i]
    rem = x - fl
    return float(v) if rem == 0 else v + rem * (s[i + 1] - s[i])


#: Values a :attr:`Histogram.pending` list may hold before its appender folds them in (a bound on
#: memory between reads; folding a full list costs about half of inserting its values one by one).
PENDING_MAX = 4096


class Histogram(Metric):
    """A fixed-size uniform sample of all inserted values and its statistics.

    The sample is kept by reservoir sampling with geometric skips (Li's Algorithm L): once the
    reservoir is full, the number of values to pass over before the next one replaces a random slot
    is drawn directly, so a value that does not enter the sample -- nearly all of them, after the
    first few multiples of the size -- costs a count and an add, not a random draw each (Algorithm
    R). The sample is uniform all the same: every value seen is in it with probability size / n.

    A hot path that records once per request may append to :attr:`pending` instead of calling
    :meth:`insert` (a list append, no Python call): every read (:meth:`stats`, the JSON and
    Prometheus reports) first folds the pending values in (:meth:`flush`), so readers never see the
    difference. The appender bounds the list by calling :meth:`flush` once it holds
    :data:`PENDING_MAX` values.
    """

    __slots__ = ("unit", "size", "reservoir", "n", "sum", "_rand", "_w", "_next", "pending", "on_fold")
    category = "histograms"

    def __init__(
        self,
        name: str,
        unit: str = "microseconds",
        reservoir_size: int = 4096,
        *,
        prom_name: str | None = None,
        labels: dict[str, str] | None = None,
    ) -> None:
        super().__init__(name, prom_name, labels)
        if reservoir_size <= 0:
            raise ValueError("reservoir_size must be positive")
        self.unit = unit
        self.size = reservoir_size
        self.reservoir: list[int] = []
        self.n = 0  # values seen since clear
        self.sum = 0  # their sum (Prometheus summary _sum)
        self._rand = random.random
        self._w = 1.0  # Algorithm L's W (drawn when the reservoir has filled)
        self._next = 0  # the (1-based) count of the next value to enter the full sample; 0: not drawn
        # values recorded but not yet in the sample (see the class docstring); the list object is
        # kept for the histogram's life, so an owner may hold on to it (or to its bound ``append``)
        self.pending: list[int] = []
        #: Called with the values of each :meth:`flush`: an owner that keeps statistics of its own
        #: from the same values (e.g. fixed buckets) takes them from here instead of per value.
        self.on_fold: Callable[[list[int]], None] | None = None

    def _draw_next(self) -> None:
        """Algorithm L's step: shrink W, then skip a geometric number of values past the current
        next (past the full reservoir the first time). Draws come from ``1 - random()``, in (0, 1]."""
        rand = self._rand
        if self._next == 0:
            self._next = self.size
        w = self._w * math.exp(math.log(1.0 - rand()) / self.size)
        self._w = w = min(max(w, 1e-300), 1.0 - 1e-16)  # log1p(-w) finite and nonzero
        self._next += int(math.log(1.0 - rand()) / math.log1p(-w)) + 1

    def insert(self, value: int) -> None:
        n = self.n + 1  # this value's count
        if n <= self.size:
            self.reservoir.append(value)
        else:
            if self._next == 0:
                self._draw_next()
            if n == self._next:
                self.reservoir[int(self._rand() * self.size)] = value
                self._draw_next()
        self.n = n
        self.sum += value

    def insert_n(self, value: int, count: int) -> None:
        """``count`` inserts of one ``value`` (a batch's latency, once per query), in one call."""
        self.insert_all([value] * count)

    def insert_all(self, values: Sequence[int]) -> None:
        """:meth:`insert` of each value, in one call (same draws; work only for the values that
        enter the sample)."""
        n = self.n
        size = self.size
        end = n + len(values)
        fill = min(end, size) - n
        if fill > 0:
            self.reservoir.extend(values[:fill])
        if end > size:
            if self._next == 0:
                self._draw_next()
            reservoir = self.reservoir
            rand = self._rand
            while self._next <= end:
                reservoir[int(rand() * size)] = values[self._next - n - 1]
                self._draw_next()
        self.n = end
        self.sum += sum(values)

    def flush(self) -> None:
        """Fold the :attr:`pending` values into the sample."""
        pending = self.pending
        if pending:
            values = pending[:]
            pending.clear()
            self.insert_all(values)
            if self.on_fold is not None:
                self.on_fold(values)

    def stats(self) -> dict[str, float]:
        """size, min, max, mean, std_dev (population), p50, p95, p99 of the reservoir (zeros if empty)."""
        self.flush()
        s = sorted(self.reservoir)
        n = len(s)
        if n == 0:
            return dict.fromkeys(("size", "min", "max", "mean", "std_dev", "p50", "p95", "p99"), 0)
        mean = sum(s) / n
        var = sum((v - mean) ** 2 for v in s) / n if n > 1 else 0.0
        return {
            "size": n,
            "min": s[0],
            "max": s[-1],
            "mean": mean,
            "std_dev": math.sqrt(var),
            "p50": _percentile_sorted(s, 0.5),
            "p95": _percentile_sorted(s, 0.95),
            "p99": _percentile_sorted(s, 0.99),
        }

    def report(self) -> dict[str, object]:
        return {"unit": self.unit, **self.stats()}

    def clear(self) -> None:
        self.reservoir = []
        self.pending.clear()
        self.n = 0
        self.sum = 0
        self._w = 1.0
        self._next = 0
