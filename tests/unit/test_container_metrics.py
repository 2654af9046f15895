"""A model container's Prometheus metrics: plain adds on the hot path, the standard exposition."""

from __future__ import annotations

import threading

from prometheus_client import Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from clipper.container.metrics import _MS_BUCKETS, ContainerMetrics


def _samples(m: ContainerMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(m.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if not s.name.endswith("_created")
    }


def test_the_original_names_counts_and_inclusive_bucket_bounds():
    m = ContainerMetrics()
    m.record(3, recv_ms=1.0, parse_ms=0.1, handle_ms=7.0, end_to_end_ms=20_000.0)
    m.record(1, recv_ms=2.0, parse_ms=0.1, handle_ms=1.0, end_to_end_ms=5.0)
    m.errors_total += 1
    s = _samples(m)
    assert s[("clipper_mc_pred_total", ())] == 2
    assert s[("clipper_mc_inputs_total", ())] == 4
    assert s[("clipper_mc_errors_total", ())] == 1
    recv = "clipper_mc_recv_time_ms"
    assert s[(recv + "_bucket", (("le", "0.5"),))] == 0
    assert s[(recv + "_bucket", (("le", "1.0"),))] == 1  # a bound is inclusive (Prometheus's le)
    assert s[(recv + "_bucket", (("le", "2.5"),))] == 2
    assert s[(recv + "_count", ())] == 2 and s[(recv + "_sum", ())] == 3.0
    e2e = "clipper_mc_end_to_end_latency_ms"
    assert s[(e2e + "_bucket", (("le", "10000.0"),))] == 1
    assert s[(e2e + "_bucket", (("le", "+Inf"),))] == 2  # beyond the last bound


def test_histograms_match_prometheus_clients_own():
    """Same buckets, counts and sum as a prometheus_client Histogram fed the same values."""
    m = ContainerMetrics()
    ref = Histogram("ref_ms", "reference", buckets=_MS_BUCKETS, registry=None)
    values = [0.0, 0.5, 0.50001, 1, 3, 9.99, 10, 99, 101, 4999, 5000, 10_000, 10_000.5, 1e9]
    for v in values:
        m.handle_time_ms.observe(v)
        ref.observe(v)
    ours = {k: v for k, v in _samples(m).items() if k[0].startswith("clipper_mc_handle_time_ms")}
    theirs = {
        (s.name.replace("ref_ms", "clipper_mc_handle_time_ms"), tuple(sorted(s.labels.items()))): s.value
        for s in ref.collect()[0].samples
        if not s.name.endswith("_created")
    }
    assert ours == theirs


def test_a_scrape_during_updates_reads_consistent_totals():
    """One thread records while another scrapes: every scrape parses, and counts never go down."""
    m = ContainerMetrics()
    done = threading.Event()

    def record() -> None:
        while not done.is_set():
            m.record(2, 0.1, 0.1, 0.1, 0.3)

    t = threading.Thread(target=record)
    t.start()
    try:
        last = -1.0
        for _ in range(50):
            seen = _samples(m)[("clipper_mc_pred_total", ())]
            assert seen >= last
            last = seen
    finally:
        done.set()
        t.join()
    assert _samples(m)[("clipper_mc_inputs_total", ())] == 2 * m.pred_total
