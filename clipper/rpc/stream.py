"""RPC messages over a Unix stream socket: the local backend's transport, without ZeroMQ.

The messages are those of the ZeroMQ transport (``docs/wire-protocol.md``), frame for frame; only
how a multipart message is delimited on the byte stream differs::

    u32 n            the number of frames (1 to MAX_FRAMES), little-endian
    u32 len[n]       each frame's length (at most the reader's frame limit)
    bytes            the n frames, back to back

Why not ZeroMQ over ``ipc://``: each ZeroMQ message crosses two extra threads (the sender's and the
receiver's I/O threads, woken through their mailboxes) besides the socket, so a round trip costs
each side ~40 µs of CPU where this costs ~10 µs (``bench/transport_echo.py``: a Python echo over
each, on the 2-core test machine). Both ends of this socket are this package (the query frontend and
``clipper.container``), on one host; containers of other origins keep the ZeroMQ TCP port.

A reader rejects a message announcing more than ``MAX_FRAMES`` frames or a frame over its limit as
soon as the announcement is read, before buffering any of it (the ZeroMQ endpoint's per-frame limit,
``ZMQ_MAXMSGSIZE``, checked the same way).
"""

from __future__ import annotations

import math
import os
import select
import socket
import struct
import time

from clipper.rpc.protocol import ProtocolError

#: The longest Unix socket path Linux takes (``sun_path`` holds 108 bytes with the final NUL).
MAX_SOCKET_PATH_BYTES = 107
#: A replica polls for the next batch (``StreamChannel``'s ``spin``) while at least this share of its
#: recent polls caught one (a moving average, each poll weighing ``SPIN_RATE_WEIGHT``); otherwise
#: the next batch comes too late for polling to pay (a rarely queried model, a canary's small share
#: waiting for batch-mates) and it polls only once every ``SPIN_PROBE_EVERY`` answers, to notice
#: when that changes.
SPIN_MIN_HIT_RATE = 0.25
SPIN_RATE_WEIGHT = 0.125
SPIN_PROBE_EVERY = 16
#: Upper bound of the frames of one message (a batch is one frame per input, plus a header).
MAX_FRAMES = 1 << 20
_U32 = struct.Struct("<I")
#: Bytes asked of one receive: under the C allocator's mmap threshold, so that the buffer Python
#: allocates for it is not a fresh mapping (two system calls and page faults) per receive.
_READ_BYTES = 64 * 1024
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
    """Splits a byte stream into messages (lists of frames); keeps what is incomplete.

    An incomplete message's chunks are kept as they came and joined once the bytes it needs have
    arrived (known from its header), so a large message read in many chunks is copied once, not
    once per chunk."""

    __slots__ = ("max_frame_bytes", "_chunks", "_have", "_need")

    def __init__(self, max_frame_bytes: int) -> None:
        self.max_frame_bytes = max_frame_bytes
        self._chunks: list[bytes] = []
        self._have = 0  # bytes in _chunks
        self._need = 0  # bytes the pending message needs before it is worth parsing again

    def feed(self, data: bytes) -> list[list[bytes]]:
        """The messages completed by ``data`` (possibly none); raises :class:`ProtocolError` for a
        message that breaks the limits (the stream cannot be trusted after it: close it)."""
        if self._chunks:
            self._chunks.append(data)
            self._have += len(data)
            if self._have < self._need:
                return []
            buf = b"".join(self._chunks)
            self._chunks = []
        else:
            buf = data
        out: list[list[bytes]] = []
        pos = 0
        end = len(buf)
        need = 4
        while end - pos >= 4:
            (n,) = _U32.unpack_from(buf, pos)
            if n == 0 or n > MAX_FRAMES:
                raise ProtocolError(f"a message of {n} frames (1 to {MAX_FRAMES} allowed)")
            head = 4 + 4 * n
            if end - pos < head:
                need = head
                break
            lengths = _lengths(n).unpack_from(buf, pos + 4)
            if max(lengths) > self.max_frame_bytes:
                raise ProtocolError(f"a frame of {max(lengths)} bytes (limit {self.max_frame_bytes})")
            start = pos + head
            stop = start + sum(lengths)
            if stop > end:
                need = stop - pos
                break
            frames = []
            for length in lengths:
                frames.append(buf[start : start + length])
                start += length
            out.append(frames)
            pos = stop
            need = 4
        if pos < end:
            rest = buf[pos:] if pos else buf
            self._chunks = [rest]
            self._have = len(rest)
            self._need = need
        return out

    @property
    def pending(self) -> int:
        """Bytes of an incomplete message held."""
        return self._have if self._chunks else 0


