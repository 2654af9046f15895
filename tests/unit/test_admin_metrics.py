"""clipper_admin.metrics: user-defined Prometheus metrics reported from a prediction function."""

from __future__ import annotations

import prometheus_client
import pytest

from clipper_admin import ClipperException
from clipper_admin.metrics import add_metric, report_metric


def value(name, suffix=""):
    return prometheus_client.REGISTRY.get_sample_value(name + suffix)


def test_counter_gauge_histogram_summary():
    add_metric("admin_test_counter", "Counter", "a counter")
    add_metric("admin_test_counter", "Counter", "added twice: a no-op")
    report_metric("admin_test_counter", 2)
    report_metric("admin_test_counter", "1.5")
    assert value("admin_test_counter", "_total") == 3.5

    add_metric("admin_test_gauge", "Gauge", "a gauge")
    report_metric("admin_test_gauge", 7)
    report_metric("admin_test_gauge", 3)
    assert value("admin_test_gauge") == 3

    add_metric("admin_test_hist", "Histogram", "a histogram", buckets=[1, 10])
    report_metric("admin_test_hist", 5)
    assert prometheus_client.REGISTRY.get_sample_value("admin_test_hist_bucket", {"le": "10.0"}) == 1
    assert prometheus_client.REGISTRY.get_sample_value("admin_test_hist_bucket", {"le": "1.0"}) == 0

    add_metric("admin_test_summary", "Summary", "a summary")
    report_metric("admin_test_summary", 4)
    assert value("admin_test_summary", "_sum") == 4


def test_errors():
    with pytest.raises(ClipperException, match=r"^Metric type needs to be one of \['Gauge', 'Counter'"):
        add_metric("admin_test_bad", "Meter", "x")
    with pytest.raises(ClipperException, match="^admin_test_missing has not been added.*add_metric"):
        report_metric("admin_test_missing", 1)
    add_metric("admin_test_val", "Gauge", "x")
    with pytest.raises(ClipperException, match="must be a number"):
        report_metric("admin_test_val", "many")
    prometheus_client.Gauge("admin_test_taken", "registered outside clipper_admin")
    with pytest.raises(ClipperException, match="Cannot add metric 'admin_test_taken'"):
        add_metric("admin_test_taken", "Gauge", "x")
