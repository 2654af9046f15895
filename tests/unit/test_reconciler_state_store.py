"""The config stores' reconciler state (issue 14): an apply lease that expires, and records; both
stores (SQLite and a real redis-server), several store objects standing for several processes."""

from __future__ import annotations

import threading
import time

from clipper.config_store import open_store
from tests.unit.test_config_store import redis_server, store, store_url, wait_for  # noqa: F401


def test_a_lease_has_one_holder_until_released(store_url):  # noqa: F811
    a, b = open_store(store_url), open_store(store_url)
    try:
        assert a.acquire_lease("apply", "runner-a", 30) == "runner-a"
        assert b.acquire_lease("apply", "runner-b", 30) == "runner-a"  # held: b is told by whom
        assert a.acquire_lease("apply", "runner-a", 30) == "runner-a"  # its holder re-takes (renews) it
        assert not b.renew_lease("apply", "runner-b", 30) and not b.release_lease("apply", "runner-b")
        assert b.acquire_lease("apply", "runner-b", 30) == "runner-a"  # a foreign release changed nothing
        assert a.renew_lease("apply", "runner-a", 30)
        assert a.release_lease("apply", "runner-a")
        assert b.acquire_lease("apply", "runner-b", 30) == "runner-b"
        assert a.acquire_lease("other", "runner-a", 30) == "runner-a"  # leases are independent
    finally:
        a.close()
        b.close()


def test_a_lease_its_holder_stops_renewing_expires(store_url):  # noqa: F811
    a, b = open_store(store_url), open_store(store_url)
    try:
        assert a.acquire_lease("apply", "dead", 0.3) == "dead"
        assert b.acquire_lease("apply", "next", 30) == "dead"
        assert wait_for(lambda: b.acquire_lease("apply", "next", 30) == "next", timeout=10)
        assert not a.renew_lease("apply", "dead", 30)  # too late: the lease is someone else's
    finally:
        a.close()
        b.close()


def test_only_one_of_many_concurrent_acquirers_wins(store_url):  # noqa: F811
    stores = [open_store(store_url) for _ in range(6)]
    winners: list[str] = []
    start = threading.Barrier(len(stores))

    def race(i: int) -> None:
        start.wait()
        if stores[i].acquire_lease("apply", f"h{i}", 30) == f"h{i}":
            winners.append(f"h{i}")

    threads = [threading.Thread(target=race, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in stores:
        s.close()
    assert len(winners) == 1


def test_records_round_trip_and_are_not_configuration(store):  # noqa: F811
    changes: list[float] = []
    sub = store.subscribe(lambda: changes.append(time.monotonic()))
    try:
        assert store.get_record("reconciler", "ownership") is None
        store.put_record("reconciler", "ownership", '{"apps": {}}')
        store.put_record("history", "ownership", "other namespace")
        assert store.get_record("reconciler", "ownership") == '{"apps": {}}'
        store.put_record("reconciler", "ownership", None)
        assert store.get_record("reconciler", "ownership") is None
        assert store.get_record("history", "ownership") == "other namespace"
        store.acquire_lease("apply", "x", 30)
        time.sleep(0.3)
        assert changes == []  # query frontends do not reload their configuration for these
    finally:
        sub.close()


def test_several_records_read_at_once(store_url):  # noqa: F811
    s = open_store(store_url)
    try:
        keys = [f"rollout/m{i}" for i in range(1200)]  # more than one SQLite statement's variables
        for k in keys[::3]:
            s.put_record("reconciler", k, f"value of {k}")
        s.put_record("other", "rollout/m1", "another namespace")
        got = s.get_records("reconciler", [*keys, "rollout/m0"])  # a repeated key is answered once
        assert list(got) == keys
        assert got == {k: (f"value of {k}" if i % 3 == 0 else None) for i, k in enumerate(keys)}
        assert s.get_records("reconciler", []) == {}
        assert s.get_records("nothing-here", ["a"]) == {"a": None}
    finally:
        s.close()
