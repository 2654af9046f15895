"""The admin client keeps one HTTP/1.1 connection per thread open (a large ``clipper diff`` makes
hundreds of calls; each used to open a new session and connection)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any

import pytest

from clipper.net import free_port
from clipper_admin.admin_client import AdminClient

PEERS: list[tuple[str, int]] = []  # the client address of every request served


class KeepAliveHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the management frontend

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        PEERS.append(self.client_address)
        data = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def admin() -> Iterator[AdminClient]:
    PEERS.clear()
    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), KeepAliveHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    cm = SimpleNamespace(get_admin_addr=lambda: f"127.0.0.1:{port}", admin_token="t")
    try:
        yield AdminClient(cm, timeout=10)
    finally:
        server.shutdown()
        server.server_close()


def test_calls_of_one_thread_share_a_connection_and_threads_do_not(admin):
    for _ in range(5):
        assert admin.post_json("get_record", {"namespace": "n", "key": "k"}) == {"ok": True}
    assert len(PEERS) == 5 and len(set(PEERS)) == 1
    other = threading.Thread(target=lambda: admin.post_json("renew_lease", {}))
    other.start()
    other.join(timeout=60)
    assert len(PEERS) == 6 and PEERS[5] != PEERS[0]  # the other thread's own connection
