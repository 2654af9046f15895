"""Behaviours of the original metrics (metrics_test.cpp) plus the JSON and Prometheus reports."""

from __future__ import annotations

import asyncio
import json
import math

import pytest
from prometheus_client.parser import text_string_to_metric_families

from clipper.metrics import Counter, Histogram, Meter, MetricsRegistry, RatioCounter, percentile


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_counter_correctness():
    c = Counter("Test Counter")
    c.decrement(183)
    assert c.value() == -183
    c.increment(7)
    assert c.value() == -176
    c.increment(200)
    assert c.value() == 24
    c.increment(76)
    assert c.value() == 100
    c.decrement(100)
    assert c.value() == 0


def test_ratio_counter_correctness():
    r = RatioCounter("Test Ratio Counter")
    assert math.isnan(r.ratio())
    r.increment(0, 1)
    assert r.ratio() == 0
    r.increment(1, 2)
    assert abs(r.ratio() - 0.33) <= 0.01
    r.increment(5, 10)
    assert abs(r.ratio() - 0.461) <= 0.001
    assert RatioCounter("Test Counter", 17, 1).ratio() == 17


def test_meter_mean_rate():
    clock = Clock()
    m = Meter("Test meter", clock=clock)
    m.mark(100)
    clock.t = 100.0
    assert m.rate() == pytest.approx(1.0)
    clock.t = 200.0
    assert m.rate() == pytest.approx(0.5)
    m.mark(200)
    assert m.rate() == pytest.approx(1.5)


def test_ewma_correctness():
    clock = Clock()
    m = Meter("Test meter", clock=clock)
    assert m.rate_1min() == -1  # no tick yet
    m.mark(1)
    clock.t = 5.0
    assert m.rate_1min() == pytest.approx(0.2)  # first tick: count / 5 s
    m.mark(2)
    clock.t = 30.0  # 5 ticks at once: the first sees 2 events, the others 0
    a1 = 1 - math.exp(-5 / 60)
    expected = 0.2 + a1 * (0.4 - 0.2)
    for _ in range(4):
        expected += a1 * (0 - expected)
    assert m.rate_1min() == pytest.approx(expected)
    assert m.rate_1min() - 0.15 <= 0.01  # the original's bound
    clock.t = 150.0
    assert m.rate_5min() - 0.13 <= 0.01
    assert m.rate_15min() - 0.17 <= 0.01
    clock.t = 960.0
    assert m.rate_5min() <= 0.01
    assert m.rate_15min() - 0.07 <= 0.01
    assert 0 < m.rate_15min() < m.rate_5min() + 0.2


def test_meter_tick_on_mark_counts_triggering_events():
    clock = Clock()
    m = Meter("m", clock=clock)
    clock.t = 5.0
    m.mark(10)  # this mark triggers the first tick, which includes it
    assert m.rates[0] == pytest.approx(2.0)
    m.clear()
    assert m.rate_1min() == -1 and m.count == 0 and m.total == 10


def test_meter_events_added_directly_are_ticked_by_the_registry_per_interval():
    """The hot path's ``m.events += n`` (no mark, no clock read): a periodic ``tick_meters`` gives each
    tick the events of its own interval, as marks would have; count and total follow too."""
    clock = Clock()
    reg = MetricsRegistry(process_metrics=False)
    m = reg._get(Meter, "m", lambda: Meter("m", clock=clock))
    marked = Meter("marked", clock=clock)
    for second in range(1, 16):
        n = 10 if second <= 5 else 40  # 2/s over the first interval, 8/s after
        m.events += n
        marked.mark(n)
        clock.t = float(second)
        reg.tick_meters()
        marked.tick_if_necessary()
    assert m.rates == pytest.approx(marked.rates)
    assert m.rates[0] != -1.0 and m.rates[0] > 2.0
    assert (m.count, m.total) == (marked.count, marked.total) == (450, 450)
    m.clear()
    m.events += 5
    assert (m.count, m.total, m.rates[0]) == (5, 455, -1.0)


