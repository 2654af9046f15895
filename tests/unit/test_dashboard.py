"""The dashboard's sessions, authorization, CSRF, actions and metrics sampling (no browser)."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from clipper.config_store import open_store
from clipper.config_store.base import AppRecord, ConfigStore, ContainerRecord, ModelRecord
from clipper.http.server import Request, Response
from clipper.management_frontend.app import ManagementApp
from clipper.management_frontend.dashboard.auth import COOKIE
from clipper.management_frontend.dashboard.metrics import MetricsPoller
from clipper.metrics.registry import MetricsRegistry

TOKEN = "s3cret-token"
DATA = [
    "/dashboard/api/session",
    "/dashboard/api/overview",
    "/dashboard/api/metrics",
    "/dashboard/api/logs?model=m&version=1",
    "/dashboard/api/history",
]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ConfigStore]:
    s = open_store(f"sqlite:///{tmp_path}/config.db")
    s.add_app(AppRecord("app", "doubles", "-1.0", 100000))
    s.add_model(ModelRecord("m", "1", "doubles", container_name="img:1"))
    s.add_model(ModelRecord("m", "2", "doubles", container_name="img:2"))
    s.add_link("app", "m")
    s.put_container(ContainerRecord("m", "2", 0, "doubles", "query"))
    yield s
    s.close()


def call(app: ManagementApp, method: str, target: str, body: bytes = b"", **headers: str) -> Response:
    path, _, query = target.partition("?")
    hdrs = {k.replace("_", "-").lower(): v for k, v in headers.items()}
    return app(Request(method, path, query, hdrs, body, True))


def header(resp: Response, name: str) -> str | None:
    return next((v for k, v in resp.headers if k.lower() == name.lower()), None)


def login(app: ManagementApp, token: str = TOKEN) -> Response:
    return call(
        app, "POST", "/dashboard/login", f"token={token}".encode(),
        content_type="application/x-www-form-urlencoded",
    )  # fmt: skip


def session_cookie(app: ManagementApp) -> tuple[str, str]:
    """(Cookie header, CSRF token) of a fresh session."""
    resp = login(app)
    cookie = header(resp, "Set-Cookie")
    assert cookie is not None
    pair = cookie.split(";")[0]
    csrf = orjson.loads(call(app, "GET", "/dashboard/api/session", cookie=pair).body)["csrf"]
    return pair, csrf


def test_nothing_readable_without_a_session(store: ConfigStore) -> None:
    app = ManagementApp(store, admin_token=TOKEN)
    for target in DATA:
        for cookie in ("", f"{COOKIE}=forged", f"other={COOKIE}"):
            resp = call(app, "GET", target, cookie=cookie)
            assert resp.status == 401, (target, cookie)
            assert b"app" not in resp.body.replace(b"admin", b"")
    assert call(app, "POST", "/dashboard/api/action", b"{}").status == 401
    page = call(app, "GET", "/dashboard")
    assert page.status == 200 and b'action="/dashboard/login"' in page.body  # the login page only


def test_wrong_token_is_refused_and_the_right_one_sets_a_strict_httponly_cookie(store: ConfigStore) -> None:
    app = ManagementApp(store, admin_token=TOKEN)
    bad = login(app, "nope")
    assert bad.status == 401 and b"Wrong token" in bad.body and header(bad, "Set-Cookie") is None
    ok = login(app)
    assert ok.status == 303 and header(ok, "Location") == "/dashboard"
    cookie = header(ok, "Set-Cookie") or ""
    flags = [f.strip() for f in cookie.split(";")]
    assert flags[0].startswith(f"{COOKIE}=") and TOKEN not in cookie
    assert "HttpOnly" in flags and "SameSite=Strict" in flags and "Path=/dashboard" in flags
    # JSON login works too; the bearer header alone opens no dashboard data
    js = call(
        app, "POST", "/dashboard/login", orjson.dumps({"token": TOKEN}), content_type="application/json"
    )
    assert js.status == 303
    assert call(app, "GET", "/dashboard/api/overview", authorization=f"Bearer {TOKEN}").status == 401


def test_a_session_reads_the_views(store: ConfigStore) -> None:
    app = ManagementApp(store, admin_token=TOKEN)
    cookie, _ = session_cookie(app)
    page = call(app, "GET", "/dashboard", cookie=cookie)
    assert page.status == 200 and b"/dashboard/static/app.js" in page.body
    assert "Content-Security-Policy" in dict(page.headers)
    o = orjson.loads(call(app, "GET", "/dashboard/api/overview", cookie=cookie).body)
    assert [a["name"] for a in o["apps"]] == ["app"]
    assert o["apps"][0]["traffic"]["targets"][0]["model_version"] == "2"
    (m,) = o["models"]
    assert (m["current"], m["previous"]) == ("2", "1")
    assert o["replicas"][0]["state"] == "connected"
    assert o["cluster"]["sync"] == "not recorded"
    logs = orjson.loads(call(app, "GET", "/dashboard/api/logs?model=m&version=1", cookie=cookie).body)
    assert logs == {"available": False, "reason": "replica logs are not available on this backend"}
    assert call(app, "GET", "/dashboard/static/app.js").status == 200  # code, no data
    assert call(app, "GET", "/dashboard/static/../app.py").status == 404
    assert call(app, "GET", "/dashboard/static/index.html").status == 404


def test_actions_need_the_sessions_csrf_token_and_are_audited(store: ConfigStore) -> None:
    app = ManagementApp(store, admin_token=TOKEN)
    cookie, csrf = session_cookie(app)
    other_cookie, other_csrf = session_cookie(app)
    body = orjson.dumps({"action": "set_model_version", "model_name": "m", "model_version": "1"})
    assert call(app, "POST", "/dashboard/api/action", body, cookie=cookie).status == 403
    assert call(app, "POST", "/dashboard/api/action", body, cookie=cookie, x_csrf_token="x").status == 403
    assert (
        call(app, "POST", "/dashboard/api/action", body, cookie=cookie, x_csrf_token=other_csrf).status == 403
    )
    assert store.get_current_version("m") == "2"
    ok = call(app, "POST", "/dashboard/api/action", body, cookie=cookie, x_csrf_token=csrf)
    assert ok.status == 200, ok.body
    assert store.get_current_version("m") == "1"
    bad = orjson.dumps({"action": "set_model_version", "model_name": "m", "model_version": "9"})
    refused = call(app, "POST", "/dashboard/api/action", bad, cookie=cookie, x_csrf_token=csrf)
    assert refused.status == 400
    unknown = orjson.dumps({"action": "delete_app", "name": "app"})
    assert call(app, "POST", "/dashboard/api/action", unknown, cookie=cookie, x_csrf_token=csrf).status == 400
    assert store.get_app("app") is not None
    hist = orjson.loads(call(app, "GET", "/dashboard/api/history", cookie=other_cookie).body)["entries"]
    assert [(e["kind"], e["what"], e["ok"]) for e in hist] == [
        ("dashboard", "set_model_version", False),
        ("dashboard", "set_model_version", True),
    ]
    assert hist[1]["args"] == {"model_name": "m", "model_version": "1"} and hist[1]["who"] == "admin token"


def test_logout_ends_the_session(store: ConfigStore) -> None:
    app = ManagementApp(store, admin_token=TOKEN)
    cookie, csrf = session_cookie(app)
    assert call(app, "POST", "/dashboard/logout", cookie=cookie).status == 403  # CSRF applies
    out = call(app, "POST", "/dashboard/logout", cookie=cookie, x_csrf_token=csrf)
    assert out.status == 200 and "Max-Age=0" in (header(out, "Set-Cookie") or "")
    assert call(app, "GET", "/dashboard/api/overview", cookie=cookie).status == 401


def test_without_a_token_the_dashboard_is_open_but_actions_still_need_csrf(store: ConfigStore) -> None:
    app = ManagementApp(store, admin_token=None)
    for target in DATA:
        assert call(app, "GET", target).status == 200, target
    csrf = orjson.loads(call(app, "GET", "/dashboard/api/session").body)["csrf"]
    body = orjson.dumps({"action": "set_model_version", "model_name": "m", "model_version": "1"})
    assert call(app, "POST", "/dashboard/api/action", body).status == 403
    assert call(app, "POST", "/dashboard/api/action", body, x_csrf_token=csrf).status == 200
    assert store.get_current_version("m") == "1"


def test_replica_logs_and_restarts_from_the_local_cluster_dir(store: ConfigStore, tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "model-m-2-0.log").write_text("".join(f"line {i}\n" for i in range(100)))
    (tmp_path / "status.json").write_text('{"processes": {"model/m/2/0": {"restarts": 3}}}')
    app = ManagementApp(store, admin_token=None, cluster_dir=str(tmp_path))
    logs = orjson.loads(call(app, "GET", "/dashboard/api/logs?model=m&version=2").body)
    (rep,) = logs["replicas"]
    assert rep["replica"] == "0" and rep["lines"][-1] == "line 99" and len(rep["lines"]) == 40
    assert call(app, "GET", "/dashboard/api/logs?model=..&version=2").status == 400
    o = orjson.loads(call(app, "GET", "/dashboard/api/overview").body)
    assert o["replicas"][0]["restarts"] == 3


class _MetricsHandler(http.server.BaseHTTPRequestHandler):
    registry: MetricsRegistry

    def do_GET(self) -> None:  # noqa: N802
        body = self.registry.to_json()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_the_poller_turns_a_frontends_metrics_into_series() -> None:
    reg = MetricsRegistry(process_metrics=False)
    count = reg.counter("app:app:num_predictions")
    lat = reg.histogram("app:app:prediction_latency", "microseconds", 100)
    batch = reg.histogram("model:m:2:batch_size", "queries", 100)
    _MetricsHandler.registry = reg
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _MetricsHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        poller = MetricsPoller([f"http://127.0.0.1:{server.server_port}/metrics"])
        poller.sample_once(now=100.0)
        count.increment(50)
        for v in (1000, 2000, 30000):
            lat.insert(v)
        batch.insert(4)
        poller.sample_once(now=102.0)
        s = poller.series(since=101.0)
        assert len(s) == 1 and len(poller.series()) == 2
        a = s[0]["apps"]["app"]
        assert a["qps"] == pytest.approx(25.0) and a["p50_ms"] == pytest.approx(2.0)
        assert s[0]["models"]["m:2"]["batch_mean"] == pytest.approx(4.0)
        down = MetricsPoller(["http://127.0.0.1:1/metrics"], timeout_s=0.5)
        down.sample_once()
        assert not down.samples and "http://127.0.0.1:1/metrics" in down.errors
    finally:
        server.shutdown()
        server.server_close()


def test_audit_and_apply_history_live_in_the_store(store: ConfigStore) -> None:
    """A second management frontend on the same store sees the first one's dashboard actions, and
    the reconciler's apply history (its record, without the desired state) is shown with the sync."""
    history = [
        {"number": 1, "time": "2026-12-01T06:00:00Z", "revision": "abc123", "who": "ops@host",
         "changes": ["create Model/m"], "result": "succeeded", "desired": {"models": {}}},
    ]  # fmt: skip
    store.put_record("reconciler", "history", orjson.dumps(history).decode())
    first = ManagementApp(store, admin_token=None)
    csrf = orjson.loads(call(first, "GET", "/dashboard/api/session").body)["csrf"]
    body = orjson.dumps({"action": "set_model_version", "model_name": "m", "model_version": "1"})
    assert call(first, "POST", "/dashboard/api/action", body, x_csrf_token=csrf).status == 200
    second = ManagementApp(store, admin_token=None)
    h = orjson.loads(call(second, "GET", "/dashboard/api/history").body)
    assert [(e["kind"], e["what"]) for e in h["entries"]] == [("dashboard", "set_model_version")]
    assert h["applies"] == [{k: v for k, v in history[0].items() if k != "desired"}]
    sync = orjson.loads(call(second, "GET", "/dashboard/api/overview").body)["cluster"]["sync"]
    assert sync.startswith("#1 succeeded · abc123")


