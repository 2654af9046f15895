"""Traffic splitting, sticky keys, shadow statistics and the Exp3/Exp4 policies: the pure
parts of the query frontend, and the config stores' traffic contract (SQLite and a real Redis)."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import random
import threading

import orjson
import pytest

from clipper.config_store import open_store
from clipper.config_store.traffic import (
    LATENCY_BUCKETS_MICROS,
    Selection,
    Shadow,
    Target,
    TargetCounts,
    TrafficConfig,
    encode_stats,
    merge_stats,
)
from clipper.metrics import MetricsRegistry
from clipper.metrics.types import PENDING_MAX
from clipper.query_frontend.traffic import (
    ROUTING_RUN,
    STICKY_BUCKETS,
    AppTraffic,
    Exp3,
    Exp4,
    LogWeights,
    RunSchedule,
    combine,
    cumulative,
    loss,
    pick,
    sticky_bucket,
    sticky_pick,
)

from .test_config_store import app, model, redis_server, store, store_url  # noqa: F401 - fixtures

# -- weighted choice -----------------------------------------------------------------------------


def test_a_90_10_split_over_2000_draws_is_within_the_binomial_99_interval():
    rng = random.Random(17)
    at = AppTraffic(
        "a", TrafficConfig((Target("m", "1", 90), Target("m", "2", 10))), MetricsRegistry(False), rng.random
    )
    n = 2000
    second = sum(at.choose() == 1 for _ in range(n))
    sd = math.sqrt(n * 0.1 * 0.9)
    assert abs(second - 200) <= 2.576 * sd, second


def test_a_split_routes_runs_of_consecutive_requests_and_keeps_each_share_within_one_run():
    at = AppTraffic(
        "a",
        TrafficConfig((Target("m", "1", 90), Target("m", "2", 10))),
        MetricsRegistry(False),
        random.random,
    )
    total = 25 * 10 * ROUTING_RUN  # a whole number of rounds of ten runs
    picks = [at.choose() for _ in range(total)]
    # runs: the minority's requests come ROUTING_RUN at a time, so they can ride in one batch
    runs = [len(list(g)) for k, g in itertools.groupby(picks) if k == 1]
    assert runs and set(runs) == {ROUTING_RUN}, runs
    # at every prefix the minority's count is its weight's share to within one run
    seen = 0
    for n, i in enumerate(picks, 1):
        seen += i
        assert abs(seen - n * 0.1) <= ROUTING_RUN, (n, seen)
    assert seen == total // 10


@pytest.mark.parametrize("weights", [[90, 10], [1, 2, 3], [0.5, 0, 99.5], [33.3, 33.3, 33.4], [0, 1]])
def test_run_schedule_deals_exact_shares_and_never_a_zero_weight(weights):
    sched = RunSchedule(weights, run=4)
    total = sum(weights)
    counts = [0] * len(weights)
    for n in range(1, 4001):
        counts[sched.next()] += 1
        for c, w in zip(counts, weights, strict=True):
            assert abs(c - n * w / total) <= 4 * len(weights), (n, counts)
    for c, w in zip(counts, weights, strict=True):
        assert (c == 0) == (w == 0), counts


@pytest.mark.parametrize("weights", [[90, 10], [1, 2, 3], [0.5, 0, 99.5], [5]])
def test_run_schedule_says_which_pick_ends_its_choices_stretch(weights):
    """``ended`` after a pick: the next pick goes to another choice (a batching frontend then sends
    that choice's queue at once); never within a run, never for a lone choice."""
    sched = RunSchedule(weights, run=4)
    picks, ended = [], []
    for _ in range(2000):
        picks.append(sched.next())
        ended.append(sched.ended)
    for n in range(len(picks) - 1):
        assert ended[n] == (picks[n + 1] != picks[n]), n
        if (n + 1) % 4:
            assert not ended[n], n  # within a run
    assert any(ended) == (sum(w > 0 for w in weights) > 1)


def test_only_a_choice_from_runs_ends_a_stretch():
    split = (Target("m", "1", 90), Target("m", "2", 10))
    at = AppTraffic("a", TrafficConfig(split), MetricsRegistry(False), random.random)
    picks, ended = [], []
    for _ in range(10 * ROUTING_RUN):
        picks.append(at.choose())
        ended.append(at.ended)
    canary = picks.index(1)
    # in every ten runs: the stable version's stretch ends as the canary's run begins, and its end
    assert [n for n, e in enumerate(ended) if e] == [canary - 1, canary + ROUTING_RUN - 1]
    keyed = AppTraffic("a", TrafficConfig(split, sticky_key="user"), MetricsRegistry(False), random.random)
    for i in range(10 * ROUTING_RUN):
        keyed.choose(f"user-{i}")
        assert not keyed.ended  # a keyed choice is no run
        keyed.choose()  # an unkeyed request of that app follows the runs
    exp3 = AppTraffic(
        "a", TrafficConfig(split, selection=Selection("exp3")), MetricsRegistry(False), random.random
    )
    for _ in range(10 * ROUTING_RUN):
        exp3.choose()
        assert not exp3.ended


def test_run_schedule_rejects_weights_it_cannot_deal():
    for bad in ([0, 0], [], [1, -1]):
        with pytest.raises(ValueError):
            RunSchedule(bad)


def test_a_shadow_mirrors_its_percent_in_runs():
    cfg = TrafficConfig((Target("m", "1", 1.0),), shadow=Shadow("m", "2", 10.0))
    at = AppTraffic("a", cfg, MetricsRegistry(False), random.random)
    mirrored = [at.shadow_now() for _ in range(4000)]
    assert sum(mirrored) == 400
    assert {len(list(g)) for k, g in itertools.groupby(mirrored) if k} == {ROUTING_RUN}
    full = AppTraffic(
        "a", TrafficConfig((Target("m", "1", 1.0),), shadow=Shadow("m", "2", 100.0)), MetricsRegistry(False)
    )
    assert all(full.shadow_now() for _ in range(100))


def test_cumulative_weights_and_pick():
    cum = cumulative([1, 0, 3])
    assert cum == [0.25, 0.25, 1.0]
    assert pick(cum, 0.0) == 0 and pick(cum, 0.2499) == 0
    assert pick(cum, 0.25) == 2  # a zero weight is never picked
    assert pick(cum, 0.9999999) == 2
    with pytest.raises(ValueError):
        cumulative([0, 0])


def test_sticky_keys_keep_their_target_and_are_spread_by_weight():
    cum = cumulative([70, 30])
    keys = [f"user-{i}" for i in range(4000)]
    first = [sticky_pick(cum, k) for k in keys]
    assert first == [sticky_pick(cum, k) for k in keys]  # same key, same target
    share = sum(first) / len(keys)
    assert 0.26 < share < 0.34, share
    # the bucket is BLAKE2b of the key, not Python's per-process salted hash(): stable across runs
    want = int.from_bytes(hashlib.blake2b(b"user-1", digest_size=8).digest(), "big") % STICKY_BUCKETS
    assert sticky_bucket("user-1") == want
    # a weight change moves only the keys whose bucket changes side
    moved = [sticky_pick(cumulative([60, 40]), k) for k in keys]
    assert all(b >= a for a, b in zip(first, moved, strict=True))


# -- exp3 / exp4 -----------------------------------------------------------------------------------


def test_exp3_seeded_simulation_converges_to_the_better_arm():
    rng = random.Random(3)
    w = LogWeights(["worse", "better"])
    exp3 = Exp3(w, eta=0.05, gamma=0.1)
    means = [0.4, 0.7]
    for _ in range(3000):
        i = exp3.choose(rng.random())
        exp3.feedback(i, 1.0 if rng.random() < means[i] else 0.0)
    p = exp3.probabilities()
    assert p[1] > 0.85, p
    assert p[0] >= 0.1 / 2 - 1e-9  # exploration never stops
    assert set(w.take_pending()) == {"worse", "better"}


def test_exp4_weights_follow_the_losses_and_combine_outputs():
    w = LogWeights(["a", "b"])
    exp4 = Exp4(w, eta=0.5)
    for _ in range(20):
        exp4.feedback([loss(b"1.5", 1.0), loss(b"1.0", 1.0)])
    a, b = w.normalized()
    assert b > 0.99 and math.isclose(a + b, 1.0)
    assert orjson.loads(combine([b"1.0", b"3.0"], [0.25, 0.75])) == 2.5
    assert orjson.loads(combine([b'"2"', None], [0.5, 0.5])) == 2.0  # a numeric string, one default
    assert combine([b'"cat"', b'"dog"', b'"dog"'], [0.5, 0.3, 0.3]) == b'"dog"'  # weighted vote
    assert combine([None, None], [0.5, 0.5]) is None


def test_losses():
    assert loss(None, 1.0) == 1.0
    assert loss(b"3.0", 1.0) == 1.0  # clipped
    assert loss(b"1.25", 1.0) == 0.25
    assert loss(b'"x"', 1.0) == 1.0
    assert loss(b"true", 1.0) == 1.0


def test_shared_weights_absorb_keeps_additions_made_during_a_flush():
    w = LogWeights(["a", "b"])
    w.add(0, 1.0)
    flushed = w.take_pending()
    w.add(1, 0.5)  # made while the flush was in flight
    w.absorb({"a": flushed["a"] + 2.0})  # another frontend added 2.0 meanwhile
    assert w.log_w == [3.0, 0.5]


# -- statistics ------------------------------------------------------------------------------------


def test_target_stats_fold_single_latencies_as_observe_latency_of_each():
    """Single inputs' latencies wait in a list and are bucketed in bulk when folded: the same
    buckets, sum and counters as observe_latency of each value, on every bound and either side."""
    rng = random.Random(3)
    bounds = list(LATENCY_BUCKETS_MICROS)
    values = [rng.choice([0, 1, *bounds, *(b + 1 for b in bounds)]) for _ in range(500)]
    values += [
        rng.randrange(0, 2 * bounds[-1]) for _ in range(500)
    ]  # every bound, either side, past the last
    one = TargetCounts()
    for v in values:
        one.observe_latency(v)
    stats = AppTraffic("a", TrafficConfig((Target("m", "1", 1),)), MetricsRegistry(False)).stats[0]
    for v in values[:300]:
        stats.record(1, 0, 0, v)
    stats.flush()
    stats.flush()  # nothing new: nothing changes
    for v in values[300:]:
        stats.record(1, 1, 0, v)
    stats.flush()
    c = stats.counts
    assert c.latency_buckets == one.latency_buckets and c.latency_sum_micros == one.latency_sum_micros
    assert (c.requests, c.defaults, c.errors) == (1000, 700, 0)


def test_target_counts_merge_and_quantiles():
    c = TargetCounts()
    for micros in (100, 900, 30_000, 10**8):
        c.observe_latency(micros)
    c.requests = 4
    assert c.latency_buckets[0] == 1 and c.latency_buckets[-1] == 1
    assert c.quantile_micros(0.5) == 1_000.0
    assert math.isinf(c.quantile_micros(1.0) or 0)
    rows = [encode_stats("f1", {"m:1": c}), encode_stats("f1", {"m:1": c}), encode_stats("old", {"m:1": c})]
    total = merge_stats("f1", rows)["m:1"]
    assert total.requests == 8 and sum(total.latency_buckets) == 8
    assert len(total.latency_buckets) == len(LATENCY_BUCKETS_MICROS) + 1


def test_target_stats_count_every_input_of_a_batch_with_its_latency():
    metrics = MetricsRegistry(False)
    at = AppTraffic("a", TrafficConfig((Target("m", "1", 1),)), metrics)
    stats = at.stats[0]
    stats.record(1, 0, 0, 100)  # one input answered in 100 us
    stats.record(3, 2, 1, 20_000)  # a batch of three in 20 ms: two defaults, one of them a model error
    stats.flush()  # a single input's latency is folded in on the next read (stats_json does this)
    c = stats.counts
    assert (c.requests, c.defaults, c.errors) == (4, 2, 1)
    assert sum(c.latency_buckets) == 4 and c.latency_sum_micros == 100 + 3 * 20_000
    assert c.quantile_micros(0.25) == float(LATENCY_BUCKETS_MICROS[0])  # 100 us: the first bucket
    assert c.quantile_micros(1.0) == min(b for b in LATENCY_BUCKETS_MICROS if b >= 20_000)
    assert (stats.requests.value(), stats.defaults.value(), stats.errors.value()) == (4, 2, 1)
    assert stats.latency.n == 4 and sorted(stats.latency.reservoir) == [100, 20_000, 20_000, 20_000]


def test_target_latencies_are_in_every_read_without_an_explicit_flush():
    """Single inputs' latencies wait in the histogram's pending list: any read folds them into the
    registry histogram and the analysis buckets alike, and a full list is folded by the writer."""
    metrics = MetricsRegistry(False)
    at = AppTraffic("a", TrafficConfig((Target("m", "1", 1),)), metrics)
    stats = at.stats[0]
    for micros in (100, 200, 300):
        stats.record(1, 0, 0, micros)
    assert b"app:a:target:m:1:latency" in metrics.to_json()  # a JSON read folds them in ...
    assert stats.latency.n == 3 and stats.counts.latency_sum_micros == 600  # ... into both
    assert sum(stats.counts.latency_buckets) == 3 and not stats.latency.pending
    stats.record(1, 0, 0, 400)
    text = metrics.prometheus_text().decode()  # so does a Prometheus scrape
    assert (
        'clipper_target_latency_microseconds_count{app="a",model="m",role="target",version="1"} 4.0' in text
    )
    assert stats.counts.latency_sum_micros == 1000
    for _ in range(PENDING_MAX):  # nobody reads: the writer bounds the list itself
        stats.record(1, 0, 0, 50)
    assert len(stats.latency.pending) < PENDING_MAX and stats.latency.n >= PENDING_MAX
    row = json.loads(at.stats_json() or "{}")  # the store's row is taken after a fold too
    assert sum(stats.counts.latency_buckets) == stats.counts.requests == PENDING_MAX + 4
    assert row


def test_a_new_configuration_starts_its_counts_with_the_pending_latencies_in_the_old_ones():
    metrics = MetricsRegistry(False)
    old = AppTraffic("a", TrafficConfig((Target("m", "1", 1),)), metrics)
    old.stats[0].record(1, 0, 0, 100)
    new = AppTraffic("a", TrafficConfig((Target("m", "1", 2), Target("m", "2", 1))), metrics)
    assert new.stats[0].latency is old.stats[0].latency  # the registry's metric, by name
    assert old.stats[0].counts.latency_sum_micros == 100 and old.stats[0].counts.requests == 1
    new.stats[0].record(1, 0, 0, 700)
    new.stats[0].flush()
    assert new.stats[0].counts.latency_sum_micros == 700 and old.stats[0].counts.latency_sum_micros == 100


def test_traffic_config_json_round_trip():
    cfg = TrafficConfig(
        (Target("m", "1", 0.9), Target("m", "2", 0.1)),
        "user",
        Shadow("m", "3", 10.0),
        Selection("exp3", 0.2, 0.05),
    )
    assert TrafficConfig.from_json(cfg.to_json()) == cfg
    assert cfg.fingerprint() != TrafficConfig(cfg.targets).fingerprint()


# -- the stores' contract --------------------------------------------------------------------------


def test_store_traffic_contract(store):  # noqa: F811 - the fixture
    store.add_app(app("a"))
    store.add_model(model("m", "1"))
    assert store.get_app_traffic("a") is None and store.snapshot().traffic == {}
    cfg = TrafficConfig((Target("m", "1", 1.0),), shadow=Shadow("m", "2", 5.0))
    store.set_app_traffic("a", cfg)
    assert store.get_app_traffic("a") == cfg
    assert store.snapshot().traffic == {"a": cfg}
    assert store.add_selection_weights("a", {"m:1": 0.5}) == {"m:1": 0.5}
    assert store.add_selection_weights("a", {"m:1": 0.25, "m:2": -1.0}) == {"m:1": 0.75, "m:2": -1.0}
    assert store.get_selection_weights("a") == {"m:1": 0.75, "m:2": -1.0}
    store.put_traffic_stats("a", "fe1", "x")
    store.put_traffic_stats("a", "fe2", "y")
    store.put_traffic_stats("a", "fe1", "z")
    assert sorted(store.list_traffic_stats("a")) == ["y", "z"]
    store.set_app_traffic("a", cfg)  # a new configuration drops the old state and statistics
    assert store.get_selection_weights("a") == {} and store.list_traffic_stats("a") == []
    store.add_selection_weights("a", {"m:1": 1.0})
    store.delete_app("a")
    assert store.get_app_traffic("a") is None and store.get_selection_weights("a") == {}
    store.add_app(app("a"))
    assert store.get_app_traffic("a") is None  # a re-added app starts plain


def test_concurrent_selection_additions_are_not_lost(store_url):  # noqa: F811 - the fixture
    stores = [open_store(store_url) for _ in range(4)]
    try:
        stores[0].add_app(app("a"))

        def add(s) -> None:
            for _ in range(50):
                s.add_selection_weights("a", {"m:1": 1.0})

        threads = [threading.Thread(target=add, args=(s,)) for s in stores]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert stores[0].get_selection_weights("a") == {"m:1": 200.0}
    finally:
        for s in stores:
            s.close()


def test_traffic_writes_notify_but_state_writes_do_not(store_url):  # noqa: F811 - the fixture
    writer, reader = open_store(store_url), open_store(store_url)
    writer.add_app(app("a"))
    events = threading.Semaphore(0)
    sub = reader.subscribe(events.release)
    try:
        if hasattr(sub, "wait_connected"):
            assert sub.wait_connected(5)
        while events.acquire(timeout=0.3):
            pass
        writer.add_selection_weights("a", {"m:1": 1.0})
        writer.put_traffic_stats("a", "fe", "{}")
        assert not events.acquire(timeout=0.3), "a state write notified the frontends"
        writer.set_app_traffic("a", TrafficConfig((Target("m", "1", 1.0),)))
        assert events.acquire(timeout=5), "no change notification for a traffic configuration"
    finally:
        sub.close()
        writer.close()
        reader.close()
