"""The metrics registry: get-or-create by name, JSON and Prometheus reports of the same metrics.

Unlike the original, names are unique (re-registering returns the existing metric instead of a
duplicate). Creating, removing and reporting take a lock; updating a metric never does.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from prometheus_client import Counter as PCounter
from prometheus_client import Gauge as PGauge
from prometheus_client import Histogram as PHistogram

from clipper.metrics import json_report, prometheus
from clipper.metrics.types import Counter, Gauge, Histogram, Meter, Metric, RatioCounter

M = TypeVar("M", bound=Metric)
N = TypeVar("N", PCounter, PGauge, PHistogram)


class MetricsRegistry:
    def __init__(self, process_metrics: bool = True) -> None:
        self._lock = threading.Lock()
        self._metrics: dict[str, Metric] = {}
        self._native_metrics: dict[str, object] = {}
        self._native_names: set[str] = set()  # families of prom_* metrics; registry ones never shadow them
        self._prom = prometheus.make_collector_registry(
            self.metrics, process=process_metrics, skip=self._native_names
        )

    # -- creation (get-or-create; call once, keep the object, update it on the hot path) ------------
    def _get(self, cls: type[M], name: str, factory: Callable[[], M]) -> M:
        m = self._metrics.get(name)
        if m is None:
            with self._lock:
                m = self._metrics.get(name)
                if m is None:
                    m = factory()
                    self._metrics[name] = m
        if not isinstance(m, cls):
            raise TypeError(f"metric {name!r} exists as a {type(m).__name__}, not a {cls.__name__}")
        return m

    def counter(
        self, name: str, prom_name: str | None = None, labels: dict[str, str] | None = None
    ) -> Counter:
        return self._get(Counter, name, lambda: Counter(name, prom_name=prom_name, labels=labels))

    def ratio_counter(
        self, name: str, prom_name: str | None = None, labels: dict[str, str] | None = None
    ) -> RatioCounter:
        return self._get(RatioCounter, name, lambda: RatioCounter(name, prom_name=prom_name, labels=labels))

    def meter(self, name: str, prom_name: str | None = None, labels: dict[str, str] | None = None) -> Meter:
        return self._get(Meter, name, lambda: Meter(name, prom_name=prom_name, labels=labels))

    def histogram(
        self,
        name: str,
        unit: str = "microseconds",
        reservoir_size: int = 4096,
        prom_name: str | None = None,
        labels: dict[str, str] | None = None,
    ) -> Histogram:
        return self._get(
            Histogram,
            name,
            lambda: Histogram(
                name, unit=unit, reservoir_size=reservoir_size, prom_name=prom_name, labels=labels
            ),
        )

    def gauge(
        self,
        name: str,
        fn: Callable[[], float] | None = None,
        prom_name: str | None = None,
        labels: dict[str, str] | None = None,
    ) -> Gauge:
        return self._get(Gauge, name, lambda: Gauge(name, fn=fn, prom_name=prom_name, labels=labels))

    # -- Prometheus-native series (prometheus_client objects; not in the JSON report) -------------
    def _native(self, kind: type[N], name: str, doc: str, labels: Sequence[str], **kw: Any) -> N:
        key = name.removesuffix("_total") if kind is PCounter else name
        with self._lock:
            obj = self._native_metrics.get(key)
            if obj is None:
                obj = kind(name, doc, labelnames=tuple(labels), registry=self._prom, **kw)
                self._native_metrics[key] = obj
                self._native_names.update(_family_names(key, kind))
        if not isinstance(obj, kind):
            raise TypeError(f"Prometheus metric {name!r} exists as a {type(obj).__name__}")
        return obj

    def prom_counter(self, name: str, doc: str, labels: Sequence[str] = ()) -> PCounter:
        """``prometheus_client.Counter`` (``.labels(...).inc()``); ``_total`` is added when missing."""
        return self._native(PCounter, name, doc, labels)

    def prom_gauge(self, name: str, doc: str, labels: Sequence[str] = ()) -> PGauge:
        return self._native(PGauge, name, doc, labels)

    def prom_histogram(
        self, name: str, doc: str, labels: Sequence[str] = (), buckets: Sequence[float] | None = None
    ) -> PHistogram:
        kw: dict[str, Any] = {"buckets": tuple(buckets)} if buckets is not None else {}
        return self._native(PHistogram, name, doc, labels, **kw)

    # -- removal -------------------------------------------------------------------------------
    def remove(self, name: str) -> bool:
        with self._lock:
            return self._metrics.pop(name, None) is not None

    def remove_prefix(self, prefix: str) -> int:
        """Drop every metric whose name starts with ``prefix`` (e.g. ``model:m:1:`` on purge)."""
        with self._lock:
            doomed = [n for n in self._metrics if n.startswith(prefix)]
            for n in doomed:
                del self._metrics[n]
        return len(doomed)

    # -- reads ---------------------------------------------------------------------------------
    def get(self, name: str) -> Metric | None:
        return self._metrics.get(name)

    def metrics(self) -> list[Metric]:
        with self._lock:
            return list(self._metrics.values())

    def tick_meters(self) -> None:
        """Apply the meters' due EWMA ticks: called at least once per ``TICK_INTERVAL_S`` by a process
        whose hot path counts events with ``Meter.events += n`` (see :class:`~clipper.metrics.types.Meter`)."""
        for m in self.metrics():
            if type(m) is Meter:
                m.tick_if_necessary()

    def clear_all(self) -> None:
        for m in self.metrics():
            m.clear()

    def to_json(self, clear: bool = False) -> bytes:
        """The original ``GET /metrics`` body (see :mod:`clipper.metrics.json_report`)."""
        ms = self.metrics()
        body = json_report.to_json(ms)
        if clear:
            for m in ms:
                m.clear()
        return body

    def report_tree(self) -> dict[str, list[dict[str, dict[str, str]]]]:
        return json_report.report_tree(self.metrics())

    def prometheus_text(self) -> bytes:
        """Prometheus text format 0.0.4 (content type :data:`PROMETHEUS_CONTENT_TYPE`)."""
        return prometheus.exposition(self._prom)


def _family_names(name: str, kind: type[Any]) -> set[str]:
    if kind is PHistogram:
        return {name, name + "_bucket", name + "_count", name + "_sum", name + "_created"}
    return {name, name + "_total", name + "_created"}


PROMETHEUS_CONTENT_TYPE = prometheus.CONTENT_TYPE
_default: MetricsRegistry | None = None
_default_lock = threading.Lock()


def get_registry() -> MetricsRegistry:
    """The process-wide registry (the original's ``MetricsRegistry::get_metrics()``)."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = MetricsRegistry()
    return _default