def test_query_frontend_housekeeping_ticks_the_meters_its_hot_path_counts(tmp_path):
    """The frontend's routes and dispatcher add to ``Meter.events`` without ticking: its once-a-second
    housekeeping must tick them, or every event would land in whichever tick a read happens to make."""
    from clipper.config_store.sqlite_store import SqliteConfigStore
    from clipper.query_frontend.server import QueryFrontend

    clock = Clock()
    reg = MetricsRegistry(process_metrics=False)
    m = reg._get(Meter, "app:a:prediction_throughput", lambda: Meter("t", clock=clock))
    store = SqliteConfigStore(tmp_path / "config.db")
    fe = QueryFrontend(store, metrics=reg)
    loop = asyncio.new_event_loop()
    fe.loop = loop
    try:
        m.events += 50  # 10/s over the first interval
        clock.t = 5.0
        fe._housekeep()
        m.events += 100  # 20/s over the second
        clock.t = 10.0
        fe._housekeep()
    finally:
        fe._housekeeping.cancel()
        loop.close()
        fe._store_exec.shutdown(wait=True)
        store.close()
    a1 = 1.0 - math.exp(-5.0 / 60.0)
    assert m.rates[0] == pytest.approx(10.0 + a1 * (20.0 - 10.0))


def test_percentile_function_correctness():
    assert int(percentile([15, 20, 35, 40, 50], 0.4)) == 26
    assert int(percentile([15], 0.4)) == 15
    assert int(percentile([15], 0.0)) == 15
    assert int(percentile([15], 1.0)) == 15
    with pytest.raises(ValueError):
        percentile([], 0.4)
    with pytest.raises(ValueError):
        percentile([1], 1.5)
    data = [67, 31, 45, 40, 39]
    assert percentile(data, 0.6) == percentile(sorted(data), 0.6)
    # x = q(n+1) = 3.6 -> s[2] + 0.6 * (s[3] - s[2]) on [31, 39, 40, 45, 67]
    assert percentile(data, 0.6) == pytest.approx(40 + 0.6 * 5)


def test_histogram_stats_correctness():
    h = Histogram("Test Histogram", "milliseconds", 6)
    for v in (16, 53, 104, 113, 185, 202):
        h.insert(v)
    st = h.stats()
    assert st["min"] == 16 and st["max"] == 202
    assert abs(st["mean"] - 112.16) <= 0.01
    assert abs(st["std_dev"] - 66.06) <= 0.01
    assert abs(st["p50"] - 108.5) <= 0.01
    assert st["p95"] == 202 and st["p99"] == 202
    assert st["size"] == 6


def test_reservoir_algorithm_r_keeps_first_k_then_samples_uniformly():
    h = Histogram("h", reservoir_size=100)
    for v in range(100):
        h.insert(v)
    assert h.reservoir == list(range(100))
    for v in range(100, 100_000):
        h.insert(v)
    assert len(h.reservoir) == 100 and h.n == 100_000
    assert h.sum == sum(range(100_000))
    # a uniform sample of 0..99999: most of it comes from beyond the first 100 values, spread out
    assert sum(1 for v in h.reservoir if v >= 100) >= 95
    assert sum(1 for v in h.reservoir if v >= 50_000) in range(25, 76)
    h.clear()
    assert h.reservoir == [] and h.n == 0 and h.stats()["size"] == 0


def test_json_report_structure_and_string_leaves():
    reg = MetricsRegistry(process_metrics=False)
    assert reg.to_json() == b""
    reg.histogram("app:a:prediction_latency", "microseconds", 4096).insert(812)
    reg.meter("internal:aggregate_model_throughput").mark(2)
    reg.ratio_counter("internal:prediction_cache_hit_ratio")
    reg.counter("internal:prediction_cache_lookups").increment(42)
    body = reg.to_json()
    assert body.endswith(b"}\n")
    assert b'\n    "counters": [\n        {\n            "internal:prediction_cache_lookups": {\n' in body
    tree = json.loads(body)
    assert list(tree) == ["counters", "ratio_counters", "meters", "histograms"]
    assert tree["counters"] == [{"internal:prediction_cache_lookups": {"count": "42"}}]
    assert tree["ratio_counters"] == [{"internal:prediction_cache_hit_ratio": {"ratio": "nan"}}]
    meter = tree["meters"][0]["internal:aggregate_model_throughput"]
    assert list(meter) == ["unit", "rate", "rate_1min", "rate_5min", "rate_15min"]
    assert meter["unit"] == "events per second" and meter["rate_1min"] == "-1"
    hist = tree["histograms"][0]["app:a:prediction_latency"]
    assert list(hist) == ["unit", "size", "min", "max", "mean", "std_dev", "p50", "p95", "p99"]
    assert hist["size"] == "1" and hist["p99"] == "812" and hist["std_dev"] == "0"
    for cat in tree.values():
        for item in cat:
            for fields in item.values():
                assert all(isinstance(v, str) for v in fields.values())


def test_json_escapes_slash_and_omits_empty_categories():
    reg = MetricsRegistry(process_metrics=False)
    reg.counter("app:a/b:num_predictions").increment()
    body = reg.to_json()
    assert b'"app:a\\/b:num_predictions"' in body
    assert list(json.loads(body)) == ["counters"]


