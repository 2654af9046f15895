"""The frontend side of the RPC service: one ZMQ ROUTER, container sessions, handshake and liveness.

Integration with asyncio: a plain (synchronous) pyzmq socket whose file descriptor is watched with
``loop.add_reader``. ZMQ's FD is edge-triggered, so every wake-up drains the socket until ``EAGAIN``
(in bounded slices, rescheduling itself to stay fair to the loop), and after a send the socket's
``EVENTS`` are checked because a send can consume the edge. Sends are synchronous non-blocking
multipart sends: a ROUTER without ``ROUTER_MANDATORY`` drops messages to unknown or
disconnected peers instead of blocking. This was measured faster than ``zmq.asyncio`` (no future
per send, no extra task hop per message); frames go through :mod:`clipper.rpc.zmqio`.

Callbacks run on the event-loop thread. An exception in a callback is logged and never stops the
reader. Malformed, truncated or unknown messages are counted in :attr:`RpcServer.stats`, logged at
debug level and dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import zmq

from clipper.datatypes import InputType
from clipper.rpc import protocol as p
from clipper.rpc.zmqio import recv_frames, send_frames

log = logging.getLogger(__name__)

#: Upper bound of the liveness allowance for containers with long heartbeat intervals.
MAX_LIVENESS_TIMEOUT = 15.0
#: The allowance is this many times the largest silence observed from the container.
GAP_FACTOR = 2.5
#: Messages read per loop iteration before yielding to other tasks.
_DRAIN_SLICE = 256
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)


@dataclass(eq=False)
class ReplicaConnection:
    """One registered container session."""

    identity: bytes
    conn_id: int
    model_name: str
    model_version: str
    replica_id: int
    input_type: InputType
    last_seen: float
    max_gap: float = field(default=0.0, repr=False)
    """Largest silence (s) before a heartbeat since registration: the container's heartbeat interval
    as observed (0 until the first heartbeat after registration)."""

    def liveness_timeout(self, base: float) -> float:
        """How long this session may stay silent before it is considered gone.

        Until a heartbeat after registration has been seen we do not know the container's heartbeat
        interval (the original rpc.py heartbeats only after 5 s without inbound traffic), so it gets
        the maximum allowance. Silences that end in a response do not count: they measure the model.
        """
        if self.max_gap == 0.0:
            return max(base, MAX_LIVENESS_TIMEOUT)
        return max(base, min(MAX_LIVENESS_TIMEOUT, GAP_FACTOR * self.max_gap))


OnRegister = Callable[[ReplicaConnection], None]
OnResponse = Callable[[ReplicaConnection, int, list[bytes]], None]
OnDisconnect = Callable[[ReplicaConnection, str], None]


class RpcServer:
    """ROUTER socket serving container sessions (protocol v3, ``clipper-servers.md`` §6)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        on_register: OnRegister,
        on_response: OnResponse,
        on_disconnect: OnDisconnect,
        liveness_timeout: float = 3.0,
        allocate_replica_id: Callable[[str, str], int] | None = None,
    ) -> None:
        """``allocate_replica_id(name, version)`` numbers replicas; by default a per-process counter.
        Frontends that share a config store pass the store's counter so ids never collide."""
        self.host = host
        self.port = port
        self.liveness_timeout = liveness_timeout
        self.connections: dict[bytes, ReplicaConnection] = {}
        self.stats: Counter[str] = Counter()
        self._on_register = on_register
        self._on_response = on_response
        self._on_disconnect = on_disconnect
        self._conn_ids = itertools.count()
        self._replica_ids: dict[tuple[str, str], itertools.count] = {}
        self._allocate_replica_id = allocate_replica_id
        self._msg_id = 0
        self._ctx: zmq.Context | None = None
        self._sock: zmq.Socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._liveness_task: asyncio.Task | None = None
        self._draining = False
        self._drain_scheduled = False

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the ROUTER and start reading; returns once bound (``self.port`` is the real port)."""
        self._loop = asyncio.get_running_loop()
        self._ctx = zmq.Context()
        sock = self._ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        bind_host = "*" if self.host in ("0.0.0.0", "") else self.host
        try:
            if self.port == 0:
                self.port = sock.bind_to_random_port(f"tcp://{bind_host}")
            else:
                sock.bind(f"tcp://{bind_host}:{self.port}")
        except zmq.ZMQError as e:
            sock.close()
            self._ctx.term()
            raise OSError(f"cannot bind the RPC port {self.host}:{self.port}: {e}") from None
        self._sock = sock
        self._loop.add_reader(sock.getsockopt(zmq.FD), self._drain)
        self._liveness_task = asyncio.create_task(self._liveness_loop(), name="rpc-liveness")
        # Messages may already be queued: the FD only signals new edges.
        self._schedule_drain()
        log.info("RPC server listening on %s:%d", self.host, self.port)

    async def close(self) -> None:
        if self._sock is None:
            return
        if self._liveness_task is not None:
            self._liveness_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._liveness_task
        assert self._loop is not None
        self._loop.remove_reader(self._sock.getsockopt(zmq.FD))
        self._sock.close(linger=0)
        self._sock = None
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None
        self.connections.clear()

    # -- sending -------------------------------------------------------------------------------

    def send_batch(self, conn: ReplicaConnection, input_type: InputType, inputs: list[bytes]) -> int:
        """Send one PredictionRequest holding every input of the batch; returns its msg_id.

        Never blocks. A send to a gone peer is silently dropped by the ROUTER; so is a send after
        :meth:`close`.
        """
        msg_id = self._msg_id
        self._msg_id = (msg_id + 1) & 0xFFFFFFFF
        frames = p.encode_prediction_request(msg_id, int(input_type), inputs)
        self._send(conn.identity, frames)
        return msg_id

    def drop(self, conn: ReplicaConnection, reason: str) -> None:
        """Forget a session (e.g. the frontend decided it is hung) and call ``on_disconnect`` once.

        If the container is still alive its next heartbeat is answered with RequestContainerMetadata,
        so it re-registers as a new replica.
        """
        if self.connections.get(conn.identity) is conn:
            del self.connections[conn.identity]
            self._notify_disconnect(conn, reason)

    def _send(self, identity: bytes, frames: list[bytes]) -> None:
        sock = self._sock
        if sock is None:
            return
        try:
            send_frames(sock, [identity, *frames])
        except zmq.ZMQError as e:  # HWM or a closing context: the message is dropped
            self.stats["send_errors"] += 1
            log.debug("RPC send dropped: %s", e)
        if not self._draining:
            self._schedule_drain()

    def _schedule_drain(self) -> None:
        # A send may have consumed the FD's edge: look at EVENTS to not miss queued input.
        if self._drain_scheduled or self._sock is None:
            return
        if self._sock.get(_EVENTS) & _POLLIN:
            self._drain_scheduled = True
            assert self._loop is not None
            self._loop.call_soon(self._drain)

    # -- receiving -----------------------------------------------------------------------------

    def _drain(self) -> None:
        self._drain_scheduled = False
        sock = self._sock
        if sock is None:
            return
        self._draining = True
        try:
            for _ in range(_DRAIN_SLICE):
                try:
                    frames = recv_frames(sock)
                except zmq.Again:
                    return
                except zmq.ZMQError as e:
                    log.debug("RPC receive error: %s", e)
                    return
                self._handle(frames)
            # Slice used up: continue on the next loop iteration (the FD will not signal again).
            self._drain_scheduled = True
            assert self._loop is not None
            self._loop.call_soon(self._drain)
        finally:
            self._draining = False

    def _handle(self, frames: list[bytes]) -> None:
        identity = frames[0]
        try:
            msg = p.decode_container_message(frames[1:])
        except p.ProtocolError as e:
            self.stats["malformed"] += 1
            log.debug("malformed RPC message from %r dropped: %s", identity, e)
            return
        conn = self.connections.get(identity)
        if conn is not None:
            now = time.monotonic()
            if type(msg) is p.Heartbeat and now - conn.last_seen > conn.max_gap:
                conn.max_gap = now - conn.last_seen
            conn.last_seen = now
        if type(msg) is p.PredictionResponse:
            if conn is None:
                self.stats["unregistered_content"] += 1
                log.debug("response from unregistered peer %r dropped", identity)
                return
            self.stats["responses"] += 1
            self._call(self._on_response, conn, msg.msg_id, msg.outputs)
        elif type(msg) is p.Heartbeat:
            self.stats["heartbeats"] += 1
            hb_type = (
                p.HeartbeatType.REQUEST_CONTAINER_METADATA if conn is None else p.HeartbeatType.KEEPALIVE
            )
            self._send(identity, p.encode_heartbeat_reply(hb_type))
        else:
            assert type(msg) is p.NewContainer
            self._register(identity, conn, msg)

    def _register(self, identity: bytes, conn: ReplicaConnection | None, msg: p.NewContainer) -> None:
        if msg.rpc_version != p.RPC_VERSION:
            self.stats["bad_rpc_version"] += 1
            log.error(
                "container %s:%s sent RPC version %s (need %d): not registered",
                msg.model_name,
                msg.model_version,
                msg.rpc_version,
                p.RPC_VERSION,
            )
            return
        if msg.input_type not in p.VALID_INPUT_TYPE_CODES:
            self.stats["malformed"] += 1
            log.error(
                "container %s:%s declared unknown input type %d: not registered",
                msg.model_name,
                msg.model_version,
                msg.input_type,
            )
            return
        if conn is not None:
            self.stats["duplicate_registrations"] += 1
            return
        replica_id = self._next_replica_id(msg.model_name, msg.model_version)
        if replica_id is None:
            return  # the allocator failed (logged); the container's next heartbeat retries
        conn = ReplicaConnection(
            identity=identity,
            conn_id=next(self._conn_ids),
            model_name=msg.model_name,
            model_version=msg.model_version,
            replica_id=replica_id,
            input_type=InputType(msg.input_type),
            last_seen=time.monotonic(),
        )
        self.connections[identity] = conn
        self.stats["registrations"] += 1
        log.info(
            "container registered: %s:%s replica %d (%s, connection %d)",
            conn.model_name,
            conn.model_version,
            conn.replica_id,
            conn.input_type,
            conn.conn_id,
        )
        self._call(self._on_register, conn)

    def _next_replica_id(self, name: str, version: str) -> int | None:
        if self._allocate_replica_id is None:
            return next(self._replica_ids.setdefault((name, version), itertools.count()))
        try:
            return self._allocate_replica_id(name, version)
        except Exception:
            self.stats["allocator_errors"] += 1
            log.warning("cannot allocate a replica id for %s:%s", name, version, exc_info=True)
            return None

    def _call(self, fn: Callable, *args: object) -> None:
        try:
            fn(*args)
        except Exception:
            self.stats["callback_errors"] += 1
            log.exception("RPC callback %s failed", getattr(fn, "__qualname__", fn))

    def _notify_disconnect(self, conn: ReplicaConnection, reason: str) -> None:
        log.info(
            "container removed: %s:%s replica %d: %s",
            conn.model_name,
            conn.model_version,
            conn.replica_id,
            reason,
        )
        self._call(self._on_disconnect, conn, reason)

    # -- liveness ------------------------------------------------------------------------------

    async def _liveness_loop(self) -> None:
        interval = min(0.5, self.liveness_timeout / 4)
        while True:
            await asyncio.sleep(interval)
            # After a stalled loop, read what is queued before judging anyone silent.
            sock = self._sock
            if sock is not None and sock.get(_EVENTS) & _POLLIN:
                self._drain()
            self.check_liveness(time.monotonic())

    def check_liveness(self, now: float) -> None:
        """Remove sessions silent for longer than their allowance (called periodically)."""
        for conn in list(self.connections.values()):
            allowed = conn.liveness_timeout(self.liveness_timeout)
            silent = now - conn.last_seen
            if silent > allowed and self.connections.get(conn.identity) is conn:
                del self.connections[conn.identity]
                self.stats["timeouts"] += 1
                self._notify_disconnect(conn, f"no message for {silent:.1f} s (limit {allowed:.1f} s)")
