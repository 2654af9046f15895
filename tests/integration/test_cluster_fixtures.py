"""The test clusters' own start-up (cluster_fixtures.Cluster): a port another process took between
free_port() and the frontend's bind is not mistaken for the frontend, and is picked again."""

from __future__ import annotations

import http.server
import threading
from pathlib import Path

import pytest

from .cluster_fixtures import Cluster


class _Healthy(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_a_query_port_taken_meanwhile_is_picked_again(tmp_path: Path) -> None:
    c = Cluster(tmp_path, f"sqlite:///{tmp_path}/config.db")
    # another test's server took the port and answers /health: not our frontend
    squatter = http.server.ThreadingHTTPServer(("127.0.0.1", c.http_port), _Healthy)
    threading.Thread(target=squatter.serve_forever, daemon=True).start()
    taken = c.http_port
    try:
        c.start_mgmt()
        c.start_query_frontend()
        assert c.http_port != taken and c.qf is not None and c.qf.poll() is None
        assert "address already in use" in c.log_tail()  # the first attempt's exit
        assert c.http.get(f"{c.url}/metrics", timeout=5).ok  # the frontend's own route
    finally:
        squatter.shutdown()
        squatter.server_close()
        c.close()


def test_another_query_frontend_whose_port_was_taken_meanwhile_starts_on_new_ports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from . import cluster_fixtures

    c = Cluster(tmp_path, f"sqlite:///{tmp_path}/config.db")
    squatter = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Healthy)
    threading.Thread(target=squatter.serve_forever, daemon=True).start()
    taken = squatter.server_address[1]
    try:
        c.start_mgmt()
        c.start_query_frontend()
        first_pick = iter([taken])  # the second frontend's first HTTP port is the squatter's
        real = cluster_fixtures.free_port
        monkeypatch.setattr(cluster_fixtures, "free_port", lambda: next(first_pick, None) or real())
        qf2, http2, _rpc2 = c.start_another_query_frontend("--frontend-id", "second")
        assert http2 != taken and qf2.poll() is None
        assert "address already in use" in (c.logs / "qf2.log").read_text()  # the first attempt's exit
        assert c.http.get(f"http://127.0.0.1:{http2}/metrics", timeout=5).ok  # the frontend's own route
    finally:
        squatter.shutdown()
        squatter.server_close()
        c.close()
