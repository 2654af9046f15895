"""Test harness: an RpcServer on its own event-loop thread, with its callbacks recorded in queues.

(Unlike ``spec_container.py`` this file uses the ``clipper`` package: it is the frontend side.)
"""

from __future__ import annotations

import asyncio
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from clipper.datatypes import InputType
from clipper.net import free_port
from clipper.rpc.auth import RpcKeys
from clipper.rpc.server import DEFAULT_MAX_MESSAGE_BYTES, ReplicaConnection, RpcServer

SPEC_CONTAINER = Path(__file__).with_name("spec_container.py")


class RpcHarness:
    """``keys``: the RPC server admits only replicas with these CURVE keys (None: anyone, which is
    what the original-protocol spec container needs)."""

    def __init__(
        self,
        liveness_timeout: float = 3.0,
        port: int | None = None,
        keys: RpcKeys | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        ipc_path: str | None = None,
        uvloop: bool = False,
    ) -> None:
        self.port = port or free_port()
        self.registered: queue.Queue[ReplicaConnection] = queue.Queue()
        self.responses: queue.Queue[tuple[ReplicaConnection, int, list[bytes], dict[int, str] | None]] = (
            queue.Queue()
        )
        self.disconnected: queue.Queue[tuple[ReplicaConnection, str]] = queue.Queue()
        if uvloop:
            import uvloop as _uvloop

            self.loop: asyncio.AbstractEventLoop = _uvloop.new_event_loop()
        else:
            self.loop = asyncio.new_event_loop()
        self.server = RpcServer(
            "127.0.0.1",
            self.port,
            on_register=self.registered.put,
            on_response=lambda c, m, o, e: self.responses.put((c, m, o, e)),
            on_disconnect=lambda c, r: self.disconnected.put((c, r)),
            liveness_timeout=liveness_timeout,
            keys=keys,
            max_message_bytes=max_message_bytes,
            ipc_path=ipc_path,
        )
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.call(self.server.start())

    def call(self, coro: Any, timeout: float = 10) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def on_loop(self, fn: Any, *args: Any) -> Any:
        async def run() -> Any:
            return fn(*args)

        return self.call(run())

    def send_batch(self, conn: ReplicaConnection, input_type: InputType, inputs: list[bytes]) -> int:
        return self.on_loop(self.server.send_batch, conn, input_type, inputs)

    def connections(self) -> dict[bytes, ReplicaConnection]:
        return self.on_loop(lambda: dict(self.server.connections))

    def stats(self) -> dict[str, int]:
        return self.on_loop(lambda: dict(self.server.stats))

    def wait_registered(self, timeout: float = 15) -> ReplicaConnection:
        return self.registered.get(timeout=timeout)

    def wait_response(self, msg_id: int, timeout: float = 15) -> tuple[ReplicaConnection, list[bytes]]:
        """The response to ``msg_id``; responses to other ids are skipped."""
        conn, outputs, _ = self.wait_response_with_errors(msg_id, timeout)
        return conn, outputs

    def wait_response_with_errors(
        self, msg_id: int, timeout: float = 15
    ) -> tuple[ReplicaConnection, list[bytes], dict[int, str] | None]:
        """The response to ``msg_id`` with its error frame's ``{index: reason}`` (None: no frame)."""
        while True:
            conn, got, outputs, errors = self.responses.get(timeout=timeout)
            if got == msg_id:
                return conn, outputs, errors

    def predict(
        self, conn: ReplicaConnection, input_type: InputType, inputs: list[bytes], timeout: float = 15
    ) -> list[bytes]:
        return self.wait_response(self.send_batch(conn, input_type, inputs), timeout)[1]

    def predict_with_errors(
        self, conn: ReplicaConnection, input_type: InputType, inputs: list[bytes], timeout: float = 15
    ) -> tuple[list[bytes], dict[int, str] | None]:
        _, outputs, errors = self.wait_response_with_errors(
            self.send_batch(conn, input_type, inputs), timeout
        )
        return outputs, errors

    def close(self) -> None:
        try:
            self.call(self.server.close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
            self.loop.close()


def start_spec_container(
    port: int, name: str = "m", version: str = "1", input_type: int = 3, heartbeat_s: float = 5.0
) -> subprocess.Popen:
    args = [sys.executable, str(SPEC_CONTAINER), "127.0.0.1", str(port), name, version, str(input_type)]
    return subprocess.Popen([*args, str(heartbeat_s)])


def kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)
