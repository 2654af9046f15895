"""Routing table from a config snapshot: exact paths, targets, models without a current version."""

from __future__ import annotations

from clipper.config_store.base import AppRecord, ConfigSnapshot, ModelRecord
from clipper.metrics import MetricsRegistry
from clipper.query_frontend.routes import PREDICT, UPDATE, build_routing_table


def test_routes_targets_and_a_model_without_current_version():
    snap = ConfigSnapshot(
        apps={
            "a.b": AppRecord("a.b", "doubles", "-1.0", 1000),
            "orphan": AppRecord("orphan", "ints", "DEFAULT", 2000),
        },
        models={("m", "1"): ModelRecord("m", "1", "doubles"), ("n", "1"): ModelRecord("n", "1", "integers")},
        links={"a.b": ("m",), "orphan": ("n",)},
        current_versions={"m": "1"},  # n has none: the original refused to start
    )
    t = build_routing_table(snap, MetricsRegistry(process_metrics=False))
    kind, app = t.routes["/a.b/predict"]
    assert kind == PREDICT and t.routes["/a.b/predict/"][1] is app
    assert t.routes["/a.b/update"][0] == UPDATE
    assert "/aXb/predict" not in t.routes  # no regex matching of app names
    assert app.target == ("m", "1") and app.slo_s == 0.001 and app.default_embedded == b"-1.0"
    assert t.apps["orphan"].target is None and t.apps["orphan"].default_embedded == b'"DEFAULT"'
    assert t.versions == {"m": {"1"}, "n": {"1"}}