def test_traffic_weights_set_from_the_dashboard(store: ConfigStore) -> None:
    app = ManagementApp(store, admin_token=TOKEN)
    cookie, csrf = session_cookie(app)
    targets = [
        {"model_name": "m", "model_version": "1", "weight": 1.0},
        {"model_name": "m", "model_version": "2", "weight": 3.0},
    ]
    body = orjson.dumps({"action": "set_app_traffic", "name": "app", "targets": targets})
    ok = call(app, "POST", "/dashboard/api/action", body, cookie=cookie, x_csrf_token=csrf)
    assert ok.status == 200, ok.body
    cfg = store.get_app_traffic("app")
    assert cfg is not None and [t.weight for t in cfg.targets] == [1.0, 3.0]
    o = orjson.loads(call(app, "GET", "/dashboard/api/overview", cookie=cookie).body)
    assert [t["weight"] for t in o["apps"][0]["traffic"]["targets"]] == [1.0, 3.0]
    # a weight the API refuses is refused here too, with its message, and the config is unchanged
    bad = orjson.dumps(
        {"action": "set_app_traffic", "name": "app", "targets": [{**targets[0], "weight": -1}]}
    )
    refused = call(app, "POST", "/dashboard/api/action", bad, cookie=cookie, x_csrf_token=csrf)
    assert refused.status == 400 and orjson.loads(refused.body)["ok"] is False
    assert [t.weight for t in (store.get_app_traffic("app") or cfg).targets] == [1.0, 3.0]