def test_clear_on_report():
    reg = MetricsRegistry(process_metrics=False)
    reg.counter("c").increment(5)
    reg.to_json(clear=True)
    assert json.loads(reg.to_json())["counters"][0]["c"]["count"] == "0"


def test_registry_get_or_create_and_removal():
    reg = MetricsRegistry(process_metrics=False)
    c = reg.counter("model:m:1:num_predictions")
    assert reg.counter("model:m:1:num_predictions") is c
    with pytest.raises(TypeError):
        reg.meter("model:m:1:num_predictions")
    reg.histogram("model:m:1:batch_size", "queries")
    reg.counter("model:m:10:num_predictions")
    assert reg.remove_prefix("model:m:1:") == 2
    assert [m.name for m in reg.metrics()] == ["model:m:10:num_predictions"]
    assert reg.remove("model:m:10:num_predictions") and not reg.remove("nope")


def test_prometheus_exposition_parses_with_labels_and_types():
    reg = MetricsRegistry(process_metrics=False)
    reg.counter("app:a:num_predictions").increment(3)
    reg.counter("app:b:num_predictions").increment(4)
    h = reg.histogram("model:m:1:prediction_latency", "microseconds", 16)
    for v in (100, 200, 300):
        h.insert(v)
    reg.histogram("model:m:1:batch_size", "queries", 16).insert(4)
    reg.ratio_counter("internal:prediction_cache_hit_ratio").increment(1, 4)
    reg.meter("app:a:prediction_throughput").mark(7)
    reg.gauge("model:m:1:queue_depth", fn=lambda: 5)
    reg.counter(
        "app:a:default_outputs:slo",
        prom_name="clipper_app_default_outputs",
        labels={"app": "a", "reason": "slo"},
    ).increment()
    fams = {f.name: f for f in text_string_to_metric_families(reg.prometheus_text().decode())}
    preds = fams["clipper_app_num_predictions"]
    assert preds.type == "counter"
    assert {(s.labels["app"], s.value) for s in preds.samples if s.name.endswith("_total")} == {
        ("a", 3),
        ("b", 4),
    }
    lat = fams["clipper_model_prediction_latency_microseconds"]
    assert lat.type == "summary"
    by = {(s.name, s.labels.get("quantile")): s.value for s in lat.samples}
    assert by[("clipper_model_prediction_latency_microseconds_count", None)] == 3
    assert by[("clipper_model_prediction_latency_microseconds_sum", None)] == 600
    assert by[("clipper_model_prediction_latency_microseconds", "0.5")] == 200
    assert lat.samples[0].labels["model"] == "m" and lat.samples[0].labels["version"] == "1"
    assert "clipper_model_batch_size_queries" in fams
    assert fams["clipper_prediction_cache_hit_ratio"].samples[0].value == 0.25
    assert fams["clipper_model_queue_depth"].samples[0].value == 5
    assert fams["clipper_app_default_outputs"].samples[0].labels == {"app": "a", "reason": "slo"}
    assert fams["clipper_app_prediction_throughput"].type == "counter"
    windows = {s.labels["window"] for s in fams["clipper_app_prediction_throughput_rate"].samples}
    assert windows == {"mean", "1m", "5m", "15m"}


def test_prometheus_native_series_share_the_exposition():
    reg = MetricsRegistry(process_metrics=False)
    req = reg.prom_counter("clipper_requests_total", "HTTP requests", ["app", "code"])
    assert reg.prom_counter("clipper_requests_total", "HTTP requests", ["app", "code"]) is req
    req.labels("a", "200").inc()
    lat = reg.prom_histogram(
        "clipper_request_latency_seconds", "latency", ["app"], buckets=[0.001, 0.01, 0.1]
    )
    lat.labels("a").observe(0.005)
    reg.prom_gauge("clipper_queue_depth", "queued", ["model"]).labels("m:1").set(3)
    reg.counter("app:a:num_predictions").increment(2)
    # a registry metric mapping onto a native family name is not emitted twice
    reg.gauge("queue_depth", fn=lambda: 99)
    fams = {f.name: f for f in text_string_to_metric_families(reg.prometheus_text().decode())}
    assert [s.value for s in fams["clipper_requests"].samples if s.name == "clipper_requests_total"] == [1]
    buckets = {
        s.labels["le"]: s.value
        for s in fams["clipper_request_latency_seconds"].samples
        if s.name.endswith("_bucket")
    }
    assert buckets["0.001"] == 0 and buckets["0.01"] == 1
    assert [s.value for s in fams["clipper_queue_depth"].samples] == [3]
    assert "clipper_app_num_predictions" in fams
    assert json.loads(reg.to_json()) == {
        "counters": [{"app:a:num_predictions": {"count": "2"}}, {"queue_depth": {"count": "99"}}]
    }


