"""Metrics of the serving plane: the original's registry and types, its JSON report, Prometheus text.

Typical use on a hot path: create once, keep the object, update it::

    reg = get_registry()
    lookups = reg.counter("internal:prediction_cache_lookups")
    latency = reg.histogram("app:a:prediction_latency", "microseconds", reservoir_size=4096)
    lookups.increment(1)          # an int add
    latency.insert(812)           # an append or a random index
    latency.pending.append(812)   # or later: folded in on the next read (see Histogram)
    body = reg.to_json()          # GET /metrics (original JSON)
    text = reg.prometheus_text()  # GET /prometheus (content type PROMETHEUS_CONTENT_TYPE)
"""

from clipper.metrics.registry import PROMETHEUS_CONTENT_TYPE, MetricsRegistry, get_registry
from clipper.metrics.types import Counter, Gauge, Histogram, Meter, RatioCounter, percentile

__all__ = [
    "PROMETHEUS_CONTENT_TYPE",
    "Counter",
    "Gauge",
    "Histogram",
    "Meter",
    "MetricsRegistry",
    "RatioCounter",
    "get_registry",
    "percentile",
]
