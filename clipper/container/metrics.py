"""Optional Prometheus metrics of a model container, with the original container's names."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.metrics_core import Metric

_MS_BUCKETS = (0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)


class ContainerMetrics:
    """``clipper_mc_pred_total`` counts prediction requests (batches), as the original; the histograms
    are per request, in milliseconds."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.pred_total = Counter("clipper_mc_pred", "Number of prediction requests served", registry=r)
        self.inputs_total = Counter("clipper_mc_inputs", "Number of inputs predicted", registry=r)
        self.errors_total = Counter(
            "clipper_mc_errors", "Prediction requests answered with error outputs", registry=r
        )
        self.recv_time_ms = _hist("clipper_mc_recv_time_ms", "Time waiting in the container's queue", r)
        self.parse_time_ms = _hist("clipper_mc_parse_time_ms", "Time decoding the inputs", r)
        self.handle_time_ms = _hist("clipper_mc_handle_time_ms", "Time in the prediction function", r)
        self.end_to_end_latency_ms = _hist(
            "clipper_mc_end_to_end_latency_ms", "Request received to response sent", r
        )

    def serve(self, port: int, addr: str = "0.0.0.0") -> None:
        """Expose these metrics and the process-global registry, where ``clipper_admin.metrics``
        (``add_metric`` / ``report_metric`` called inside the model function) records."""
        combined = CollectorRegistry(auto_describe=False)
        combined.register(_Union(self.registry, REGISTRY))
        start_http_server(port, addr=addr, registry=combined)


class _Union:
    def __init__(self, *registries: CollectorRegistry) -> None:
        self.registries = registries

    def collect(self) -> Iterator[Metric]:
        for registry in self.registries:
            yield from registry.collect()


def _hist(name: str, doc: str, registry: CollectorRegistry) -> Histogram:
    return Histogram(name, doc, buckets=_MS_BUCKETS, registry=registry)
