"""``clipper controller``: the process. Campaign for the Lease, then run reconcile passes (one
namespace: :class:`reconciler.controller.reconcile.Controller`) on every relevant watch event
(debounced) and every ``--resync`` seconds, sooner while something progresses or after a failure
(backoff). Serves ``/healthz`` (the process runs) and ``/readyz`` (the API server answered the last
Lease call: a standby is ready too) on ``--health-port``.

Exit status: 0 after SIGTERM/SIGINT (the Lease is released first, so a successor takes over at
once), 1 when the Lease was lost (the Deployment restarts the pod, which campaigns again), 2 for a
usage error (no Kubernetes configuration).
"""

from __future__ import annotations

import http.server
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from reconciler.controller import PLURALS
from reconciler.controller.kube import Gone, KubeError, KubePort
from reconciler.controller.leader import LeaderElector
from reconciler.controller.reconcile import Controller

log = logging.getLogger(__name__)

#: a burst of events (``kubectl apply -k``) is one pass: wait this long after the first
DEBOUNCE_S = 0.5
#: server-side timeout of one watch request (then it is restarted from the last resourceVersion)
WATCH_TIMEOUT_S = 300


@dataclass
class Options:
    namespace: str
    resync_s: float = 30.0
    lease_name: str = "clipper-controller"
    lease_duration_s: int = 15
    health_port: int | None = 8081
    health_address: str = "0.0.0.0"
    identity: str = ""


def default_identity() -> str:
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"


class Health:
    """``/healthz`` and ``/readyz`` from a thread of the standard library's HTTP server."""

    def __init__(self) -> None:
        self.api_ok = False
        self.server: http.server.ThreadingHTTPServer | None = None

    def serve(self, address: str, port: int) -> int:
        health = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
                if self.path == "/healthz":
                    code, text = 200, "ok"
                elif self.path == "/readyz":
                    code, text = (200, "ok") if health.api_ok else (503, "the API server is not reachable")
                else:
                    code, text = 404, "not found"
                body = (text + "\n").encode()
                self.send_response(code)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # probes every few seconds: quiet
                pass

        self.server = http.server.ThreadingHTTPServer((address, port), Handler)
        threading.Thread(target=self.server.serve_forever, name="health", daemon=True).start()
        return int(self.server.server_address[1])

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


class Runner:
    """Leader election, watches and the pass loop of one controller process."""

    def __init__(self, api: KubePort, opts: Options, controller: Controller | None = None,
                 elector: LeaderElector | None = None, stop: threading.Event | None = None) -> None:  # fmt: skip
        self.api, self.opts = api, opts
        self.controller = controller or Controller(api, opts.namespace)
        self.elector = elector or LeaderElector(api, opts.namespace, opts.lease_name,
                                                opts.identity or default_identity(), opts.lease_duration_s)  # fmt: skip
        self.stop = stop or threading.Event()
        self.wake = threading.Event()
        self.lost = threading.Event()
        self.health = Health()
        self.passes = 0

    def _lease_call(self, call: Callable[[], bool]) -> bool | None:
        """A Lease call; None when the API server did not answer (readiness follows it)."""
        try:
            result = call()
        except KubeError as e:
            self.health.api_ok = False
            log.warning("leader election: %s", e)
            return None
        self.health.api_ok = True
        return result

    def campaign(self) -> bool:
        """Wait until this process leads (True) or is stopped (False)."""
        logged = False
        while not self.stop.is_set():
            if self._lease_call(self.elector.try_acquire):
                return True
            if not logged:
                log.info("standing by: Lease %s/%s is held by %s", self.opts.namespace, self.opts.lease_name,
                         self._holder())  # fmt: skip
                logged = True
            self.stop.wait(self.elector.retry_s)
        return False

    def _holder(self) -> str:
        try:
            return self.elector.holder() or "nobody"
        except KubeError:
            return "?"

    def _renew(self) -> None:
        while not self.stop.wait(self.elector.retry_s):
            ok = self.elector.renew()  # API errors are retried inside until the Lease expires
            self.health.api_ok = self.elector.api_ok
            if not ok:
                log.error("lost Lease %s/%s: stopping (exit 1)", self.opts.namespace, self.opts.lease_name)
                self.lost.set()
                self.stop.set()
                self.wake.set()
                return

    def _watch(self, kind: str) -> None:
        rv = ""
        delay = 1.0
        while not self.stop.is_set():
            try:
                if not rv:
                    _, rv = self.api.list_objects(kind, self.opts.namespace)
                    self.wake.set()  # events may have been missed meanwhile
                for event, obj in self.api.watch(kind, self.opts.namespace, rv, WATCH_TIMEOUT_S):
                    rv = str((obj.get("metadata") or {}).get("resourceVersion") or rv)
                    if self.controller.relevant(event, {"kind": kind, **obj}):
                        log.debug(
                            "%s %s/%s: reconciling", event, kind, (obj.get("metadata") or {}).get("name")
                        )
                        self.wake.set()
                    if self.stop.is_set():
                        return
                delay = 1.0
            except Gone:
                rv = ""
            except KubeError as e:
                log.warning("watch of %s: %s; again in %g s", PLURALS[kind], e, delay)
                rv = ""
                self.stop.wait(delay)
                delay = min(delay * 2, 30.0)

    def _pass(self) -> float | None:
        self.passes += 1
        try:
            return self.controller.reconcile()
        except Exception as e:  # never ends the loop: retried with the backoff
            log.error("reconcile of namespace %s failed: %s: %s", self.opts.namespace, type(e).__name__, e,
                      exc_info=log.isEnabledFor(logging.DEBUG))  # fmt: skip
            return self.controller.backoff.failed()

    def run(self) -> int:
        if self.opts.health_port is not None:
            port = self.health.serve(self.opts.health_address, self.opts.health_port)
            log.info("health on http://%s:%d/healthz and /readyz", self.opts.health_address, port)
        try:
            if not self.campaign():
                return 0
            log.info("leading: reconciling namespace %s (resync every %g s)", self.opts.namespace,
                     self.opts.resync_s)  # fmt: skip
            threading.Thread(target=self._renew, name="lease-renewer", daemon=True).start()
            for kind in PLURALS:
                threading.Thread(target=self._watch, args=(kind,), name=f"watch-{kind}", daemon=True).start()
            next_at = time.monotonic()
            while not self.stop.is_set():
                if self.wake.is_set() or time.monotonic() >= next_at:
                    if self.wake.is_set():
                        self.stop.wait(DEBOUNCE_S)
                    self.wake.clear()
                    if self.stop.is_set():
                        break
                    delay = self._pass()
                    next_at = time.monotonic() + min(self.opts.resync_s, delay or self.opts.resync_s)
                self.wake.wait(max(0.0, next_at - time.monotonic()))
        finally:
            if not self.lost.is_set():
                self.elector.release()
            self.health.close()
        return 1 if self.lost.is_set() else 0

    def stop_on_signals(self) -> None:
        """SIGTERM (the kubelet) and SIGINT end the loop after the current pass (main thread only)."""

        def handler(signum: int, _frame: Any) -> None:
            log.info("signal %d: stopping after the current pass", signum)
            self.stop.set()
            self.wake.set()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)
