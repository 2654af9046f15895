"""Fast non-blocking multipart send/receive on pyzmq sockets (the RPC hot path).

pyzmq's ``send_multipart``/``recv_multipart`` spend most of their time in Python-level wrappers
(per-frame ``IntFlag`` arithmetic, argument checks). A prediction message has one frame per input,
so these helpers call the Cython backend directly with plain-int flags: measured about 5x faster
for a 40-frame send and 1.5x for the receive. They fall back to the public methods when the backend
does not look as expected.
"""

from __future__ import annotations

import zmq

try:
    from zmq.backend import Socket as _Backend

    _send = _Backend.send
    _recv = _Backend.recv
    _FAST = callable(_send) and callable(_recv) and hasattr(zmq.Frame, "more")
except ImportError:  # pragma: no cover - other pyzmq backends
    _FAST = False

_NOBLOCK = int(zmq.NOBLOCK)
_MORE_NOBLOCK = int(zmq.SNDMORE) | _NOBLOCK


def send_frames(sock: zmq.Socket[bytes], frames: list[bytes]) -> None:
    """Send one multipart message without blocking; raises ``zmq.Again``/``zmq.ZMQError`` as pyzmq."""
    if not _FAST:
        sock.send_multipart(frames, zmq.NOBLOCK)
        return
    last = len(frames) - 1
    for i, frame in enumerate(frames):
        _send(sock, frame, _MORE_NOBLOCK if i < last else _NOBLOCK, True, False)


def recv_frames(sock: zmq.Socket[bytes]) -> list[bytes]:
    """Receive one multipart message without blocking (``zmq.Again`` when none is queued)."""
    if not _FAST:
        return sock.recv_multipart(zmq.NOBLOCK)
    frame = _recv(sock, _NOBLOCK, False, False)
    parts = [frame.bytes]
    while frame.more:
        frame = _recv(sock, _NOBLOCK, False, False)
        parts.append(frame.bytes)
    return parts


def recv_frames_wait(sock: zmq.Socket[bytes]) -> list[bytes]:
    """Receive one multipart message, waiting up to the socket's ``RCVTIMEO`` for its first frame
    (``zmq.Again`` when none came; the GIL is released while waiting). ZeroMQ delivers a multipart
    message whole, so the other frames are read without blocking."""
    if not _FAST:
        frames: list[bytes] = sock.recv_multipart()
        return frames
    frame = _recv(sock, 0, False, False)
    parts = [frame.bytes]
    while frame.more:
        frame = _recv(sock, _NOBLOCK, False, False)
        parts.append(frame.bytes)
    return parts
