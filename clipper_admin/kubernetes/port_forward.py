"""A local TCP listener that forwards each connection to a pod port through the API server.

This replaces the original's ``kubectl proxy`` requirement: services that are neither NodePort nor
LoadBalancer (or whose node addresses are unreachable) are reached at ``127.0.0.1:<local port>``.
Each accepted connection opens its own port-forward WebSocket (the official client's
``kubernetes.stream.portforward``) to a ready pod chosen at that moment, so a restarted pod is
picked up by the next connection.

``portforward`` swaps the ``call_api`` of the client it is given for a WebSocket one until the
handshake ends, so a forwarder never shares its caller's client: a manager's request from another
thread during a handshake would otherwise go out as a port-forward ("Missing required parameter
`ports`"). Its own handshakes run one at a time (two overlapping swaps could leave the swap in place).
"""

from __future__ import annotations

import logging
import select
import socket
import threading
from collections.abc import Callable
from typing import Any

from kubernetes.client import ApiClient, CoreV1Api
from kubernetes.stream import portforward

logger = logging.getLogger(__name__)


class PortForwarder:
    """Listens on ``127.0.0.1:<local_port>`` and forwards to ``<pod>:<remote_port>``.

    ``pick_pod()`` returns the name of a ready pod (or raises); it is called per connection.
    """

    def __init__(
        self,
        core: CoreV1Api,
        namespace: str,
        pick_pod: Callable[[], str],
        remote_port: int,
        local_host: str = "127.0.0.1",
        local_port: int = 0,
    ):
        shared = core.api_client
        own = ApiClient(shared.configuration, cookie=shared.cookie)
        own.default_headers.update(shared.default_headers)
        self.core = CoreV1Api(own)
        self._handshake = threading.Lock()
        self.namespace = namespace
        self.pick_pod = pick_pod
        self.remote_port = remote_port
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((local_host, local_port))
        self._listener.listen(64)
        self.local_host, self.local_port = self._listener.getsockname()[:2]
        self._closed = threading.Event()
        self._thread = threading.Thread(
            target=self._accept_loop, name=f"clipper-port-forward-{self.local_port}", daemon=True
        )
        self._thread.start()

    @property
    def address(self) -> str:
        return f"{self.local_host}:{self.local_port}"

    def close(self) -> None:
        self._closed.set()
        try:
            self._listener.close()
        except OSError:
            pass
        self.core.api_client.close()

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            pod = self.pick_pod()
            with self._handshake:
                pf = portforward(
                    self.core.connect_get_namespaced_pod_portforward,
                    pod,
                    self.namespace,
                    ports=str(self.remote_port),
                )
            remote = pf.socket(self.remote_port)
            remote.setblocking(True)
        except Exception as e:  # noqa: BLE001 - any failure closes this one connection
            logger.warning("port-forward to port %s failed: %s", self.remote_port, e)
            client.close()
            return
        try:
            _pump(client, remote)
        finally:
            for s in (client, remote):
                try:
                    s.close()
                except OSError:
                    pass
            pf.close()


def _pump(a: socket.socket, b: Any) -> None:  # b: the kubernetes client's port-forward socket
    """Copy bytes both ways until either side closes."""
    while True:
        readable, _, _ = select.select([a, b], [], [], 60.0)
        for src in readable:
            dst = b if src is a else a
            try:
                data = src.recv(65536)
            except OSError:
                return
            if not data:
                return
            try:
                dst.sendall(data)
            except OSError:
                return
