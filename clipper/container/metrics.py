"""Optional Prometheus metrics of a model container, with the original container's names.

The session thread records each prediction request with plain adds (:meth:`ContainerMetrics.record`);
a collector turns the totals into Prometheus families when scraped. ``prometheus_client``'s own
``Counter``/``Histogram`` take a lock per update and cost a third of the container's Python work per
message (six updates per request), which a model with small batches pays every few predictions.
One thread writes and a scrape only reads, so a scrape may miss the update in flight, never see a
torn value (the same rule as the query frontend's metrics).
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client import REGISTRY, CollectorRegistry, start_http_server
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.samples import Sample

_MS_BUCKETS = (0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
_BUCKET_LABELS = [repr(float(b)) for b in _MS_BUCKETS] + ["+Inf"]  # as prometheus_client writes them


class _LatencyHistogram:
    """Milliseconds in :data:`_MS_BUCKETS` (upper bounds inclusive, as Prometheus's ``le``)."""

    __slots__ = ("name", "doc", "counts", "sum", "created")

    def __init__(self, name: str, doc: str) -> None:
        self.name, self.doc = name, doc
        self.counts = [0] * (len(_MS_BUCKETS) + 1)  # the last: above every bound
        self.sum = 0.0
        self.created = time.time()

    def observe(self, ms: float) -> None:
        self.counts[bisect_left(_MS_BUCKETS, ms)] += 1
        self.sum += ms

    def family(self) -> HistogramMetricFamily:
        counts, total = list(self.counts), self.sum
        cumulative, buckets = 0, []
        for label, n in zip(_BUCKET_LABELS, counts, strict=True):
            cumulative += n
            buckets.append((label, cumulative))
        family = HistogramMetricFamily(self.name, self.doc, buckets=buckets, sum_value=total)
        family.samples.append(Sample(self.name + "_created", {}, self.created))
        return family


class ContainerMetrics:
    """``clipper_mc_pred_total`` counts prediction requests (batches), as the original; the histograms
    are per request, in milliseconds."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.created = time.time()
        self.pred_total = 0
        self.inputs_total = 0
        self.errors_total = 0
        self.recv_time_ms = _LatencyHistogram(
            "clipper_mc_recv_time_ms", "Time waiting in the container's queue"
        )
        self.parse_time_ms = _LatencyHistogram("clipper_mc_parse_time_ms", "Time decoding the inputs")
        self.handle_time_ms = _LatencyHistogram(
            "clipper_mc_handle_time_ms", "Time in the prediction function"
        )
        self.end_to_end_latency_ms = _LatencyHistogram(
            "clipper_mc_end_to_end_latency_ms", "Request received to response sent"
        )
        self.registry.register(_Collector(self))

    def record(self, n: int, recv_ms: float, parse_ms: float, handle_ms: float, end_to_end_ms: float) -> None:
        """One prediction request of ``n`` inputs answered (its outputs may be error outputs)."""
        self.pred_total += 1
        self.inputs_total += n
        self.recv_time_ms.observe(recv_ms)
        self.parse_time_ms.observe(parse_ms)
        self.handle_time_ms.observe(handle_ms)
        self.end_to_end_latency_ms.observe(end_to_end_ms)

    def serve(self, port: int, addr: str = "0.0.0.0") -> None:
        """Expose these metrics and the process-global registry, where ``clipper_admin.metrics``
        (``add_metric`` / ``report_metric`` called inside the model function) records."""
        combined = CollectorRegistry(auto_describe=False)
        combined.register(_Union(self.registry, REGISTRY))
        start_http_server(port, addr=addr, registry=combined)


class _Collector:
    def __init__(self, metrics: ContainerMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        for name, doc, value in (
            ("clipper_mc_pred", "Number of prediction requests served", m.pred_total),
            ("clipper_mc_inputs", "Number of inputs predicted", m.inputs_total),
            ("clipper_mc_errors", "Prediction requests answered with error outputs", m.errors_total),
        ):
            yield CounterMetricFamily(name, doc, value=value, created=m.created)
        for h in (m.recv_time_ms, m.parse_time_ms, m.handle_time_ms, m.end_to_end_latency_ms):
            yield h.family()


class _Union:
    def __init__(self, *registries: CollectorRegistry) -> None:
        self.registries = registries

    def collect(self) -> Iterator[Metric]:
        for registry in self.registries:
            yield from registry.collect()
