"""CPU per RPC message of a model container (``clipper.container.runtime``), closed loop.

A real ``ContainerRuntime`` runs in a child process with a no-op Python model (``str(len(x))`` per
input); this process plays the query frontend with a plain ZeroMQ ROUTER (or the local backend's
Unix socket, ``clipper.rpc.stream``): it answers the container's registration, then sends one
prediction message at a time and waits for its answer. The child's CPU time (``/proc/<pid>/stat``:
every thread, ZeroMQ's I/O thread included) divided by the number of messages is the container's
fixed cost per batch, which a model with small batches (the minority version of a traffic split,
many applications each with its own model) pays per few predictions. Reported over the Unix socket
and over ZeroMQ TCP with and without CURVE, with and without the container's Prometheus metrics,
for batches of 1 and 16 inputs; the round-trip time is wall clock (it includes this process's side).

    python bench/replica.py                 # 3,000 messages per case
    python bench/replica.py -n 500 --json   # a quick run

A/B: run it from two checkouts (each imports the ``clipper`` next to it).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import zmq  # noqa: E402

from clipper.datatypes import InputType  # noqa: E402
from clipper.rpc import protocol as p  # noqa: E402
from clipper.rpc.auth import RpcKeys, secure_server  # noqa: E402
from clipper.rpc.stream import MessageReader, encode_message  # noqa: E402

CHILD = """
import json, sys
sys.path.insert(0, sys.argv[4])
from clipper.container.config import ContainerConfig
from clipper.container.metrics import ContainerMetrics
from clipper.container.runtime import ContainerRuntime
from clipper.datatypes import InputType
from clipper.rpc.auth import RpcKeys
port, keys, metrics = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "1"
rpc_keys = RpcKeys(**json.loads(keys)).for_replica() if keys != "-" else None
from pathlib import Path
sock = Path(sys.argv[5]) if sys.argv[5] != "-" else None
config = ContainerConfig("m", "1", InputType.DOUBLES, port=port, rpc_socket=sock)
ContainerRuntime(lambda xs: [str(len(x)) for x in xs], config, ContainerMetrics() if metrics else None,
                 rpc_keys=rpc_keys, predict_limit=30).run()
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _StreamFrontend:
    """The frontend's end of the local backend's Unix socket, with a ROUTER's interface here."""

    def __init__(self, path: str) -> None:
        self.listener = socket.socket(socket.AF_UNIX)
        self.listener.bind(path)
        self.listener.listen()
        self.listener.settimeout(30)
        self.conn: socket.socket | None = None
        self.reader = MessageReader(1 << 30)
        self.ready: list[list[bytes]] = []

    def recv_multipart(self) -> list[bytes]:
        if self.conn is None:
            self.conn, _ = self.listener.accept()
            self.conn.settimeout(30)
        while not self.ready:
            data = self.conn.recv(65536)
            if not data:
                raise RuntimeError("the container closed its connection")
            self.ready = self.reader.feed(data)
        return [b"peer", *self.ready.pop(0)]

    def send_multipart(self, frames: list[bytes]) -> None:
        assert self.conn is not None
        self.conn.sendall(encode_message(frames[1:]))

    def close(self, linger: int = 0) -> None:
        if self.conn is not None:
            self.conn.close()
        self.listener.close()


def measure(curve: bool, metrics: bool, batch: int, n: int, stream: bool = False) -> dict[str, Any]:
    if stream:
        with tempfile.TemporaryDirectory(prefix="clipper-replica-") as tmp:
            path = os.path.join(tmp, "rpc.sock")
            return _measure(_StreamFrontend(path), None, None, "-", 0, metrics, batch, n, path)
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    auth = None
    keys = "-"
    if curve:
        k = RpcKeys.generate()
        auth = secure_server(ctx, sock, k)
        keys = json.dumps(vars(k))
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    sock.setsockopt(zmq.RCVTIMEO, 30_000)  # a container that never answers ends the run, not hangs it
    result = _measure(sock, ctx, auth, keys, port, metrics, batch, n, "-")
    result["curve"] = curve
    return result


def _measure(
    sock: Any, ctx: Any, auth: Any, keys: str, port: int, metrics: bool, batch: int, n: int, path: str
) -> dict[str, Any]:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(port), keys, "1" if metrics else "0", str(REPO), path],
        stderr=subprocess.DEVNULL,
    )
    try:
        while True:  # registration: answer heartbeats with a metadata request until it registers
            identity, *frames = sock.recv_multipart()
            msg = p.decode_container_message(frames)
            if isinstance(msg, p.NewContainer):
                break
            reply = p.encode_heartbeat_reply(p.HeartbeatType.REQUEST_CONTAINER_METADATA)
            sock.send_multipart([identity, *reply])
        inputs = [struct.pack("<3d", 1.0, 2.0, float(i)) for i in range(batch)]

        def round_trip(msg_id: int) -> None:
            sock.send_multipart([identity, *p.encode_prediction_request(msg_id, InputType.DOUBLES, inputs)])
            while True:
                who, *frames = sock.recv_multipart()
                if isinstance(p.decode_container_message(frames), p.PredictionResponse):
                    return
                sock.send_multipart([who, *p.encode_heartbeat_reply(p.HeartbeatType.KEEPALIVE)])

        for i in range(200):  # warm-up
            round_trip(i)
        cpu0, t0 = cpu_seconds(child.pid), time.perf_counter()
        for i in range(n):
            round_trip(i)
        cpu1, t1 = cpu_seconds(child.pid), time.perf_counter()
    finally:
        child.terminate()
        child.wait(30)
        sock.close(0)
        if auth is not None:
            auth.stop()
        if ctx is not None:
            ctx.term()
    return {
        "transport": "unix socket" if path != "-" else "zmq tcp",
        "curve": False,
        "metrics": metrics,
        "batch": batch,
        "messages": n,
        "replica_cpu_us_per_message": round((cpu1 - cpu0) / n * 1e6, 1),
        "round_trip_us": round((t1 - t0) / n * 1e6, 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--messages", type=int, default=3000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = [
        measure(curve, metrics, batch, args.messages, stream)
        for stream, curve in ((True, False), (False, False), (False, True))
        for metrics in (False, True)
        for batch in (1, 16)
    ]
    if args.json:
        print(json.dumps({"cases": rows}))  # one line: the last line is the result
        return 0
    print("transport    curve  metrics  batch  replica CPU us/message  round trip us")
    for r in rows:
        print(
            f"{r['transport']:12} {r['curve']!s:6} {r['metrics']!s:8} {r['batch']:5}  "
            f"{r['replica_cpu_us_per_message']:22.1f}  {r['round_trip_us']:13.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
