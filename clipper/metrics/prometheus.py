"""Prometheus text exposition of a :class:`~clipper.metrics.registry.MetricsRegistry`.

Names follow the original's ``<scope>:<...>:<metric>`` convention and become labels:

=====================================  ==============================================================
registry name                          Prometheus family and labels
=====================================  ==============================================================
``internal:<m>``                       ``clipper_<m>``
``app:<app>:<m>``                      ``clipper_app_<m>{app="<app>"}``
``model:<name>:<version>:<m>``         ``clipper_model_<m>{model="<name>",version="<version>"}``
anything else                          ``clipper_<name with invalid characters as _>``
=====================================  ==============================================================

``prom_name=`` / ``labels=`` given at creation override this; a family name that a
prometheus_client-native metric (``registry.prom_counter`` ...) owns is never emitted from here. Types: Counter -> counter (``_total``);
Gauge -> gauge; RatioCounter -> gauge ``<f>`` (the ratio) plus counters ``<f>_numerator_total`` and
``<f>_denominator_total``; Meter -> counter ``<f>_total`` (events) plus gauge ``<f>_rate{window=...}``;
Histogram -> summary ``<f>_<unit>`` with the reservoir's 0.5/0.95/0.99 quantiles, ``_count``, ``_sum``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Set
from typing import TypeVar

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    SummaryMetricFamily,
)
from prometheus_client.core import (
    Metric as PromMetric,
)
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from clipper.metrics.types import Counter, Gauge, Histogram, Meter, Metric, RatioCounter

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_INVALID = re.compile(r"[^a-zA-Z0-9_]")


def _sanitize(s: str) -> str:
    s = _INVALID.sub("_", s)
    return s if not s[:1].isdigit() else "_" + s


def _doc(m: Metric) -> str:
    """The registry-name pattern of a family, e.g. ``app:<app>:prediction_latency``."""
    if m.prom_name:
        return f"{m.prom_name} ({m.category})"
    parts = m.name.split(":")
    if parts[0] == "app" and len(parts) >= 3:
        return ":".join(["app", "<app>", *parts[2:]])
    if parts[0] == "model" and len(parts) >= 4:
        return ":".join(["model", "<name>", "<version>", *parts[3:]])
    return m.name


def prom_identity(m: Metric) -> tuple[str, dict[str, str]]:
    """The family name and labels of a registry metric (see the module table)."""
    labels: dict[str, str]
    if m.prom_name:
        return _sanitize(m.prom_name), dict(m.labels or {})
    parts = m.name.split(":")
    if parts[0] == "internal" and len(parts) >= 2:
        family, labels = "clipper_" + "_".join(parts[1:]), {}
    elif parts[0] == "app" and len(parts) >= 3:
        family, labels = "clipper_app_" + "_".join(parts[2:]), {"app": parts[1]}
    elif parts[0] == "model" and len(parts) >= 4:
        family = "clipper_model_" + "_".join(parts[3:])
        labels = {"model": parts[1], "version": parts[2]}
    else:
        family, labels = "clipper_" + m.name, {}
    if m.labels:
        labels.update(m.labels)
    return _sanitize(family), labels


_Family = TypeVar("_Family", CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily)


class _Families:
    """Groups samples of metrics that share a family name (different label values)."""

    def __init__(self) -> None:
        self._fams: dict[tuple[type[PromMetric], str], PromMetric] = {}

    def get(self, kind: type[_Family], name: str, doc: str, labelnames: Iterable[str]) -> _Family:
        key = (kind, name)
        fam = self._fams.get(key)
        if fam is None:
            fam = kind(name, doc, labels=list(labelnames))
            self._fams[key] = fam
        assert isinstance(fam, kind)
        return fam

    def __iter__(self) -> Iterator[PromMetric]:
        return iter(self._fams.values())


def collect_metrics(metrics: Iterable[Metric], skip: Set[str] = frozenset()) -> list[PromMetric]:
    fams = _Families()
    for m in metrics:
        family, labels = prom_identity(m)
        names = sorted(labels)
        values = [labels[k] for k in names]
        doc = _doc(m)
        if isinstance(m, Counter):
            fams.get(CounterMetricFamily, family, doc, names).add_metric(values, m.count)
        elif isinstance(m, Gauge):
            fams.get(GaugeMetricFamily, family, doc, names).add_metric(values, m.value())
        elif isinstance(m, RatioCounter):
            fams.get(GaugeMetricFamily, family, doc, names).add_metric(values, m.ratio())
            fams.get(CounterMetricFamily, family + "_numerator", doc, names).add_metric(values, m.numerator)
            fams.get(CounterMetricFamily, family + "_denominator", doc, names).add_metric(
                values, m.denominator
            )
        elif isinstance(m, Meter):
            fams.get(CounterMetricFamily, family, doc, names).add_metric(values, m.total)
            m.tick_if_necessary()
            rate = fams.get(
                GaugeMetricFamily, family + "_rate", doc + " (events per second)", [*names, "window"]
            )
            rate.add_metric([*values, "mean"], m.rate())
            for window, r in zip(("1m", "5m", "15m"), m.rates, strict=True):
                rate.add_metric([*values, window], r)
        elif isinstance(m, Histogram):
            m.flush()
            unit = _sanitize(m.unit) if m.unit else ""
            fname = family if not unit or family.endswith("_" + unit) else f"{family}_{unit}"
            fam = fams.get(SummaryMetricFamily, fname, doc, names)
            fam.add_metric(values, count_value=m.n, sum_value=m.sum)
            if m.reservoir:
                st = m.stats()
                for q, key in (("0.5", "p50"), ("0.95", "p95"), ("0.99", "p99")):
                    fam.samples.append(Sample(fname, {**labels, "quantile": q}, float(st[key]), None, None))
    return [f for f in fams if f.name not in skip]


class RegistryCollector(Collector):
    """A prometheus_client Collector reading a live list of registry metrics on every scrape."""

    def __init__(self, source: Callable[[], Iterable[Metric]], skip: Set[str] = frozenset()) -> None:
        self._source = source
        self._skip = skip

    def collect(self) -> Iterable[PromMetric]:
        return collect_metrics(self._source(), self._skip)


def make_collector_registry(
    source: Callable[[], Iterable[Metric]], process: bool = True, skip: Set[str] = frozenset()
) -> CollectorRegistry:
    """``skip``: family names (a live set) that prometheus_client-native metrics own."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(RegistryCollector(source, skip))
    if process:
        ProcessCollector(registry=reg)
    return reg


def exposition(reg: CollectorRegistry) -> bytes:
    return generate_latest(reg)
