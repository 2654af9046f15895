"""The in-memory routing table built from a config-store snapshot.

Paths match exactly (``/<app>/predict`` and ``/<app>/predict/``; the original pasted app names into
regexes unescaped). A new snapshot replaces the whole table, so a deleted app's routes really
disappear and a re-added app gets its new input type and objective (the original kept stale routes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from clipper.config_store.base import AppRecord, ConfigSnapshot
from clipper.datatypes import InputType, parse_input_type
from clipper.metrics.types import PENDING_MAX
from clipper.query_frontend.responses import embed_output

if TYPE_CHECKING:
    import logging

    from clipper.metrics import MetricsRegistry
    from clipper.query_frontend.processor import PendingRequest
    from clipper.query_frontend.traffic import AppTraffic

PREDICT = 0
UPDATE = 1


class AppRoute:
    """One application as the hot path needs it, plus its metrics (kept across reloads by name)."""

    __slots__ = (
        "name",
        "input_type",
        "slo_micros",
        "slo_s",
        "default_output",
        "default_embedded",
        "links",
        "target",
        "traffic",
        "latency",
        "latency_pending",
        "throughput",
        "num_predictions",
        "default_ratio",
        "default_slo",
        "default_no_model",
    )

    def __init__(
        self,
        rec: AppRecord,
        links: tuple[str, ...],
        target: tuple[str, str] | None,
        metrics: MetricsRegistry,
    ) -> None:
        self.name = rec.name
        self.input_type: InputType = parse_input_type(rec.input_type)
        self.slo_micros = rec.latency_slo_micros
        self.slo_s = max(rec.latency_slo_micros, 0) / 1e6
        self.default_output = rec.default_output
        self.default_embedded = embed_output(rec.default_output.encode())
        self.links = links
        self.target = target
        # AppTraffic when the app has a traffic configuration (attached by the frontend), else None
        self.traffic: AppTraffic | None = None
        p = f"app:{rec.name}:"
        self.latency = metrics.histogram(p + "prediction_latency", "microseconds", 4096)
        self.latency_pending = self.latency.pending
        self.throughput = metrics.meter(p + "prediction_throughput")
        self.num_predictions = metrics.counter(p + "num_predictions")
        self.default_ratio = metrics.ratio_counter(p + "default_prediction_ratio")
        self.default_slo = metrics.counter(
            p + "default_outputs:slo",
            prom_name="clipper_default_outputs",
            labels={"app": rec.name, "reason": "slo"},
        )
        self.default_no_model = metrics.counter(
            p + "default_outputs:no_connected_model",
            prom_name="clipper_default_outputs",
            labels={"app": rec.name, "reason": "no_connected_model"},
        )

    def record(self, req: PendingRequest, n: int, micros: int) -> None:
        """Metrics of one answered request (n inputs, answered ``micros`` after it arrived)."""
        if n == 1:  # the latency sample's insert deferred to its next read (see Histogram)
            pending = self.latency_pending
            pending.append(micros)
            if len(pending) >= PENDING_MAX:
                self.latency.flush()
        else:
            self.latency.insert_n(micros, n)
        # plain adds, not increment()/mark() calls: once per request (see clipper/metrics/types.py;
        # the frontend's housekeeping ticks the meters)
        self.throughput.events += n
        self.num_predictions.count += n
        ratio = self.default_ratio
        ratio.numerator += req.defaults
        ratio.denominator += n

    def record_one(self, seconds: float) -> None:
        """Metrics of a single-input request answered at once (a cache hit), not by default."""
        self.latency.insert(int(seconds * 1e6))
        self.throughput.events += 1
        self.num_predictions.increment(1)
        self.default_ratio.increment(0, 1)


@dataclass
class RoutingTable:
    routes: dict[str, tuple[int, AppRoute]] = field(default_factory=dict)
    apps: dict[str, AppRoute] = field(default_factory=dict)
    versions: dict[str, set[str]] = field(default_factory=dict)  # model name -> every known version


def resolve_target(links: tuple[str, ...], current_versions: dict[str, str]) -> tuple[str, str] | None:
    """DefaultOutputSelectionPolicy: the first linked model with a known current version."""
    for m in links:
        v = current_versions.get(m)
        if v is not None:
            return (m, v)
    return None


def build_routing_table(
    snap: ConfigSnapshot,
    metrics: MetricsRegistry,
    log: logging.Logger | None = None,
) -> RoutingTable:
    table = RoutingTable()
    for name, version in snap.models:
        table.versions.setdefault(name, set()).add(version)
    for name in {n for n, _ in snap.models}:
        if name not in snap.current_versions and log is not None:
            log.warning("model %r has no current version; apps linked to it answer with defaults", name)
    for rec in snap.apps.values():
        links = tuple(snap.links.get(rec.name, ()))
        try:
            app = AppRoute(rec, links, resolve_target(links, snap.current_versions), metrics)
        except ValueError as e:
            if log is not None:
                log.error("application %r skipped: %s", rec.name, e)
            continue
        table.apps[rec.name] = app
        for suffix, kind in (("predict", PREDICT), ("update", UPDATE)):
            table.routes[f"/{rec.name}/{suffix}"] = (kind, app)
            table.routes[f"/{rec.name}/{suffix}/"] = (kind, app)
    return table
