"""HTTP wiring of the management frontend: routing, 404/405, /health, /openapi.json, bearer auth."""

from __future__ import annotations

import hmac
from importlib import resources

import orjson

from clipper.config_store.base import ConfigStore
from clipper.http.server import Request, Response
from clipper.management_frontend.dashboard.app import Dashboard
from clipper.management_frontend.handlers import AdminHandlers

UNAUTHENTICATED_PATHS = frozenset({"/admin/ping"})


def _error(status: int, error: str, cause: str, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    return Response(status, orjson.dumps({"error": error, "cause": cause}), headers=headers)


def load_openapi() -> bytes:
    return resources.files("clipper.management_frontend").joinpath("openapi.json").read_bytes()


class ManagementApp:
    """``handler(req) -> Response`` for :func:`clipper.http.server.serve` (synchronous: store calls are fast)."""

    def __init__(
        self,
        store: ConfigStore,
        admin_token: str | None = None,
        *,
        store_url: str = "",
        metrics_urls: list[str] | None = None,
        cluster_dir: str | None = None,
    ) -> None:
        self.handlers = AdminHandlers(store)
        self.routes = self.handlers.routes()
        self.dashboard = Dashboard(
            store,
            self.handlers,
            admin_token,
            store_url=store_url,
            metrics_urls=metrics_urls,
            cluster_dir=cluster_dir,
        )
        self._token = admin_token.encode() if admin_token else None
        self._openapi = load_openapi()

    def _authorized(self, req: Request) -> bool:
        if self._token is None:
            return True
        header = req.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self._token)

    def __call__(self, req: Request) -> Response:
        path = req.path
        route = self.routes.get(path)
        if route is None and (path == "/dashboard" or path.startswith("/dashboard/")):
            return self.dashboard(req)
        if route is None:
            if path == "/health" or path == "/openapi.json":
                if req.method not in ("GET", "HEAD"):
                    return _error(
                        405, "Method not allowed", f"{req.method} {path}", (("Allow", "GET, HEAD"),)
                    )
                if path == "/health":
                    return Response(200, b'{"status":"ok"}')
                return Response(200, self._openapi)
            return _error(404, "Not found", f"No route for {req.method} {path}")
        method, fn = route
        if req.method != method and not (method == "GET" and req.method == "HEAD"):
            return _error(405, "Method not allowed", f"{path} accepts {method} only", (("Allow", method),))
        if path not in UNAUTHENTICATED_PATHS and not self._authorized(req):
            return _error(
                401,
                "Unauthorized",
                "this management frontend requires the header 'Authorization: Bearer <CLIPPER_ADMIN_TOKEN>'",
                (("WWW-Authenticate", "Bearer"),),
            )
        status, body, content_type = fn(req.body)
        return Response(status, body, content_type)
