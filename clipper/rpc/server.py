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

Who may connect: with ``keys`` the ROUTER is a CURVE server that admits only the cluster's replicas
(:mod:`clipper.rpc.auth`); a peer failing the handshake is disconnected by ZeroMQ before it can send
anything, counted in ``stats["handshake_failures"]`` and logged (at most once a minute). Every
inbound frame is limited to ``max_message_bytes`` (``ZMQ_MAXMSGSIZE``): ZeroMQ reads a frame's
length before its body and disconnects a peer announcing a larger one, so memory never grows with
what a peer claims. A batch is one frame per input, so the limit bounds one input or one output,
not a batch.

A second endpoint (``ipc_path``): a Unix stream socket, for replicas on the same host (the local
backend's), carrying the same messages without ZeroMQ (:mod:`clipper.rpc.stream`: a round trip costs
each side less than half the CPU of ZeroMQ's). It has no CURVE: the socket file is made owner-only
(0600) and lives in a directory only the cluster's user can enter, the same boundary as the key file
CURVE relies on, without encrypting every frame. Each connection is a session of its own (the peer's
"routing id" is a number the server gives it); a replica closing its connection is removed at once,
not after the liveness allowance. Sessions are keyed by the endpoint's tag (``t``: TCP, ``i``: the
socket) and the peer's id, so the two endpoints never share one.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import stat
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import zmq

from clipper.datatypes import InputType
from clipper.rpc import protocol as p
from clipper.rpc.auth import RpcKeys, secure_server
from clipper.rpc.stream import MessageReader, encode_message
from clipper.rpc.zmqio import recv_frames, send_frames

if TYPE_CHECKING:
    from zmq.auth.thread import ThreadAuthenticator

log = logging.getLogger(__name__)

#: Upper bound of the liveness allowance for containers with long heartbeat intervals.
MAX_LIVENESS_TIMEOUT = 15.0
#: The allowance is this many times the largest silence observed from the container.
GAP_FACTOR = 2.5
#: Messages read per loop iteration before yielding to other tasks.
_DRAIN_SLICE = 256
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)
#: Default limit of one inbound RPC frame (one input or one output): 64 MiB.
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
_HANDSHAKE_FAILED = (
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
)
_HANDSHAKE_LOG_INTERVAL = 60.0
_TCP, _IPC = b"t", b"i"  # endpoint tags, the first byte of a session's key
#: Bytes a stream peer may have waiting to be written before messages to it are dropped (ZeroMQ's
#: high-water mark's role: a replica that stopped reading must not grow the frontend's memory).
STREAM_SEND_BUFFER_BYTES = 64 * 1024 * 1024


@dataclass(eq=False)
class ReplicaConnection:
    """One registered container session. ``identity``: the endpoint's tag and the peer's routing id."""

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
OnResponse = Callable[[ReplicaConnection, int, list[bytes], dict[int, str] | None], None]
"""``(replica, msg_id, outputs, errors)``: ``errors`` maps input positions to the model's reason
(from the error frame), None when every input has an output."""
OnDisconnect = Callable[[ReplicaConnection, str], None]


