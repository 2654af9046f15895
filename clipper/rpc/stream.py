"""RPC messages over a Unix stream socket: the local backend's transport, without ZeroMQ.

The messages are those of the ZeroMQ transport (``docs/wire-protocol.md``), frame for frame; only
how a multipart message is delimited on the byte stream differs::

    u32 n            the number of frames (1 to MAX_FRAMES), little-endian
    u32 len[n]       each frame's length (at most the reader's frame limit)
    bytes            the n frames, back to back

Why not ZeroMQ over ``ipc://``: each ZeroMQ message crosses two extra threads (the sender's and the
receiver's I/O threads, woken through their mailboxes) besides the socket, so a round trip costs
each side ~100 µs of CPU where a plain socket costs ~40 µs (a Python echo over each, measured on
the 2-core test machine). Both ends of this socket are this package (the query frontend and
``clipper.container``), on one host; containers of other origins keep the ZeroMQ TCP port.

A reader rejects a message announcing more than ``MAX_FRAMES`` frames or a frame over its limit as
soon as the announcement is read, before buffering it: memory never grows with what a peer claims.
"""

from __future__ import annotations

import socket
import struct
import time

from clipper.rpc.protocol import ProtocolError

#: Upper bound of the frames of one message (a batch is one frame per input, plus a header).
MAX_FRAMES = 1 << 20
_U32 = struct.Struct("<I")
_COUNTS: dict[int, struct.Struct] = {}


def _lengths(n: int) -> struct.Struct:
    s = _COUNTS.get(n)
    if s is None:
        s = struct.Struct(f"<{n}I")
        if len(_COUNTS) < 256:
            _COUNTS[n] = s
    return s


def encode_message(frames: list[bytes]) -> bytes:
    """One message's bytes on the stream."""
    n = len(frames)
    return b"".join((_U32.pack(n), _lengths(n).pack(*map(len, frames)), *frames))


class MessageReader:
    """Splits a byte stream into messages (lists of frames); keeps what is incomplete."""

    __slots__ = ("max_frame_bytes", "_buf")

    def __init__(self, max_frame_bytes: int) -> None:
        self.max_frame_bytes = max_frame_bytes
        self._buf = b""

    def feed(self, data: bytes) -> list[list[bytes]]:
        """The messages completed by ``data`` (possibly none); raises :class:`ProtocolError` for a
        message that breaks the limits (the stream cannot be trusted after it: close it)."""
        buf = self._buf + data if self._buf else data
        out: list[list[bytes]] = []
        pos = 0
        end = len(buf)
        while end - pos >= 4:
            (n,) = _U32.unpack_from(buf, pos)
            if n == 0 or n > MAX_FRAMES:
                raise ProtocolError(f"a message of {n} frames (1 to {MAX_FRAMES} allowed)")
            head = 4 + 4 * n
            if end - pos < head:
                break
            lengths = _lengths(n).unpack_from(buf, pos + 4)
            if max(lengths) > self.max_frame_bytes:
                raise ProtocolError(f"a frame of {max(lengths)} bytes (limit {self.max_frame_bytes})")
            start = pos + head
            stop = start + sum(lengths)
            if stop > end:
                break
            frames = []
            for length in lengths:
                frames.append(buf[start : start + length])
                start += length
            out.append(frames)
            pos = stop
        self._buf = buf[pos:] if pos < end else b""
        return out

    @property
    def pending(self) -> int:
        """Bytes of an incomplete message held."""
        return len(self._buf)


class StreamChannel:
    """The replica's end: a blocking Unix stream socket to the frontend, connected on demand.

    Used by one thread at a time (the container runtime's socket lock). :meth:`send` connects when
    not connected and reports failure (frontend not there) instead of raising, as a ZeroMQ
    ``IMMEDIATE`` DEALER does; a lost connection is noticed by :meth:`recv` (the next :meth:`send`
    makes a new one: the frontend sees a new peer and asks it to register).
    """

    def __init__(self, path: str, max_frame_bytes: int = 1 << 30) -> None:
        self.path = path
        self._max_frame_bytes = max_frame_bytes
        self._sock: socket.socket | None = None
        self._reader = MessageReader(max_frame_bytes)
        self._ready: list[list[bytes]] = []
        self.connections = 0  # connections made so far

    @property
    def connected(self) -> bool:
        return self._sock is not None

    def _connect(self) -> socket.socket | None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(self.path)
        except OSError:
            s.close()
            return None
        self._sock = s
        self._reader = MessageReader(self._max_frame_bytes)
        self._ready = []
        self.connections += 1
        return s

    def send(self, frames: list[bytes]) -> bool:
        """Send one message; False when the frontend cannot be reached (nothing was sent)."""
        s = self._sock or self._connect()
        if s is None:
            return False
        try:
            s.settimeout(None)
            s.sendall(encode_message(frames))
            return True
        except OSError:
            self.disconnect()
            return False

    def recv(self, timeout: float) -> list[bytes] | None:
        """The next message, waiting up to ``timeout`` seconds; None when none came (or the
        connection is not there: then after waiting, so that a caller's loop does not spin)."""
        if self._ready:
            return self._ready.pop(0)
        s = self._sock
        if s is None:
            time.sleep(timeout)
            return None
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            s.settimeout(left)
            try:
                data = s.recv(1 << 20)
            except (TimeoutError, BlockingIOError, InterruptedError):
                return None
            except OSError:
                self.disconnect()
                return None
            if not data:  # the frontend closed the connection
                self.disconnect()
                return None
            try:
                msgs = self._reader.feed(data)
            except ProtocolError:
                self.disconnect()
                return None
            if msgs:
                self._ready = msgs[1:]
                return msgs[0]

    def disconnect(self) -> None:
        s, self._sock = self._sock, None
        if s is not None:
            s.close()
        self._ready = []

    close = disconnect
