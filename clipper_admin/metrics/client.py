"""User-defined metrics, reported from inside a prediction function.

The original published JSON on a Redis unix socket to a side process that owned the Prometheus
metrics (and started ``redis-server`` at import). Here the metrics are ``prometheus_client`` objects
in the process's default registry (``prometheus_client.REGISTRY``), which the model container
exposes with its own metrics; importing this module has no side effect. Custom histogram buckets
are honoured (the original ignored them).
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Sequence
from typing import SupportsFloat

import prometheus_client

from ..exceptions import ClipperException
from .config import DEFAULT_BUCKETS


class Prom_Type(enum.StrEnum):  # noqa: N801 - the original name
    Gauge = "Gauge"
    Counter = "Counter"
    Histogram = "Histogram"
    Summary = "Summary"


_lock = threading.Lock()
metric_pool: dict[str, prometheus_client.metrics.MetricWrapperBase] = {}
registry = prometheus_client.REGISTRY


def add_metric(
    name: str, metric_type: str, description: str, buckets: Sequence[float] = DEFAULT_BUCKETS
) -> None:
    """Create a metric; a second call with the same ``name`` is a no-op, as in the original."""
    types = [t.value for t in Prom_Type]
    if metric_type not in types:
        raise ClipperException(f"Metric type needs to be one of {types}")
    with _lock:
        if name in metric_pool:
            return
        metric: prometheus_client.metrics.MetricWrapperBase
        try:
            if metric_type == "Counter":
                metric = prometheus_client.Counter(name, description, registry=registry)
            elif metric_type == "Gauge":
                metric = prometheus_client.Gauge(name, description, registry=registry)
            elif metric_type == "Histogram":
                metric = prometheus_client.Histogram(name, description, buckets=buckets, registry=registry)
            else:
                metric = prometheus_client.Summary(name, description, registry=registry)
        except ValueError as e:
            raise ClipperException(f"Cannot add metric {name!r}: {e}") from None
        metric_pool[name] = metric


def report_metric(name: str, val: SupportsFloat | str) -> None:
    """Counter: ``inc(val)``; Gauge: ``set(val)``; Histogram and Summary: ``observe(val)``."""
    metric = metric_pool.get(name)
    if metric is None:
        raise ClipperException(
            f"{name} has not been added. Please use clipper_admin.metric.add_metric to add this metric"
        )
    try:
        val = float(val)
    except (TypeError, ValueError):
        raise ClipperException(f"Metric {name} value must be a number, got {val!r}") from None
    if isinstance(metric, prometheus_client.Counter):
        metric.inc(val)
    elif isinstance(metric, prometheus_client.Gauge):
        metric.set(val)
    else:  # the other kinds add_metric makes
        assert isinstance(metric, prometheus_client.Histogram | prometheus_client.Summary)
        metric.observe(val)
