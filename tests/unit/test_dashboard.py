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


# -- rollouts: the reconciler's records, read by the dashboard; promote / abort as command records ----
def _rollout(store: ConfigStore | None, cluster_dir: Path | None = None, phase: str = "Progressing") -> None:
    """A canary of m (1 -> 2) at its second step, recorded by the reconciler's own code (the format the
    dashboard reads is the reconciler's: this fails if the two drift apart)."""
    from reconciler.rollout import AppSplit, RolloutRecord, RolloutStore

    record = RolloutRecord(
        model="m", from_version="1", to_version="2", strategy="canary",
        steps=[{"weight": 10.0, "pause": 30.0}, {"weight": 50.0, "pause": 60.0}],
        analysis={"max_error_rate": 0.05, "max_default_rate": None, "max_p99_latency_ratio": 1.5,
                  "min_requests": 20, "step_timeout_seconds": 300.0},
        apps=[AppSplit("app", None, 100000)], phase=phase, step=1, weight=50.0,
        reason=None if phase == "Progressing" else "step 2 (50%): error rate 0.2 > maxErrorRate 0.05",
        numbers={"requests": 42, "errors": 1, "defaults": 0, "errorRate": 1 / 42, "defaultRate": 0.0,
                 "p99LatencyRatio": 0.4, "elapsedSeconds": 12.0}, who="ops@host",
    )  # fmt: skip
    RolloutStore(cluster_dir, store).put(record)


def _act(app: ManagementApp, body: dict[str, object], cookie: str = "", csrf: str | None = None) -> Response:
    headers = {"cookie": cookie} if cookie else {}
    if csrf is not None:
        headers["x_csrf_token"] = csrf
    return call(app, "POST", "/dashboard/api/action", orjson.dumps(body), **headers)


def test_the_rollout_view_reads_the_reconcilers_record_from_the_store(store: ConfigStore) -> None:
    app = ManagementApp(store, admin_token=TOKEN)
    assert call(app, "GET", "/dashboard/api/rollouts").status == 401  # a session is needed
    cookie, _ = session_cookie(app)
    empty = orjson.loads(call(app, "GET", "/dashboard/api/rollouts", cookie=cookie).body)
    assert empty == {"available": True, "source": "store", "actions": True, "rollouts": []}
    _rollout(store)
    body = orjson.loads(call(app, "GET", "/dashboard/api/rollouts", cookie=cookie).body)
    (r,) = body["rollouts"]
    assert (r["model"], r["from_version"], r["to_version"], r["phase"], r["step"]) == (
        "m",
        "1",
        "2",
        "Progressing",
        1,
    )
    assert [s["weight"] for s in r["steps"]] == [10.0, 50.0] and r["weight"] == 50.0
    assert r["numbers"]["requests"] == 42 and r["analysis"]["max_error_rate"] == 0.05
    assert r["apps"] == ["app"] and r["pending"] is None and r["who"] == "ops@host"
    # a record that is not one (corrupt, or another format) is skipped, not a 500
    for junk in ("{not json", "[1, 2]", '{"model": "m", "steps": "all"}'):
        store.put_record("reconciler", "rollout/m", junk)
        resp = call(app, "GET", "/dashboard/api/rollouts", cookie=cookie)
        assert resp.status == 200 and orjson.loads(resp.body)["rollouts"] == [], junk


