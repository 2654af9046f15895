"""A message's cost on each RPC transport of one host: ZeroMQ over ``ipc://`` against the plain
Unix stream socket of ``clipper.rpc.stream`` (the local backend's), as a Python echo.

Two processes: this one sends a three-frame message (the size of a small prediction request) and
waits for it to come back, ``-n`` times; a forked child echoes it. Reports the round trip (wall
clock) and each side's CPU per message (``getrusage``: every thread, ZeroMQ's I/O threads included).

    python bench/transport_echo.py            # both transports, 20,000 messages each
    python bench/transport_echo.py -n 2000 --json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import sys
import tempfile
import time
from pathlib import Path

import zmq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clipper.rpc.stream import MessageReader, StreamChannel, encode_message  # noqa: E402

FRAMES = [b"", b"\x01\x00\x00\x00", b"x" * 24]


def _cpu(who: int) -> float:
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def _zmq_child(path: str, n: int) -> None:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    d = ctx.socket(zmq.DEALER)
    d.connect(f"ipc://{path}")
    d.send(b"hello")
    for _ in range(n):
        d.send_multipart(d.recv_multipart())
    d.recv()  # the parent's "done": it measured before this


def _stream_child(path: str, n: int) -> None:
    chan = StreamChannel(path)
    chan.send([b"hello"])
    for _ in range(n):
        msg = chan.recv(60.0)
        assert msg is not None
        chan.send(msg)
    chan.recv(60.0)


def measure(transport: str, n: int, workdir: str) -> dict[str, float | str | int]:
    path = os.path.join(workdir, f"{transport}.sock")
    if transport == "zmq":
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        router = ctx.socket(zmq.ROUTER)
        router.bind(f"ipc://{path}")
    else:
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(path)
        listener.listen()
    pid = os.fork()
    if pid == 0:
        try:
            (_zmq_child if transport == "zmq" else _stream_child)(path, n)
        finally:
            os._exit(0)
    if transport == "zmq":
        ident, _ = router.recv_multipart()

        def send(frames: list[bytes]) -> None:
            router.send_multipart([ident, *frames])

        def recv() -> None:
            router.recv_multipart()
    else:
        conn, _ = listener.accept()
        reader = MessageReader(1 << 20)
        reader.feed(conn.recv(65536))  # the hello

        def send(frames: list[bytes]) -> None:
            conn.sendall(encode_message(frames))

        def recv() -> None:
            while not reader.feed(conn.recv(65536)):
                pass

    children0 = _cpu(resource.RUSAGE_CHILDREN)
    cpu0, t0 = _cpu(resource.RUSAGE_SELF), time.perf_counter()
    for _ in range(n):
        send(FRAMES)
        recv()
    t1, cpu1 = time.perf_counter(), _cpu(resource.RUSAGE_SELF)
    send([b"done"])
    os.waitpid(pid, 0)
    child = _cpu(resource.RUSAGE_CHILDREN) - children0  # its whole life: connecting is noise at this n
    if transport == "zmq":
        router.close(0)
        ctx.term()
    else:
        conn.close()
        listener.close()
    return {
        "transport": transport,
        "messages": n,
        "round_trip_us": round((t1 - t0) / n * 1e6, 1),
        "sender_cpu_us_per_message": round((cpu1 - cpu0) / n * 1e6, 1),
        "echo_cpu_us_per_message": round(child / n * 1e6, 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--messages", type=int, default=20000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="clipper-echo-") as tmp:
        rows = [measure(t, args.messages, tmp) for t in ("zmq", "stream")]
    if args.json:
        print(json.dumps({"cases": rows}))
        return 0
    print("transport  round trip us  sender CPU us/message  echo CPU us/message")
    for r in rows:
        print(
            f"{r['transport']:9} {r['round_trip_us']:14} {r['sender_cpu_us_per_message']:22} "
            f"{r['echo_cpu_us_per_message']:20}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