class RpcServer:
    """ROUTER socket serving container sessions (protocol v3, ``docs/wire-protocol.md``)."""

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
        keys: RpcKeys | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        ipc_path: str | None = None,
    ) -> None:
        """``allocate_replica_id(name, version)`` numbers replicas; by default a per-process counter.
        Frontends that share a config store pass the store's counter so ids never collide.
        ``keys``: admit only replicas holding the cluster's CURVE keys (None: anyone, as the original).
        ``max_message_bytes``: largest inbound frame; a peer sending a larger one is disconnected.
        ``ipc_path``: also serve replicas on this Unix socket (no CURVE: the file is owner-only)."""
        if max_message_bytes <= 0:
            raise ValueError(f"the RPC message size limit must be positive, got {max_message_bytes}")
        self.host = host
        self.port = port
        self.liveness_timeout = liveness_timeout
        self.connections: dict[bytes, ReplicaConnection] = {}
        self.stats: Counter[str] = Counter()
        self._on_register = on_register
        self._on_response = on_response
        self._on_disconnect = on_disconnect
        self._conn_ids = itertools.count()
        self._replica_ids: dict[tuple[str, str], itertools.count[int]] = {}
        self._allocate_replica_id = allocate_replica_id
        self._msg_id = 0
        self._ctx: zmq.Context[zmq.Socket[bytes]] | None = None
        self._sock: zmq.Socket[bytes] | None = None  # the TCP endpoint
        self._socks: dict[bytes, zmq.Socket[bytes]] = {}  # by endpoint tag (ZeroMQ endpoints)
        self._unix_server: asyncio.AbstractServer | None = None
        self._peers: dict[bytes, _StreamPeer] = {}  # the Unix socket's connections, by identity
        self._peer_ids = itertools.count()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._liveness_task: asyncio.Task[None] | None = None
        self._draining = False
        self._drain_scheduled: set[bytes] = set()
        self.ipc_path = ipc_path
        self.keys = keys
        self.max_message_bytes = max_message_bytes
        self._auth: ThreadAuthenticator | None = None
        self._monitor: zmq.Socket[bytes] | None = None
        self._handshake_logged_at = -_HANDSHAKE_LOG_INTERVAL

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the ROUTER and start reading; returns once bound (``self.port`` is the real port)."""
        self._loop = asyncio.get_running_loop()
        self._ctx = zmq.Context()
        sock = self._router()
        bind_host = "*" if self.host in ("0.0.0.0", "") else self.host
        try:
            if self.keys is not None:
                self._auth = secure_server(self._ctx, sock, self.keys)
            self._monitor = sock.get_monitor_socket(_HANDSHAKE_FAILED)
            if self.port == 0:
                self.port = sock.bind_to_random_port(f"tcp://{bind_host}")
            else:
                sock.bind(f"tcp://{bind_host}:{self.port}")
        except zmq.ZMQError as e:
            self._close_socket(sock)
            raise OSError(f"cannot bind the RPC port {self.host}:{self.port}: {e}") from None
        except BaseException:
            self._close_socket(sock)
            raise
        if self.ipc_path is not None:
            try:
                self._unix_server = await self._serve_unix(self.ipc_path)
            except BaseException:
                self._close_socket(sock)
                raise
        self._sock = sock
        self._socks[_TCP] = sock
        for tag, s in self._socks.items():
            self._loop.add_reader(s.FD, self._drain, tag)
            # Messages may already be queued: the FD only signals new edges.
            self._schedule_drain(tag)
        self._liveness_task = asyncio.create_task(self._liveness_loop(), name="rpc-liveness")
        log.info(
            "RPC server listening on %s:%d (%s, frames up to %d bytes)%s",
            self.host,
            self.port,
            "CURVE: only the cluster's replicas" if self.keys else "no authentication: any container",
            self.max_message_bytes,
            f" and on {self.ipc_path} (owner only)" if self.ipc_path else "",
        )

    def _router(self) -> zmq.Socket[bytes]:
        """The TCP endpoint's ROUTER: no linger on close, inbound frames bounded."""
        assert self._ctx is not None
        sock = self._ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, self.max_message_bytes)
        return sock

    async def _serve_unix(self, path: str) -> asyncio.AbstractServer:
        """The Unix-socket endpoint: refused unless its directory is the user's alone (made so
        when it does not exist yet), and made owner-only before anyone can have connected (a peer
        connecting while it is being set up fails the permission check on the directory). A socket
        file left by a frontend that is gone is replaced (nobody else can have made one in that
        directory)."""
        parent = os.path.dirname(os.path.abspath(path))
        with contextlib.suppress(FileExistsError):
            os.mkdir(parent, 0o700)  # whoever made it first, the check below decides
        st = os.stat(parent)
        if st.st_uid != os.geteuid() or st.st_mode & 0o077:
            raise OSError(f"the RPC socket's directory {parent} must belong to this user with mode 0700")
        assert self._loop is not None
        try:
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISSOCK(os.lstat(path).st_mode):
                    os.unlink(path)
            server = await self._loop.create_unix_server(lambda: _StreamPeer(self), path)
            os.chmod(path, 0o600)
        except OSError as e:
            raise OSError(f"cannot bind the RPC socket {path}: {e}") from None
        return server

    def _close_socket(self, sock: zmq.Socket[bytes]) -> None:
        if self._monitor is not None:
            with contextlib.suppress(zmq.ZMQError):
                sock.disable_monitor()
            self._monitor.close(linger=0)
            self._monitor = None
        sock.close(linger=0)
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None

    async def close(self) -> None:
        if self._sock is None:
            return
        if self._liveness_task is not None:
            self._liveness_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._liveness_task
        # Any: uvloop's remove_reader returns None where typeshed says bool (compiled code checks)
        loop: Any = self._loop
        assert loop is not None
        for s in self._socks.values():
            loop.remove_reader(s.FD)
        self._socks.clear()
        if self._unix_server is not None:
            self._unix_server.close()
            for peer in list(self._peers.values()):
                peer.transport.abort()
            self._peers.clear()
            self._unix_server = None
            if self.ipc_path is not None:
                with contextlib.suppress(OSError):
                    os.unlink(self.ipc_path)
        sock, self._sock = self._sock, None
        self._close_socket(sock)
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
        tag = identity[:1]
        if tag == _IPC:
            peer = self._peers.get(identity)
            if peer is not None:
                peer.send(frames)
            return
        sock = self._socks.get(tag)
        if sock is None:
            return
        try:
            send_frames(sock, [identity[1:], *frames])
        except zmq.ZMQError as e:  # HWM or a closing context: the message is dropped
            self.stats["send_errors"] += 1
            log.debug("RPC send dropped: %s", e)
        if not self._draining:
            self._schedule_drain(tag)

    def _schedule_drain(self, tag: bytes) -> None:
        # A send may have consumed the FD's edge: look at EVENTS to not miss queued input.
        sock = self._socks.get(tag)
        if sock is None or tag in self._drain_scheduled:
            return
        if sock.get(_EVENTS) & _POLLIN:  # type: ignore[operator]  # EVENTS is an int option
            self._drain_scheduled.add(tag)
            assert self._loop is not None
            self._loop.call_soon(self._drain, tag)

    # -- receiving -----------------------------------------------------------------------------

    def _drain(self, tag: bytes = _TCP) -> None:
        self._drain_scheduled.discard(tag)
        sock = self._socks.get(tag)
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
                self._handle(tag + frames[0], frames[1:])
            # Slice used up: continue on the next loop iteration (the FD will not signal again).
            self._drain_scheduled.add(tag)
            assert self._loop is not None
            self._loop.call_soon(self._drain, tag)
        finally:
            self._draining = False

    def _handle(self, identity: bytes, frames: list[bytes]) -> None:
        """One message from the peer ``identity`` (its endpoint's tag and id)."""
        try:
            msg = p.decode_container_message(frames)
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
            self._call(self._on_response, conn, msg.msg_id, msg.outputs, msg.errors)
        elif type(msg) is p.Heartbeat:
            self.stats["heartbeats"] += 1
            if conn is None:
                # Announce the error frame first (original containers ignore it), then ask to register.
                self._send(identity, p.encode_heartbeat_reply(p.HeartbeatType.ERROR_FRAME_SUPPORTED))
                self._send(identity, p.encode_heartbeat_reply(p.HeartbeatType.REQUEST_CONTAINER_METADATA))
            else:
                self._send(identity, p.encode_heartbeat_reply(p.HeartbeatType.KEEPALIVE))
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

    def _call(self, fn: Callable[..., object], *args: object) -> None:
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

    def _peer_lost(self, identity: bytes) -> None:
        """A stream peer's connection ended: its session (if it registered) ends with it."""
        self._peers.pop(identity, None)
        conn = self.connections.pop(identity, None)
        if conn is not None:
            self.stats["disconnects"] += 1
            self._notify_disconnect(conn, "its connection to the RPC socket closed")

    # -- liveness ------------------------------------------------------------------------------

    async def _liveness_loop(self) -> None:
        interval = min(0.5, self.liveness_timeout / 4)
        while True:
            await asyncio.sleep(interval)
            # After a stalled loop, read what is queued before judging anyone silent.
            for tag, sock in list(self._socks.items()):
                if sock.get(_EVENTS) & _POLLIN:  # type: ignore[operator]  # an int
                    self._drain(tag)
            self.check_liveness(time.monotonic())
            self._read_monitor()

    def _read_monitor(self) -> None:
        """Count (and now and then log) peers that failed the handshake: no keys or wrong keys."""
        mon = self._monitor
        if mon is None:
            return
        failed = 0
        try:
            while True:
                frames = mon.recv_multipart(zmq.NOBLOCK)
                if len(frames[0]) >= 2 and int.from_bytes(frames[0][:2], "little") & _HANDSHAKE_FAILED:
                    failed += 1
        except zmq.Again:
            pass
        except zmq.ZMQError as e:
            log.debug("RPC monitor: %s", e)
        if not failed:
            return
        self.stats["handshake_failures"] += failed
        now = time.monotonic()
        if now - self._handshake_logged_at >= _HANDSHAKE_LOG_INTERVAL:
            self._handshake_logged_at = now
            log.warning(
                "%d RPC connection(s) failed the handshake (%d so far): peers without this cluster's "
                "RPC keys are refused. An original-protocol container needs the cluster to allow "
                "unauthenticated replicas (query frontend --rpc-auth none)",
                failed,
                self.stats["handshake_failures"],
            )

    def check_liveness(self, now: float) -> None:
        """Remove sessions silent for longer than their allowance (called periodically)."""
        for conn in list(self.connections.values()):
            allowed = conn.liveness_timeout(self.liveness_timeout)
            silent = now - conn.last_seen
            if silent > allowed and self.connections.get(conn.identity) is conn:
                del self.connections[conn.identity]
                self.stats["timeouts"] += 1
                self._notify_disconnect(conn, f"no message for {silent:.1f} s (limit {allowed:.1f} s)")


class _StreamPeer(asyncio.Protocol):
    """One connection to the Unix-socket endpoint: a session's transport (:mod:`clipper.rpc.stream`)."""

    def __init__(self, server: RpcServer) -> None:
        self.server = server
        self.identity = _IPC + next(server._peer_ids).to_bytes(8, "big")
        self.reader = MessageReader(server.max_message_bytes)
        self.transport: asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.server._peers[self.identity] = self

    def data_received(self, data: bytes) -> None:
        server = self.server
        try:
            messages = self.reader.feed(data)
        except p.ProtocolError as e:
            server.stats["malformed"] += 1
            log.warning("RPC socket peer disconnected: %s", e)
            self.transport.abort()
            return
        identity = self.identity
        for frames in messages:
            server._handle(identity, frames)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server._peer_lost(self.identity)

    def send(self, frames: list[bytes]) -> None:
        transport = self.transport
        if transport.is_closing() or transport.get_write_buffer_size() > STREAM_SEND_BUFFER_BYTES:
            self.server.stats["send_errors"] += 1  # dropped, as ZeroMQ drops at its high-water mark
            return
        transport.write(encode_message(frames))