def test_rollout_promote_and_abort_leave_the_command_the_driving_apply_takes(store: ConfigStore) -> None:
    from reconciler.rollout import RolloutStore

    app = ManagementApp(store, admin_token=TOKEN)
    cookie, csrf = session_cookie(app)
    _rollout(store)
    promote = {"action": "rollout_promote", "model": "m"}
    assert _act(app, promote).status == 401  # no session
    assert _act(app, promote, cookie).status == 403  # no CSRF token
    assert _act(app, promote, cookie, "wrong").status == 403
    assert store.get_record("reconciler", "rollout-command/m") is None
    ok = _act(app, promote, cookie, csrf)
    assert ok.status == 200, ok.body
    assert "next poll" in orjson.loads(ok.body)["result"]
    # the dashboard shows the pending request until the apply takes it
    (r,) = orjson.loads(call(app, "GET", "/dashboard/api/rollouts", cookie=cookie).body)["rollouts"]
    assert r["pending"]["command"] == "promote" and r["pending"]["who"].startswith("the dashboard (session ")
    # ... which the reconciler's own code reads as clipper rollout promote's request
    taken = RolloutStore(None, store).take_command("m")
    assert taken is not None and taken[0] == "promote" and taken[1].startswith("the dashboard")
    abort = _act(app, {"action": "rollout_abort", "model": "m"}, cookie, csrf)
    assert abort.status == 200 and RolloutStore(None, store).take_command("m") == ("abort", taken[1])
    hist = orjson.loads(call(app, "GET", "/dashboard/api/history", cookie=cookie).body)["entries"]
    assert [(e["kind"], e["what"], e["args"], e["ok"], e["who"]) for e in hist] == [
        ("dashboard", "rollout_abort", {"model": "m"}, True, "admin token"),
        ("dashboard", "rollout_promote", {"model": "m"}, True, "admin token"),
    ]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"action": "rollout_promote"}, "give the model"),
        ({"action": "rollout_promote", "model": 3}, "give the model"),
        ({"action": "rollout_abort", "model": "m", "force": True}, "give the model"),
        (
            {"action": "rollout_abort", "model": "nope"},
            "no rollout of model 'nope' is in progress (none is recorded)",
        ),
        (
            {"action": "rollout_promote", "model": "m"},
            "no rollout of model 'm' is in progress (the last one RolledBack)",
        ),
    ],
)
def test_rollout_actions_refuse_bad_input_with_a_clear_400(
    store: ConfigStore, body: dict[str, object], message: str
) -> None:
    app = ManagementApp(store, admin_token=TOKEN)
    cookie, csrf = session_cookie(app)
    _rollout(store, phase="RolledBack")
    resp = _act(app, body, cookie, csrf)
    assert resp.status == 400, resp.body
    entry = orjson.loads(resp.body)
    assert message in entry["result"] and entry["ok"] is False
    assert store.get_record("reconciler", "rollout-command/m") is None
    assert store.get_record("reconciler", "rollout-command/nope") is None
    # the rolled-back rollout shows with its reason
    (r,) = orjson.loads(call(app, "GET", "/dashboard/api/rollouts", cookie=cookie).body)["rollouts"]
    assert r["phase"] == "RolledBack" and "error rate 0.2 > maxErrorRate" in r["reason"]


def test_without_a_token_rollouts_are_read_from_the_cluster_dir_and_not_acted_on(
    store: ConfigStore, tmp_path: Path
) -> None:
    _rollout(None, tmp_path)  # where the reconciler keeps them when the admin API has no token
    app = ManagementApp(store, admin_token=None, cluster_dir=str(tmp_path))
    body = orjson.loads(call(app, "GET", "/dashboard/api/rollouts").body)
    assert body["source"] == "cluster directory" and body["actions"] is False
    assert [r["model"] for r in body["rollouts"]] == ["m"]
    csrf = orjson.loads(call(app, "GET", "/dashboard/api/session").body)["csrf"]
    refused = _act(app, {"action": "rollout_abort", "model": "m"}, csrf=csrf)
    assert refused.status == 403 and "only with an admin token" in orjson.loads(refused.body)["result"]
    assert not (tmp_path / "reconciler" / "rollout-command-m.json").exists()
    # neither token nor cluster directory: the view says where to look instead
    blind = orjson.loads(call(ManagementApp(store), "GET", "/dashboard/api/rollouts").body)
    assert blind["available"] is False and "clipper rollout status" in blind["reason"]