class StreamChannel:
    """The replica's end: a blocking Unix stream socket to the frontend, connected on demand.

    Used by one thread at a time (the container runtime's socket lock). :meth:`send` connects when
    not connected and reports failure (frontend not there) instead of raising, as a ZeroMQ
    ``IMMEDIATE`` DEALER does; a lost connection is noticed by :meth:`recv` (the next :meth:`send`
    makes a new one: the frontend sees a new peer and asks it to register).

    A receive waits in ``poll()`` for input, then reads without blocking: two system calls where a
    blocking ``recv`` is one, because Linux wakes a thread blocked in ``recv`` on a Unix stream
    socket whenever the peer *reads* what that thread sent. A replica that blocked before the
    frontend read its answer (the usual case for a model whose next batch comes later, such as a
    canary's share) was woken for nothing on every batch: a context switch, and on a virtual
    machine an inter-processor interrupt charged to the frontend (``bench/traffic.py``, a 90/10
    split: the replicas' context switches per prediction fell by a fifth). A send that cannot
    complete within ``send_timeout`` (a frontend that stopped reading) ends the connection: the
    stream is broken after a partial message.

    ``spin``: after a send (an answer), the next receive first polls without blocking for up to this
    many seconds, yielding the CPU to any other runnable thread between polls, and only then blocks.
    A busy frontend sends the next batch within tens of microseconds of reading an answer; a replica
    asleep in ``recv`` by then must be woken, and on a virtual machine waking a halted virtual CPU
    costs about as much again -- on every batch's round trip. Measured with the benchmark's 32
    closed-loop clients on 2 vCPUs: +8 to 10 % predictions/s at 60 µs (none at 20 µs: the batch
    seldom comes that soon), for ~1.5 µs more of the replica's CPU per prediction. An idle replica
    does not spin (only after a send, at most ``spin`` per message), nor one whose polls seldom
    catch the next batch (:data:`SPIN_MIN_HIT_RATE`). 0 turns it off.
    """

    def __init__(
        self,
        path: str,
        max_frame_bytes: int = 1 << 30,
        send_timeout: float = 10.0,
        spin: float = 0.0,
    ) -> None:
        self.path = path
        self.spin = spin
        self._spin_next = False  # a send happened since the last receive: an answer may be imminent
        self.caught_spinning = 0  # messages that arrived while spinning (the spin's benefit)
        self.spins = 0  # polls made (each costs up to ``spin`` of CPU)
        self._hit_rate = 1.0  # moving share of recent polls that caught the next message
        self._skipped = 0  # sends since the last poll
        self.send_timeout = send_timeout
        self._max_frame_bytes = max_frame_bytes
        self._sock: socket.socket | None = None
        self._reader = MessageReader(max_frame_bytes)
        self._ready: list[list[bytes]] = []
        self._poller = select.poll()
        self.connections = 0  # connections made so far

    @property
    def connected(self) -> bool:
        return self._sock is not None

    def _connect(self) -> socket.socket | None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(self.path)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(self.send_timeout))
        except OSError:
            s.close()
            return None
        self._sock = s
        self._poller = select.poll()
        self._poller.register(s, select.POLLIN)
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
            s.sendall(encode_message(frames))
            self._spin_next = True
            return True
        except OSError:  # gone, or not reading (SO_SNDTIMEO: EAGAIN)
            self.disconnect()
            return False

    def recv(self, timeout: float) -> list[bytes] | None:
        """The next message, waiting up to about ``timeout`` seconds; None when none came (or the
        connection is not there: then after waiting, so that a caller's loop does not spin)."""
        if self._ready:
            return self._ready.pop(0)
        s = self._sock
        if s is None:
            time.sleep(max(0.0, timeout))
            return None
        if timeout <= 0:
            return None
        try:
            if self._spin_next and self.spin > 0:
                msg = self._poll_after_send(s, min(self.spin, timeout))
                if msg is not None or self._sock is None:
                    return msg
            until = time.monotonic() + timeout
            while True:
                if not self._poller.poll(math.ceil(max(0.0, until - time.monotonic()) * 1000)):
                    return None
                try:
                    msg = self._deliver(s.recv(_READ_BYTES, socket.MSG_DONTWAIT))
                except BlockingIOError:
                    msg = None
                if msg is not None or self._sock is None or time.monotonic() >= until:
                    return msg
        except InterruptedError:
            return None
        except (OSError, ProtocolError):
            self.disconnect()
            return None

    def _deliver(self, data: bytes) -> list[bytes] | None:
        """The first message ``data`` completes (later ones are kept for the next receives); None
        when it completes none, or when it is the frontend's close (then disconnected)."""
        if not data:
            self.disconnect()
            return None
        msgs = self._reader.feed(data)
        if not msgs:
            return None
        self._ready = msgs[1:]
        return msgs[0]

    def _poll_after_send(self, s: socket.socket, seconds: float) -> list[bytes] | None:
        """The next message if it arrives within ``seconds``, polled without blocking and yielding
        the CPU between polls -- when recent polls caught one (see :data:`SPIN_MIN_HIT_RATE`)."""
        self._spin_next = False
        if self._hit_rate < SPIN_MIN_HIT_RATE and self._skipped < SPIN_PROBE_EVERY:
            self._skipped += 1
            return None
        self._skipped = 0
        self.spins += 1
        until = time.perf_counter() + seconds
        msg = None
        while msg is None and self._sock is not None:
            try:
                msg = self._deliver(s.recv(_READ_BYTES, socket.MSG_DONTWAIT))
            except BlockingIOError:
                if time.perf_counter() >= until:
                    break
                os.sched_yield()
        self._hit_rate *= 1 - SPIN_RATE_WEIGHT
        if msg is not None:
            self._hit_rate += SPIN_RATE_WEIGHT
            self.caught_spinning += 1
        return msg

    def disconnect(self) -> None:
        s, self._sock = self._sock, None
        if s is not None:
            s.close()
        self._ready = []

    def close(self) -> None:
        """:meth:`disconnect` (an alias would not compile: ``clipper.compiled``)."""
        self.disconnect()


def _timeval(seconds: float) -> bytes:
    whole = int(seconds)
    return struct.pack("@ll", whole, int((seconds - whole) * 1_000_000))
