"""The management frontend's reconciler-state routes (issue 14: the apply lock and the ownership
records live in the cluster): /admin/acquire_lease, renew_lease, release_lease, get_record,
put_record, over HTTP on both config stores, token-protected like every /admin route."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from tests.integration.test_management_frontend import TOKEN, Frontend, redis_server  # noqa: F401


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def fe(request, tmp_path_factory) -> Iterator[Frontend]:
    home = tmp_path_factory.mktemp(request.param)
    url = (
        f"sqlite://{home}/config.db"
        if request.param == "sqlite"
        else request.getfixturevalue("redis_server").url
    )
    frontend = Frontend(url, home, token=TOKEN)
    yield frontend
    frontend.stop()


def test_the_lease_over_http(fe):
    take = {"name": "apply", "holder": "ci-1", "ttl_ms": 30_000}
    assert fe.post("acquire_lease", take).json() == {"acquired": True, "holder": "ci-1"}
    other = {**take, "holder": "ci-2"}
    assert fe.post("acquire_lease", other).json() == {"acquired": False, "holder": "ci-1"}
    assert fe.post("renew_lease", other).json() == {"renewed": False}
    assert fe.post("release_lease", {"name": "apply", "holder": "ci-2"}).json() == {"released": False}
    assert fe.post("renew_lease", take).json() == {"renewed": True}
    assert fe.post("release_lease", {"name": "apply", "holder": "ci-1"}).json() == {"released": True}
    assert fe.post("acquire_lease", other).json() == {"acquired": True, "holder": "ci-2"}
    fe.post("release_lease", {"name": "apply", "holder": "ci-2"})


def test_records_over_http(fe):
    key = {"namespace": "reconciler", "key": "ownership"}
    assert fe.post("get_record", key).json() == {"value": None}
    assert fe.post("put_record", {**key, "value": '{"apps": {}}'}).json() == {"stored": True}
    assert fe.post("get_record", key).json() == {"value": '{"apps": {}}'}
    assert fe.post("put_record", {**key, "value": None}).json() == {"stored": False}
    assert fe.post("get_record", key).json() == {"value": None}


def test_several_records_over_http_in_one_request(fe):
    for i in (1, 3):
        fe.post("put_record", {"namespace": "bulk", "key": f"rollout/m{i}", "value": f"r{i}"})
    body = {"namespace": "bulk", "keys": ["rollout/m1", "rollout/m2", "rollout/m3"]}
    assert fe.post("get_records", body).json() == {
        "values": {"rollout/m1": "r1", "rollout/m2": None, "rollout/m3": "r3"}
    }
    assert fe.post("get_records", {"namespace": "bulk", "keys": []}).json() == {"values": {}}


@pytest.mark.parametrize(
    ("route", "body", "says"),
    [
        ("acquire_lease", {"name": "", "holder": "h", "ttl_ms": 1000}, "'name' must be a non-empty string"),
        ("acquire_lease", {"name": "a", "holder": "h", "ttl_ms": 0}, "'ttl_ms' must be between 1 and"),
        ("acquire_lease", {"name": "a", "holder": "h"}, "ttl_ms"),
        ("renew_lease", {"name": "a", "holder": "x" * 300, "ttl_ms": 5}, "'holder' must be a non-empty"),
        ("put_record", {"namespace": "n", "key": "k", "value": 3}, "value"),
        ("put_record", {"namespace": "n", "key": "k"}, "value"),
        ("put_record", [], "object"),
        ("get_record", {"namespace": "n"}, "key"),
        ("get_records", {"namespace": "n"}, "keys"),
        ("get_records", {"namespace": "n", "keys": "k"}, "keys"),
        ("get_records", {"namespace": "n", "keys": ["k", 3]}, "string"),
        ("get_records", {"namespace": "n", "keys": [""]}, "every key must be a non-empty string"),
        ("get_records", {"namespace": "n", "keys": ["k"] * 10_001}, "at most 10000 per request"),
        ("get_records", {"namespace": "", "keys": ["k"]}, "'namespace' must be a non-empty string"),
        ("get_all_app_traffic", [], "JSON object"),
    ],
)
def test_bad_requests_are_400s_saying_what_is_wrong(fe, route, body, says):
    r = fe.post(route, body)
    assert r.status_code == 400, r.text
    assert says in r.text


def test_the_routes_need_the_token(fe):
    routes = ("acquire_lease", "renew_lease", "release_lease", "get_record", "get_records", "put_record")
    for route in (*routes, "get_all_app_traffic"):
        r = requests.post(f"{fe.url}/admin/{route}", json={}, timeout=10)
        assert r.status_code == 401, route