def test_scaling_without_a_local_cluster_dir_is_refused_with_the_reason_and_the_way_that_works(
    store: ConfigStore,
) -> None:
    app = ManagementApp(store, admin_token=TOKEN)  # Docker, Kubernetes: no cluster directory here
    cookie, csrf = session_cookie(app)
    session = orjson.loads(call(app, "GET", "/dashboard/api/session", cookie=cookie).body)
    assert "set_num_replicas" in session["unavailable"] and "set_num_replicas" not in session["actions"]
    body = {"action": "set_num_replicas", "model_name": "m", "model_version": "2", "num_replicas": 3}
    resp = _act(app, body, cookie, csrf)
    assert resp.status == 400
    error = orjson.loads(resp.body)["error"]
    assert "container manager" in error and "spec.replicas" in error and "set_num_replicas(" in error


def test_scaling_on_the_local_backend_edits_the_supervisors_process_table(
    store: ConfigStore, tmp_path: Path
) -> None:
    from clipper_admin.local.state import ClusterDir

    spec = {"argv": ["python", "-m", "clipper.container"], "env": {"A": "1"}, "cwd": "/models/m/2"}
    with ClusterDir(tmp_path).edit_desired() as table:  # as the local container manager left it
        table.update({"management": {"argv": ["mgmt"]}, "model/m/2/0": spec})
    app = ManagementApp(store, admin_token=TOKEN, cluster_dir=str(tmp_path))
    cookie, csrf = session_cookie(app)
    session = orjson.loads(call(app, "GET", "/dashboard/api/session", cookie=cookie).body)
    assert "set_num_replicas" in session["actions"] and session["unavailable"] == {}
    scale = {"action": "set_num_replicas", "model_name": "m", "model_version": "2"}
    assert _act(app, {**scale, "num_replicas": 3}, cookie).status == 403  # CSRF
    ok = _act(app, {**scale, "num_replicas": 3}, cookie, csrf)
    assert ok.status == 200, ok.body
    assert "1 -> 3 replica(s)" in orjson.loads(ok.body)["result"]
    desired = ClusterDir(tmp_path).read_desired()
    assert sorted(desired) == ["management", "model/m/2/0", "model/m/2/1", "model/m/2/2"]
    assert desired["model/m/2/2"] == spec  # the same command as the replica already there
    o = orjson.loads(call(app, "GET", "/dashboard/api/overview", cookie=cookie).body)
    assert {v["version"]: v["desired_replicas"] for v in o["models"][0]["versions"]} == {"1": None, "2": 3}
    assert _act(app, {**scale, "num_replicas": 1}, cookie, csrf).status == 200
    assert sorted(ClusterDir(tmp_path).read_desired()) == ["management", "model/m/2/0"]
    # bad input: a clear 400, the table untouched
    for bad, message in [
        ({**scale, "num_replicas": 0}, "from 1 to 32"),
        ({**scale, "num_replicas": 33}, "from 1 to 32"),
        ({**scale, "num_replicas": "2"}, "from 1 to 32"),
        ({**scale, "num_replicas": True}, "from 1 to 32"),
        ({"action": "set_num_replicas", "model_name": "m", "num_replicas": 2}, "give model_name"),
        ({**scale, "model_version": "9", "num_replicas": 2}, "m:9 is not registered"),
        (
            {**scale, "model_version": "1", "num_replicas": 2},
            "m:1 has no replica in the cluster's process table",
        ),
    ]:
        resp = _act(app, bad, cookie, csrf)
        assert resp.status == 400 and message in orjson.loads(resp.body)["result"], (bad, resp.body)
    assert sorted(ClusterDir(tmp_path).read_desired()) == ["management", "model/m/2/0"]
    hist = orjson.loads(call(app, "GET", "/dashboard/api/history", cookie=cookie).body)["entries"]
    assert [(e["what"], e["ok"]) for e in hist][-2:] == [
        ("set_num_replicas", True),
        ("set_num_replicas", True),
    ]
