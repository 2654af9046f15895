"""``clipper sync``'s webhook and metrics (reconciler/notify.py) against real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from reconciler.errors import ReconcilerError
from reconciler.notify import SyncMetrics, Webhook, webhook_host
from tests.integration.test_gitops_workflow import wait_for


class Receiver:
    """A webhook receiver on 127.0.0.1: records each JSON body in ``bodies``; ``hang`` keeps requests
    waiting until ``release``."""

    def __init__(self, status: int = 200) -> None:
        self.bodies: list[dict] = []
        self.hang = threading.Event()
        self.release = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if outer.hang.is_set():
                    outer.release.wait(120)
                outer.bodies.append(json.loads(body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook?secret=abc"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def test_events_are_posted_in_order(receiver):
    hook = Webhook(receiver.url)
    for i in range(3):
        hook.send({"object": "Sync/x", "n": i})
    hook.close()
    assert [b["n"] for b in receiver.bodies] == [0, 1, 2]
    assert hook.sent == 3 and hook.failed == 0


def test_a_hanging_receiver_never_blocks_the_sender(receiver, caplog):
    receiver.hang.set()
    hook = Webhook(receiver.url, timeout_s=1.0, size=2)
    for i in range(5):  # returns at once although nothing is answered: the oldest are dropped
        hook.send({"n": i})
    assert wait_for(lambda: hook.failed >= 3)  # timed out or dropped, counted, never raised
    receiver.release.set()
    hook.close()
    # the URL's path and query (which may hold a secret) are never logged
    assert "secret=abc" not in caplog.text and "/hook" not in caplog.text


def test_an_unreachable_or_failing_receiver_is_logged_not_raised(caplog):
    failing = Receiver(status=500)
    try:
        hook = Webhook(failing.url)
        hook.send({"n": 1})
        hook.close()
        assert hook.failed == 1 and "answered HTTP 500" in caplog.text
    finally:
        failing.close()
    from clipper.net import free_port

    hook = Webhook(f"http://127.0.0.1:{free_port()}/x")
    hook.send({"n": 1})
    hook.close()
    assert hook.failed == 1


def test_only_http_urls_are_accepted():
    with pytest.raises(ReconcilerError, match="http"):
        Webhook("file:///etc/passwd")
    assert webhook_host("https://u:p@hooks.example.com:8443/a/b?token=x") == "https://hooks.example.com:8443"


def test_metrics_are_served_on_loopback_with_the_loop_counters():
    m = SyncMetrics()
    host, port = m.serve("127.0.0.1", 0)
    try:
        assert host == "127.0.0.1"
        m.runs.inc(3)
        m.failures.inc()
        m.duration.observe(1.5)
        m.revision.info({"revision": "a" * 40, "ref": "main"})
        m.out_of_sync.set(2)
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text
    finally:
        m.close()
    assert "clipper_sync_runs_total 3.0" in text
    assert "clipper_sync_failures_total 1.0" in text
    assert "clipper_sync_duration_seconds_count 1.0" in text
    assert f'clipper_sync_revision_info{{ref="main",revision="{"a" * 40}"}} 1.0' in text
    assert "clipper_sync_objects_out_of_sync 2.0" in text


def test_a_metrics_port_in_use_is_a_clear_error():
    m = SyncMetrics()
    _, port = m.serve("127.0.0.1", 0)
    try:
        with pytest.raises(ReconcilerError, match=f"cannot serve metrics on 127.0.0.1:{port}"):
            SyncMetrics().serve("127.0.0.1", port)
    finally:
        m.close()
