"""What ``clipper sync`` tells the outside world: a webhook on every change of sync or health state,
and Prometheus metrics of the loop itself.

The webhook (:class:`Webhook`) posts one JSON object per change from a background thread, so the
loop never waits for the receiver: each post has a connect and a read timeout, a receiver that fails
or is slow is logged (by host, never with the URL's path or query, which may hold a secret) and the
queue of pending events is bounded (the oldest is dropped first).

The metrics (:class:`SyncMetrics`) live in a registry of their own, served by prometheus-client's
HTTP server on ``127.0.0.1`` unless told otherwise:

* ``clipper_sync_runs_total``, ``clipper_sync_failures_total``: sync attempts and failed ones;
* ``clipper_sync_duration_seconds``: a histogram of the attempts' durations;
* ``clipper_sync_revision_info{revision,ref}``: the revision last synced (value 1);
* ``clipper_sync_objects_out_of_sync``: objects whose sync status is not ``Synced``;
* ``clipper_sync_last_success_timestamp_seconds``: when the last attempt succeeded.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, start_http_server

from reconciler.errors import ReconcilerError

log = logging.getLogger(__name__)

#: seconds to connect to the webhook's receiver and to wait for its answer
WEBHOOK_TIMEOUT_S = 5.0
#: events waiting to be posted; past that the oldest are dropped
WEBHOOK_QUEUE = 100


def webhook_host(url: str) -> str:
    """What a message may say about the webhook: its scheme and host, never its path or query."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}" + (f":{parts.port}" if parts.port else "")


class Webhook:
    """Posts events to ``url`` in the order they are sent, from a thread of its own."""

    def __init__(self, url: str, timeout_s: float = WEBHOOK_TIMEOUT_S, size: int = WEBHOOK_QUEUE) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ReconcilerError(f"--notify needs an http:// or https:// URL, not {url!r}")
        self.url, self.timeout_s = url, timeout_s
        self.host = webhook_host(url)
        self.sent = 0  # events the receiver accepted (2xx)
        self.failed = 0  # events that could not be delivered
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=size)
        self._thread = threading.Thread(target=self._run, name="clipper-sync-webhook", daemon=True)
        self._thread.start()

    def send(self, event: Mapping[str, Any]) -> None:
        """Queue ``event``; never blocks (a full queue drops its oldest event)."""
        while True:
            try:
                self._queue.put_nowait(dict(event))
                return
            except queue.Full:
                try:
                    self._queue.get_nowait()
                    self.failed += 1
                    log.warning("webhook %s: too many events pending, dropped the oldest", self.host)
                except queue.Empty:
                    pass

    def close(self, timeout_s: float = 10.0) -> None:
        """Deliver what is queued (waiting at most ``timeout_s``), then stop the thread."""
        try:
            self._queue.put(None, timeout=timeout_s)
        except queue.Full:
            return
        self._thread.join(timeout=timeout_s)

    def _run(self) -> None:
        import requests

        session = requests.Session()
        session.trust_env = True
        while True:
            event = self._queue.get()
            if event is None:
                return
            try:
                r = session.post(self.url, json=event, timeout=(self.timeout_s, self.timeout_s),
                                 allow_redirects=False)  # fmt: skip
                if 200 <= r.status_code < 300:
                    self.sent += 1
                else:
                    self.failed += 1
                    log.warning("webhook %s answered HTTP %s", self.host, r.status_code)
            except Exception as e:  # whatever the receiver does, the loop goes on
                self.failed += 1
                log.warning("webhook %s: could not post (%s)", self.host, type(e).__name__)


class SyncMetrics:
    """The sync loop's own metrics, in a registry of their own (see the module's docstring)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.runs = Counter("clipper_sync_runs", "Sync attempts (fetch, verify, apply)", registry=r)
        self.failures = Counter("clipper_sync_failures", "Sync attempts that failed", registry=r)
        self.duration = Histogram("clipper_sync_duration_seconds", "Duration of a sync attempt", registry=r,
                                  buckets=(0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600))  # fmt: skip
        self.revision = Info("clipper_sync_revision", "The revision last synced", registry=r)
        self.out_of_sync = Gauge("clipper_sync_objects_out_of_sync", "Objects not Synced", registry=r)
        self.last_success = Gauge("clipper_sync_last_success_timestamp_seconds",
                                  "When the last sync succeeded (Unix time)", registry=r)  # fmt: skip
        self.server: Any = None
        self.address: tuple[str, int] | None = None

    def serve(self, address: str, port: int) -> tuple[str, int]:
        """Serve ``/metrics`` on ``address:port`` (port 0: any free one); returns where."""
        try:
            server, _thread = start_http_server(port, addr=address, registry=self.registry)
        except OSError as e:
            raise ReconcilerError(f"cannot serve metrics on {address}:{port}: {e}") from e
        self.server = server
        host, bound = server.server_address[:2]
        self.address = (str(host), int(bound))
        return self.address

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