@pytest.mark.parametrize("before,count", [(0, 5), (3, 5), (8, 5), (20, 40)])
def test_histogram_insert_n_is_count_inserts(before, count):
    """insert_n(v, k) leaves the histogram as k inserts of v would (same random draws)."""
    import random

    one, many = Histogram("a", reservoir_size=10), Histogram("b", reservoir_size=10)
    one._rand, many._rand = random.Random(7).random, random.Random(7).random
    for v in range(before):
        one.insert(v)
        many.insert(v)
    for _ in range(count):
        one.insert(999)
    many.insert_n(999, count)
    assert (many.reservoir, many.n, many.sum) == (one.reservoir, one.n, one.sum)


@pytest.mark.parametrize("before,count", [(0, 5), (3, 5), (8, 5), (20, 40)])
def test_histogram_insert_all_and_pending_are_the_inserts_one_by_one(before, count):
    """insert_all and a flush of pending values leave the histogram as inserts one by one would
    (same random draws), so the sample stays uniform."""
    import random

    one, many, later = (Histogram(n, reservoir_size=10) for n in ("a", "b", "c"))
    for h in (one, many, later):
        h._rand = random.Random(7).random
        for v in range(before):
            h.insert(v)
    values = list(range(100, 100 + count))
    for v in values:
        one.insert(v)
    many.insert_all(values)
    later.pending.extend(values)
    assert later.n == before  # not yet folded in ...
    assert later.stats()["size"] == min(10, before + count)  # ... until read
    for h in (many, later):
        assert (h.reservoir, h.n, h.sum) == (one.reservoir, one.n, one.sum)
    assert not later.pending


def test_histogram_sample_is_uniform():
    """Every value of a stream is in the sample equally often (size / n), early or late, inserted
    one by one or in chunks (fixed seeds: chi-square of 200 values' inclusion counts over 4,000
    streams, well under the 99.9 % point of 268 for 199 degrees of freedom)."""
    import random

    n, size, streams = 200, 10, 4000
    hits = [0] * n
    for seed in range(streams):
        h = Histogram("h", reservoir_size=size)
        h._rand = random.Random(seed).random
        if seed % 2:
            for v in range(n):
                h.insert(v)
        else:
            h.insert_all(range(37))
            h.insert_all(range(37, n))
        assert sorted(set(h.reservoir)) == sorted(h.reservoir) and len(h.reservoir) == size
        for v in h.reservoir:
            hits[v] += 1
    expected = streams * size / n
    assert sum((k - expected) ** 2 / expected for k in hits) < 268
    assert abs(sum(hits[:20]) - sum(hits[-20:])) < 0.1 * 20 * expected


def test_histogram_draws_random_numbers_only_for_values_entering_the_sample():
    """Past the first few multiples of its size, a value costs no random draw (Algorithm L's skips):
    about 3 * size * ln(n / size) draws for n values, not one each."""
    import random

    draws = [0]
    rng = random.Random(5)

    def counting() -> float:
        draws[0] += 1
        return rng.random()

    for chunked in (False, True):
        h = Histogram("h", reservoir_size=10)
        h._rand, draws[0] = counting, 0
        if chunked:
            h.insert_all([7] * 100_000)
        else:
            for _ in range(100_000):
                h.insert(7)
        assert h.n == 100_000 and h.sum == 700_000 and len(h.reservoir) == 10
        assert draws[0] < 3 * 10 * math.log(100_000 / 10) * 2


def test_histogram_pending_values_are_in_every_report_and_cleared_with_it():
    reg = MetricsRegistry(process_metrics=False)
    h = reg.histogram("app:a:prediction_latency", prom_name="clipper_lat", labels={"app": "a"})
    folded: list[list[int]] = []
    h.on_fold = folded.append
    h.pending.extend([5, 7])
    assert json.loads(reg.to_json())["histograms"][0]["app:a:prediction_latency"]["max"] == "7"
    h.pending.append(9)
    text = reg.prometheus_text().decode()
    assert 'clipper_lat_microseconds_count{app="a"} 3.0' in text
    assert 'clipper_lat_microseconds_sum{app="a"} 21.0' in text
    assert folded == [[5, 7], [9]]  # the owner's own statistics got each value once
    h.pending.append(11)
    h.clear()
    assert h.stats()["size"] == 0 and h.n == 0 and folded == [[5, 7], [9]]
