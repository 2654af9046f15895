"""Misbehaving RPC peers for end-to-end fault tests: a DEALER that registers as a model replica and
then hangs, answers garbage, or sprays random frames at the query frontend's RPC port."""

from __future__ import annotations

import random
import struct
import threading
import time

import zmq

from clipper.rpc.auth import RpcKeys, secure_client


def u32(x: int) -> bytes:
    return struct.pack("<I", x)


HEARTBEAT = [b"", u32(2)]
METADATA_REQUEST = [b"", u32(3), u32(2), u32(1)]


def dealer(ctx: zmq.Context, port: int, keys: RpcKeys | None, sndhwm: int = 1000) -> zmq.Socket:
    """A DEALER connected to the RPC port; a CURVE client with ``keys`` (the cluster's replica keys)."""
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, sndhwm)
    if keys is not None:
        secure_client(sock, keys)
    sock.connect(f"tcp://127.0.0.1:{port}")
    return sock


def new_container(name: str, version: str, input_type_code: int = 3) -> list[bytes]:
    return [b"", u32(0), name.encode(), version.encode(), str(input_type_code).encode(), u32(3)]


def is_predict_request(frames: list[bytes]) -> bool:
    """Frontend -> container prediction request: [b"", version, CONTAINER_CONTENT, msg_id, ...]."""
    return len(frames) >= 4 and frames[1] == u32(3) and frames[2] == u32(1)


class FakeReplica(threading.Thread):
    """Registers as ``name:version`` and keeps heartbeating (so it is never "dead by silence"), but
    answers prediction requests according to ``mode``:

    * ``"hang"``: never answers;
    * ``"garbage"``: answers with random, malformed frames (never a valid response);
    * ``"short"``: a well-formed response with one output fewer than the batch had inputs.
    """

    def __init__(
        self, port: int, name: str, version: str, mode: str, seed: int = 7, keys: RpcKeys | None = None
    ) -> None:
        super().__init__(daemon=True, name=f"fake-replica-{mode}")
        self.keys = keys
        self.port, self.name_, self.version, self.mode = port, name, version, mode
        self.rng = random.Random(seed)
        self.requests = 0
        self.registered = threading.Event()
        self.first_request = threading.Event()
        self._halt = threading.Event()

    def run(self) -> None:
        ctx = zmq.Context()
        sock = dealer(ctx, self.port, self.keys)
        try:
            next_beat = 0.0
            while not self._halt.is_set():
                now = time.monotonic()
                if now >= next_beat:
                    sock.send_multipart(HEARTBEAT)
                    next_beat = now + 0.3
                if not sock.poll(50):
                    continue
                frames = sock.recv_multipart()
                if frames == METADATA_REQUEST:
                    sock.send_multipart(new_container(self.name_, self.version))
                    self.registered.set()
                elif is_predict_request(frames):
                    self.requests += 1
                    self.first_request.set()
                    self._answer(sock, frames)
        finally:
            sock.close(0)
            ctx.term()

    def _answer(self, sock: zmq.Socket, frames: list[bytes]) -> None:
        msg_id = frames[3]
        if self.mode == "hang":
            return
        if self.mode == "garbage":
            for _ in range(3):
                junk = [
                    self.rng.randbytes(self.rng.randrange(0, 16)) for _ in range(self.rng.randrange(1, 7))
                ]
                sock.send_multipart(junk)
            # a response-looking message with a lying header (lengths beyond the frames)
            header = struct.pack("<2Q", 1, 1 << 40)
            sock.send_multipart([b"", u32(1), msg_id, struct.pack("<Q", len(header)), header, b"x"])
            return
        if self.mode == "short":
            header = struct.pack("<Q", 0)
            sock.send_multipart([b"", u32(1), msg_id, struct.pack("<Q", len(header)), header])
            return
        raise ValueError(self.mode)

    def stop(self) -> None:
        self._halt.set()
        self.join(5)


class Sprayer(threading.Thread):
    """An unregistered rogue DEALER that sends random and truncated frames until stopped."""

    def __init__(self, port: int, seed: int = 99, keys: RpcKeys | None = None) -> None:
        super().__init__(daemon=True, name="rpc-sprayer")
        self.keys = keys
        self.port = port
        self.rng = random.Random(seed)
        self.sent = 0
        self._halt = threading.Event()

    def _message(self) -> list[bytes]:
        r = self.rng
        kind = r.randrange(6)
        if kind == 0:  # pure noise
            return [r.randbytes(r.randrange(0, 32)) for _ in range(r.randrange(1, 10))]
        if kind == 1:  # truncated registration
            return new_container("m", "1")[: r.randrange(1, 6)]
        if kind == 2:  # registration with garbage fields (bad UTF-8, unknown type, wrong rpc version)
            return [b"", u32(0), r.randbytes(8), r.randbytes(3), r.randbytes(2), u32(r.randrange(9))]
        if kind == 3:  # a "response" for a msg id this peer was never sent
            header = struct.pack("<2Q", 1, 3)
            return [b"", u32(1), u32(r.randrange(1 << 32)), struct.pack("<Q", 16), header, b"abc"]
        if kind == 4:  # huge declared sizes
            return [b"", u32(1), u32(0), struct.pack("<Q", 1 << 62), b"\xff" * 8]
        return [b"", u32(r.randrange(1 << 32)), *(r.randbytes(4) for _ in range(r.randrange(0, 4)))]

    def run(self) -> None:
        ctx = zmq.Context()
        sock = dealer(ctx, self.port, self.keys)
        try:
            while not self._halt.is_set():
                try:
                    sock.send_multipart(self._message(), flags=zmq.NOBLOCK)
                    self.sent += 1
                except zmq.Again:
                    pass
                while sock.poll(0):  # drain whatever the frontend answers (heartbeat replies)
                    sock.recv_multipart()
                if self.sent % 50 == 0:
                    time.sleep(0.005)  # bounded: the machine is shared
        finally:
            sock.close(0)
            ctx.term()

    def stop(self) -> None:
        self._halt.set()
        self.join(5)
