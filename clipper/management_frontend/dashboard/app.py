"""``/dashboard``: the web dashboard of the management frontend (same listener, same admin token).

Pages and static files are plain HTML/CSS/JS shipped in ``static/`` (no build step, nothing fetched
from elsewhere). Data comes from ``/dashboard/api/*`` (JSON, polled by the page every 2 s), which
reads the config store, the query frontends' ``/metrics`` (through :class:`MetricsPoller`) and, on
the local backend, the cluster directory (replica logs and restart counts). Actions go through the
management API's own handlers (same validation, same messages) and are recorded in an audit log.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from collections import deque
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import orjson

import clipper
from clipper.config_store.base import ConfigStore
from clipper.http.server import Request, Response
from clipper.management_frontend.dashboard.auth import CSRF_HEADER, Session, Sessions
from clipper.management_frontend.dashboard.metrics import MetricsPoller
from clipper.management_frontend.handlers import AdminHandlers, Reply
from clipper.process_table import (
    edit_processes,
    model_replicas,
    parse_model_process_id,
    read_processes,
    scale_replicas,
)

HTML = "text/html; charset=utf-8"
STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".html": HTML}
SECURITY_HEADERS = (
    (
        "Content-Security-Policy",
        "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
)
SCALE = "set_num_replicas"
ACTIONS = {"set_model_version": "switch the current version of a model (roll back / forward)",
           "set_app_traffic": "set an application's traffic weights",
           "rollout_promote": "ask the apply driving a model's rollout to promote it (100 % now)",
           "rollout_abort": "ask the apply driving a model's rollout to abort it (roll back)",
           SCALE: "set the number of replicas of a model version (local backend: the supervisor's process table)"}  # fmt: skip
#: what the dashboard says of scaling where it cannot scale (no local cluster directory)
SCALE_ELSEWHERE = (
    "scaling starts or stops replica containers, which the container manager does on the admin side "
    "(Docker: containers; Kubernetes: the Deployment), not the management frontend, which only sees "
    "the replicas that connect. Set spec.replicas in the Model manifest and run clipper apply, or call "
    "ClipperConnection.set_num_replicas(name, num_replicas, version)."
)
#: at most this many replicas of a version from the dashboard (a typo should not start a thousand)
MAX_REPLICAS = 32
LOG_LINES = 40
AUDIT_KEEP = 200
# where the reconciler keeps its apply history in the store (reconciler.history: NAMESPACE, KEY)
APPLY_HISTORY = ("reconciler", "history")
AUDIT = ("dashboard", "audit")
# The reconciler's canary/blueGreen rollouts (reconciler/rollout.py, RolloutStore): one JSON record per
# model under ROLLOUTS_NAMESPACE/"rollout/<model>" (a RolloutRecord: model, from_version, to_version,
# strategy, steps [{weight, pause}], analysis (snake_case thresholds), apps [{app, ...}], phase, step,
# weight, reason, started, updated, step_started, numbers, who), and a pending command under
# "rollout-command/<model>" ({"command": "promote" | "abort", "who", "time"}) that the apply driving the
# rollout takes at its next poll (an apply or watch that resumes the rollout takes it too). This package
# may not import the reconciler (layering), so the format is repeated here: keep both in step.
# The reconciler keeps them in the cluster's store when its admin API requires the token, else in
# <cluster dir>/reconciler/<key with "/" as "-">.json on the applying machine.
ROLLOUTS_NAMESPACE = "reconciler"
ROLLOUT_PROGRESSING = "Progressing"
ROLLOUT_COMMANDS = {"rollout_promote": "promote", "rollout_abort": "abort"}


def _json(status: int, value: Any, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    return Response(status, orjson.dumps(value), headers=SECURITY_HEADERS + headers)


def _error(status: int, cause: str) -> Response:
    return _json(status, {"error": cause})


def _static(name: str) -> bytes:
    return resources.files("clipper.management_frontend.dashboard").joinpath("static", name).read_bytes()


def _redact_store(url: str) -> str:
    """The store URL without credentials or query (a password in ``redis://:pw@host`` stays hidden)."""
    p = urllib.parse.urlsplit(url.split("?")[0])
    host = p.hostname or ""
    netloc = f"{host}:{p.port}" if p.port else host
    return urllib.parse.urlunsplit((p.scheme, netloc, p.path, "", ""))


class Dashboard:
    """Handles every path under ``/dashboard`` (the management app routes them here)."""

    def __init__(
        self,
        store: ConfigStore,
        handlers: AdminHandlers,
        admin_token: str | None,
        *,
        store_url: str = "",
        metrics_urls: list[str] | None = None,
        cluster_dir: str | None = None,
        poll_interval_s: float = 2.0,
    ) -> None:
        self.store = store
        self.admin = handlers.routes()
        self.sessions = Sessions(admin_token)
        self.store_url = _redact_store(store_url) if store_url else "unknown"
        self.poller = MetricsPoller(list(metrics_urls or []), interval_s=poll_interval_s)
        self.cluster_dir = Path(cluster_dir) if cluster_dir else None
        # scaling: only where the cluster's process table is at hand (the local backend)
        local = self.cluster_dir is not None
        self.actions = {k: v for k, v in ACTIONS.items() if k != SCALE or local}
        self.unavailable = {} if local else {SCALE: SCALE_ELSEWHERE}
        self.audit: deque[dict[str, Any]] = deque(maxlen=AUDIT_KEEP)
        self.started = time.time()
        self._get: dict[str, Callable[[Request], Response]] = {
            "/dashboard/api/session": self.api_session,
            "/dashboard/api/overview": self.api_overview,
            "/dashboard/api/metrics": self.api_metrics,
            "/dashboard/api/logs": self.api_logs,
            "/dashboard/api/history": self.api_history,
            "/dashboard/api/rollouts": self.api_rollouts,
        }

    def start(self) -> None:
        self.poller.start()

    def stop(self) -> None:
        self.poller.stop()

    # -- routing -----------------------------------------------------------------------------------
    def __call__(self, req: Request) -> Response:
        path = req.path.rstrip("/") or "/"
        get = req.method in ("GET", "HEAD")
        if path.startswith("/dashboard/static/"):
            return self.static(req, path[len("/dashboard/static/") :]) if get else self._405("GET")
        if path == "/dashboard/login":
            return self.login(req) if req.method == "POST" else self._405("POST")
        if path == "/dashboard/logout":
            return self.logout(req) if req.method == "POST" else self._405("POST")
        session = self.sessions.lookup(req.headers.get("cookie", ""))
        if path == "/dashboard":
            if not get:
                return self._405("GET")
            page = "index.html" if session is not None else "login.html"
            return Response(200, _static(page), HTML, SECURITY_HEADERS)
        if session is None:
            return _error(401, "log in at /dashboard with the admin token")
        if path == "/dashboard/api/action":
            return self.action(req, session) if req.method == "POST" else self._405("POST")
        fn = self._get.get(path)
        if fn is None:
            return _error(404, f"no dashboard route {req.method} {req.path}")
        return fn(req) if get else self._405("GET")

    @staticmethod
    def _405(allow: str) -> Response:
        return _json(405, {"error": f"method not allowed: use {allow}"}, (("Allow", allow),))

    def static(self, req: Request, name: str) -> Response:
        suffix = Path(name).suffix
        if "/" in name or name.startswith(".") or suffix not in (".js", ".css"):
            return _error(404, f"no static file {name!r}")
        try:
            body = _static(name)
        except (FileNotFoundError, IsADirectoryError):
            return _error(404, f"no static file {name!r}")
        return Response(200, body, STATIC_TYPES[suffix], SECURITY_HEADERS)

    # -- login -------------------------------------------------------------------------------------
    def login(self, req: Request) -> Response:
        if not self.sessions.required:
            return Response(303, b"", HTML, (("Location", "/dashboard"),))
        ctype = req.headers.get("content-type", "")
        token = ""
        if ctype.startswith("application/json"):
            try:
                token = str(json.loads(req.body or b"{}").get("token", ""))
            except (ValueError, AttributeError):
                token = ""
        else:
            token = urllib.parse.parse_qs(req.body.decode("utf-8", "replace")).get("token", [""])[0]
        session = self.sessions.login(token)
        if session is None:
            page = _static("login.html").replace(b"<!--error-->", b'<p class="error">Wrong token.</p>')
            return Response(401, page, HTML, SECURITY_HEADERS)
        cookie = self.sessions.set_cookie(session)
        return Response(
            303, b"", HTML, (("Location", "/dashboard"), ("Set-Cookie", cookie), *SECURITY_HEADERS)
        )

    def logout(self, req: Request) -> Response:
        session = self.sessions.lookup(req.headers.get("cookie", ""))
        if session is not None and self.sessions.required:
            if not Sessions.csrf_ok(session, req.headers.get(CSRF_HEADER)):
                return _error(403, "missing or wrong X-CSRF-Token")
            self.sessions.logout(session.sid)
        return _json(200, {"ok": True}, (("Set-Cookie", Sessions.clear_cookie()),))

    # -- data --------------------------------------------------------------------------------------
    def api_session(self, req: Request) -> Response:
        session = self.sessions.lookup(req.headers.get("cookie", ""))
        assert session is not None  # checked by the router
        return _json(
            200,
            {"auth_required": self.sessions.required, "csrf": session.csrf, "actions": self.actions,
             "unavailable": self.unavailable},
        )  # fmt: skip

    def _admin(self, route: str, body: dict[str, Any]) -> Reply:
        return self.admin[f"/admin/{route}"][1](orjson.dumps(body))

    def _process_status(self) -> dict[str, Any]:
        if self.cluster_dir is None:
            return {}
        try:
            status = json.loads((self.cluster_dir / "status.json").read_text())
            procs = status.get("processes", {})
            return procs if isinstance(procs, dict) else {}
        except (OSError, ValueError):
            return {}

    def api_overview(self, req: Request) -> Response:
        snap = self.store.snapshot()
        procs = self._process_status()
        desired = self._desired_replicas()
        models: dict[str, dict[str, Any]] = {}
        for m in self.store.list_models():
            if not m.valid:
                continue
            entry = models.setdefault(
                m.name, {"name": m.name, "current": snap.current_versions.get(m.name), "versions": []}
            )
            entry["versions"].append(
                {"version": m.version, "image": m.container_name, "input_type": m.input_type,
                 "desired_replicas": desired.get((m.name, m.version)) if self.cluster_dir is not None else None}
            )  # fmt: skip
        for entry in models.values():
            versions = [v["version"] for v in entry["versions"]]
            cur = entry["current"]
            entry["previous"] = (
                versions[versions.index(cur) - 1] if cur in versions and versions.index(cur) > 0 else None
            )
        replicas = []
        for c in self.store.list_containers():
            proc = procs.get(f"model/{c.model_name}/{c.model_version}/{c.replica_id}", {})
            replicas.append(
                {
                    "model": c.model_name,
                    "version": c.model_version,
                    "replica": c.replica_id,
                    "frontend": c.frontend_id,
                    "state": "connected" if c.healthy else "hung",
                    "healthy": c.healthy,
                    "restarts": proc.get("restarts") if proc else None,
                }
            )
        apps = []
        for a in self.store.list_apps():
            traffic = self._admin("get_app_traffic", {"name": a.name})
            apps.append(
                {
                    "name": a.name,
                    "input_type": a.input_type,
                    "slo_ms": a.latency_slo_micros / 1000.0,
                    "default_output": a.default_output,
                    "links": self.store.get_links(a.name),
                    "traffic": orjson.loads(traffic.body) if traffic.status == 200 else None,
                }
            )
        frontends = [
            {"metrics_url": u, "up": u not in self.poller.errors and bool(self.poller.samples),
             "error": self.poller.errors.get(u)}
            for u in self.poller.urls
        ]  # fmt: skip
        cluster = {
            "version": clipper.__version__,
            "store": self.store_url,
            "backend": "local" if self.cluster_dir is not None else "not recorded",
            "frontends": frontends,
            "sync": _sync(self._apply_history()),
            "uptime_s": time.time() - self.started,
            "auth_required": self.sessions.required,
            "logs": self.cluster_dir is not None,
        }
        return _json(200, {"cluster": cluster, "apps": apps, "models": sorted(models.values(), key=lambda m: m["name"]),
                           "replicas": replicas})  # fmt: skip

    def api_metrics(self, req: Request) -> Response:
        q = urllib.parse.parse_qs(req.query or "")
        try:
            since = float(q.get("since", ["0"])[0])
        except ValueError:
            return _error(400, "since must be a number (seconds since the epoch)")
        return _json(200, {"interval_s": self.poller.interval_s, "samples": self.poller.series(since)})

    def api_logs(self, req: Request) -> Response:
        q = urllib.parse.parse_qs(req.query or "")
        name, version = q.get("model", [""])[0], q.get("version", [""])[0]
        if self.cluster_dir is None:
            return _json(
                200, {"available": False, "reason": "replica logs are not available on this backend"}
            )
        if (
            not name
            or not version
            or "/" in name + version
            or name.startswith(".")
            or version.startswith(".")
        ):
            return _error(400, "give model and version")
        out = []
        for path in sorted((self.cluster_dir / "logs").glob(f"model-{name}-{version}-*.log")):
            if path.name[len(f"model-{name}-{version}-") : -4].isdigit():
                out.append({"replica": path.name[len(f"model-{name}-{version}-") : -4], "lines": _tail(path)})
        return _json(200, {"available": True, "replicas": out})

    # -- records: the audit log and the reconciler's apply history, in the store when it keeps records
    def _get_record(self, namespace: str, key: str) -> list[dict[str, Any]] | None:
        """The JSON list under ``namespace/key``; ``None`` when this store keeps no records."""
        get = getattr(self.store, "get_record", None)
        if get is None:
            return None
        try:
            body = json.loads(get(namespace, key) or "[]")
        except ValueError:
            return []
        return [e for e in body if isinstance(e, dict)] if isinstance(body, list) else []

    def _record(self, entry: dict[str, Any]) -> None:
        self.audit.append(entry)
        entries = self._get_record(*AUDIT)
        if entries is not None:
            entries.append(entry)
            self.store.put_record(*AUDIT, json.dumps(entries[-AUDIT_KEEP:]))  # type: ignore[attr-defined,unused-ignore]

    def _audit_entries(self) -> list[dict[str, Any]]:
        stored = self._get_record(*AUDIT)
        return list(reversed(stored if stored is not None else list(self.audit)))

    def _apply_history(self) -> list[dict[str, Any]] | None:
        entries = self._get_record(*APPLY_HISTORY)
        if entries is None:
            return None
        return [{k: v for k, v in e.items() if k != "desired"} for e in reversed(entries)]

    def api_history(self, req: Request) -> Response:
        applies = self._apply_history()
        body = {
            "entries": self._audit_entries(),
            "applies": applies or [],
            "apply_history": "recorded" if applies else "not recorded in this store",
        }
        return _json(200, body)

    # -- rollouts: the reconciler's records (see ROLLOUTS_NAMESPACE), read-only except for a command
    def _rollout_text(self, key: str) -> str | None:
        if self.sessions.required:
            return self.store.get_record(ROLLOUTS_NAMESPACE, key)
        assert self.cluster_dir is not None
        try:
            return (self.cluster_dir / "reconciler" / (key.replace("/", "-") + ".json")).read_text()
        except (OSError, UnicodeDecodeError):
            return None

    def _rollout_json(self, key: str) -> dict[str, Any] | None:
        text = self._rollout_text(key)
        try:
            value = json.loads(text) if text is not None else None
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    def _rollouts_where(self) -> str | None:
        """Where the rollout records are read from; ``None``: this dashboard cannot see them."""
        if self.sessions.required:
            return "store"
        return "cluster directory" if self.cluster_dir is not None else None

    def api_rollouts(self, req: Request) -> Response:
        where = self._rollouts_where()
        if where is None:
            return _json(200, {"available": False, "actions": False, "rollouts": [], "reason":
                "this management API needs no admin token, so the reconciler keeps its rollout records "
                "on the machine that applies: clipper rollout status MODEL shows them there"})  # fmt: skip
        out = []
        for name in sorted({m.name for m in self.store.list_models()}):
            rec = self._rollout_json(f"rollout/{name}")
            if rec is None or not isinstance(rec.get("steps"), list):
                continue
            rec["apps"] = [a.get("app") for a in rec.get("apps") or [] if isinstance(a, dict)]
            rec["pending"] = self._rollout_json(f"rollout-command/{name}")
            out.append(rec)
        out.sort(key=lambda r: str(r.get("updated", "")), reverse=True)  # the latest first,
        out.sort(key=lambda r: r.get("phase") != ROLLOUT_PROGRESSING)  # those in progress before all
        return _json(200, {"available": True, "source": where, "actions": where == "store", "rollouts": out})

    def _rollout_command(self, action: str, args: dict[str, Any], session: Session) -> Reply:
        """Leave the command record ``clipper rollout promote|abort`` leaves for the apply driving the
        rollout (the dashboard has no cluster port to act by itself: it asks the running apply)."""
        model = args.get("model")
        if not isinstance(model, str) or not model or set(args) != {"model"}:
            return Reply(400, b"give the model (its name) and nothing else")
        if self._rollouts_where() != "store":
            return Reply(403, b"rollouts are promoted or aborted from the dashboard only with an admin token "
                         b"(without one the reconciler keeps their records on the applying machine: "
                         b"run clipper rollout promote|abort there)")  # fmt: skip
        rec = self._rollout_json(f"rollout/{model}")
        if rec is None or rec.get("phase") != ROLLOUT_PROGRESSING:
            state = "none is recorded" if rec is None else f"the last one {rec.get('phase')}"
            return Reply(400, f"no rollout of model {model!r} is in progress ({state})".encode())
        command = ROLLOUT_COMMANDS[action]
        who = f"the dashboard (session {session.sid[:8]})"
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.store.put_record(
            ROLLOUTS_NAMESPACE,
            f"rollout-command/{model}",
            json.dumps({"command": command, "who": who, "time": when}),
        )
        return Reply(200, (f"{command} of the rollout of {model} ({rec.get('from_version')} -> "
                           f"{rec.get('to_version')}) requested: the apply or watch driving it carries it "
                           "out at its next poll (about a second); if none runs, the next clipper apply or "
                           "watch does when it resumes the rollout").encode())  # fmt: skip

    def _desired_replicas(self) -> dict[tuple[str, str], int]:
        """``(model, version) -> replicas`` in the local cluster's process table (empty elsewhere)."""
        if self.cluster_dir is None:
            return {}
        out: dict[tuple[str, str], int] = {}
        for proc_id in read_processes(self.cluster_dir):
            parsed = parse_model_process_id(proc_id)
            if parsed is not None:
                out[parsed[:2]] = out.get(parsed[:2], 0) + 1
        return out

    def _scale(self, args: dict[str, Any]) -> Reply:
        """Scale a version on the local backend: its supervisor runs the cluster's process table, where
        a new replica gets the entry of one already there (the same command: the container manager
        wrote it when it started the version); a version with none is the container manager's to start."""
        assert self.cluster_dir is not None  # not offered elsewhere
        name, version, count = args.get("model_name"), args.get("model_version"), args.get("num_replicas")
        if (
            set(args) != {"model_name", "model_version", "num_replicas"}
            or not isinstance(name, str)
            or not (isinstance(version, str))
        ):
            return Reply(400, b"give model_name, model_version and num_replicas (and nothing else)")
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_REPLICAS:
            return Reply(400, f"num_replicas must be a whole number from 1 to {MAX_REPLICAS}, got {count!r} "
                         "(to stop a version, change the manifests or use the admin API)".encode())  # fmt: skip
        if not any(m.valid and (m.name, m.version) == (name, version) for m in self.store.list_models()):
            return Reply(400, f"model {name}:{version} is not registered".encode())
        with edit_processes(self.cluster_dir) as table:
            ids = model_replicas(table, name, version)
            if ids:
                scale_replicas(table, name, version, count, dict(table[ids[0]]))
        if not ids:
            return Reply(400, f"{name}:{version} has no replica in the cluster's process table: its first "
                         "replicas are the container manager's to start (clipper apply, or "
                         "ClipperConnection.set_num_replicas)".encode())  # fmt: skip
        return Reply(200, (f"{name}:{version}: {len(ids)} -> {count} replica(s) in the local cluster's process "
                           "table; its supervisor starts or stops them now (the Models view shows them as they "
                           "connect). A model that clipper apply manages is scaled back to its spec.replicas by "
                           "the next apply or watch.").encode())  # fmt: skip

    # -- actions -----------------------------------------------------------------------------------
    def action(self, req: Request, session: Session) -> Response:
        if not Sessions.csrf_ok(session, req.headers.get(CSRF_HEADER)):
            return _error(403, "missing or wrong X-CSRF-Token")
        try:
            d = json.loads(req.body or b"{}")
        except ValueError:
            return _error(400, "the body must be JSON")
        if isinstance(d, dict) and d.get("action") in self.unavailable:
            return _error(
                400, f"{d['action']} is not available from this dashboard: {self.unavailable[d['action']]}"
            )
        if not isinstance(d, dict) or d.get("action") not in self.actions:
            return _error(400, f"action must be one of {sorted(self.actions)}")
        name = str(d["action"])
        args = {k: v for k, v in d.items() if k != "action"}
        if name in ROLLOUT_COMMANDS:
            reply = self._rollout_command(name, args, session)
        elif name == SCALE:
            reply = self._scale(args)
        else:
            reply = self._admin(name, args)
        ok = reply.status == 200
        entry = {
            "kind": "dashboard",
            "who": "admin token" if self.sessions.required else "anonymous (no admin token)",
            "session": session.sid[:8],
            "what": name,
            "args": args,
            "when": time.time(),
            "ok": ok,
            "result": reply.body.decode("utf-8", "replace")[:500],
        }
        self._record(entry)
        return _json(200 if ok else reply.status, entry)


def _sync(applies: list[dict[str, Any]] | None) -> str:
    """The last apply the reconciler recorded in this store, in a few words."""
    if not applies:
        return "not recorded"
    last = applies[0]
    rev = str(last.get("revision") or "no revision")[:12]
    return f"#{last.get('number')} {last.get('result', '?')} · {rev} · {last.get('time', '')}"


def _tail(path: Path, lines: int = LOG_LINES, max_bytes: int = 64 * 1024) -> list[str]:
    with open(path, "rb") as f:
        f.seek(0, 2)
        size = f.tell()
        f.seek(max(0, size - max_bytes))
        text = f.read().decode("utf-8", "replace")
    return text.splitlines()[-lines:]
