"""CPU per prediction request through the whole query frontend, in-process (no sockets, no model process).

The frontend's real objects, wired as ``QueryFrontend.start`` wires them, fed with wrk's bytes:
``_Connection.data_received`` (httptools) -> routing -> ``parse_predict`` -> queue -> adaptive batch
-> ``RpcServer.send_batch`` (the real frame encoding, on the local backend's Unix-socket session) ...
the model's reply bytes -> the session's ``data_received`` (the real decoding) -> completion, metrics,
response bytes -> ``transport.write``. Only the two sockets are replaced: the HTTP transport's
``write`` keeps the response, the RPC transport's hands the frontend's bytes to an in-process sum model
whose own CPU (decoding, summing, encoding its replies) is measured apart and subtracted.
``--connections`` clients each keep one request in flight (a closed loop, as ``wrk -c``), every
request with a distinct input (the prediction cache never answers). CPU is ``time.process_time``,
so waits (delayed batching) do not count and a busy machine changes the result far less than it
changes wrk's numbers.

The same bytes go through ``bench/bare_handler.py``'s protocol with the same fake transport, in the
same run: the ratio bare ÷ ours is the in-process counterpart of wrk's "ours ÷ bare" throughput ratio
(without the socket system calls both pay alike).

    python bench/micro.py                   # 32 connections, 20,000 requests, best of 7
    python bench/micro.py --profile         # + a cProfile of our path, top functions by own time
    python bench/micro.py --smoke --json    # a quick check (tests/integration/test_bench_frontend_smoke.py)
    python bench/micro.py --cached-build    # the hot path compiled, from python -m clipper.compiled build
"""

from __future__ import annotations

import argparse
import asyncio
import json
import struct
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

# --cached-build: import the hot path from this checkout's cached compiled build (``python -m
# clipper.compiled build``), as the local backend's frontend does; decided before the imports below.
if "--cached-build" in sys.argv:
    from clipper.compiled import use_cached_build

    if use_cached_build() is None:
        sys.exit("no cached build of this checkout's sources: run python -m clipper.compiled build")

import uvloop  # noqa: E402

from clipper.config_store.base import AppRecord, ConfigSnapshot, ModelRecord  # noqa: E402
from clipper.datatypes import InputType  # noqa: E402
from clipper.http.server import HttpServer, Limits, _Connection  # noqa: E402
from clipper.query_frontend import workers  # noqa: E402
from clipper.query_frontend.processor import QueryProcessor  # noqa: E402
from clipper.query_frontend.server import QueryFrontend  # noqa: E402
from clipper.query_frontend.workers import Dispatcher  # noqa: E402
from clipper.rpc import protocol as p  # noqa: E402
from clipper.rpc.server import ReplicaConnection, RpcServer, _StreamPeer  # noqa: E402
from clipper.rpc.stream import MessageReader, encode_message  # noqa: E402

HEAD = (
    b"POST /bench/predict HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"
    b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
)


def request_bytes(i: int) -> bytes:
    """wrk's request (bench/lua/unique.lua's distinct input ``[N.5, 2.2, 3.3, 4.4]``)."""
    body = b'{"input": [%d.5, 2.2, 3.3, 4.4]}' % i
    return HEAD % len(body) + body


class _Transport:
    """The socket side of a connection: ``write`` keeps the response and tells the client."""

    __slots__ = ("client", "written")

    def __init__(self, client: _Client) -> None:
        self.client = client
        self.written = 0

    def write(self, data: bytes) -> None:
        self.written += 1
        self.client.answered(data)

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def close(self) -> None:  # pragma: no cover - never closed here
        pass

    def pause_reading(self) -> None:  # pragma: no cover
        pass

    def resume_reading(self) -> None:  # pragma: no cover
        pass


class _Client:
    """One keep-alive connection of a closed-loop load generator: the next request once answered."""

    __slots__ = ("bench", "protocol")

    def __init__(self, bench: _Bench, protocol: Any) -> None:
        self.bench = bench
        self.protocol = protocol

    def answered(self, data: bytes) -> None:
        b = self.bench
        b.answers += 1
        if b'"default":false' not in data:
            b.bad += 1
        b.ready.append(self)


class _Bench:
    def __init__(self) -> None:
        self.answers = 0
        self.bad = 0
        self.sent = 0
        self.ready: list[_Client] = []
        self.data: list[bytes] = []  # the requests, made before the clock starts
        self.rpc_bytes: list[bytes] = []  # what the frontend wrote to the RPC socket, not yet answered
        self.rpc_peer: _StreamPeer | None = None
        self.model_cpu = 0.0

    def send_ready(self, limit: int) -> None:
        ready, self.ready = self.ready, []
        for c in ready:
            if self.sent < limit:
                self.sent += 1
                c.protocol.data_received(self.data[self.sent])


class _RpcTransport:
    """The RPC socket's transport (the local backend's Unix socket): what the frontend writes is kept
    for the in-process model, which decodes it on its own CPU."""

    def __init__(self, bench: _Bench) -> None:
        self.bench = bench

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    def write(self, data: bytes) -> None:
        self.bench.rpc_bytes.append(data)


def _model(reader: MessageReader, data: bytes) -> list[bytes]:
    """The sum model in the replica: the frontend's bytes -> the encoded PredictionResponses."""
    replies = []
    for msg in reader.feed(data):
        req = p.decode_frontend_message(msg)
        assert isinstance(req, p.PredictionRequest)
        outs = [repr(sum(struct.unpack(f"<{len(x) // 8}d", x))).encode() for x in req.inputs]
        replies.append(encode_message(p.encode_prediction_response(req.msg_id_frame, list(outs))))
    return replies


def _frontend(loop: asyncio.AbstractEventLoop, bench: _Bench) -> tuple[QueryFrontend, HttpServer]:
    """A QueryFrontend wired as ``start`` wires it, with one registered sum replica; no store calls."""
    fe = QueryFrontend(store=None, cache_bytes=0)  # type: ignore[arg-type]  # the store is never used
    fe.loop = loop
    fe.apply_snapshot(
        ConfigSnapshot(
            # a 1 s objective: a stall of the (shared) machine must not turn answers into defaults
            apps={"bench": AppRecord("bench", "doubles", "-1.0", 1_000_000)},
            models={("sum", "1"): ModelRecord("sum", "1", "doubles")},
            links={"bench": ("sum",)},
            current_versions={"sum": "1"},
        )
    )
    rpc = RpcServer(
        "127.0.0.1",
        0,
        on_register=fe._on_register,
        on_response=fe._on_response,
        on_disconnect=fe._on_disconnect,
    )
    fe.rpc = rpc
    fe.dispatcher = Dispatcher(loop, rpc, fe.cache, fe.metrics)
    fe.processor = QueryProcessor(loop, fe.cache, fe.dispatcher, fe.metrics)
    # a session of the Unix-socket endpoint (the real peer object, its socket replaced)
    peer = _StreamPeer(rpc)
    peer.connection_made(_RpcTransport(bench))  # type: ignore[arg-type]
    bench.rpc_peer = peer
    conn = ReplicaConnection(peer.identity, 0, "sum", "1", 0, InputType.DOUBLES, time.monotonic())
    rpc.connections[conn.identity] = conn
    fe.dispatcher.add_replica(conn, fe._model_for(("sum", "1")))
    return fe, HttpServer(fe.handle, Limits(max_connections=100_000), loop)


async def _run_ours(connections: int, requests: int) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    bench = _Bench()
    bench.data = [request_bytes(i) for i in range(requests + 1)]
    fe, server = _frontend(loop, bench)
    peer = bench.rpc_peer
    assert peer is not None
    model_reader = MessageReader(1 << 30)
    for _ in range(connections):
        proto = _Connection(server)
        client = _Client(bench, proto)
        proto.connection_made(_Transport(client))  # type: ignore[arg-type]
        bench.ready.append(client)
    cpu0 = time.process_time()
    batches = 0
    while bench.answers < requests:
        bench.send_ready(requests)
        await asyncio.sleep(0)  # the dispatch scheduled by the requests just parsed
        if not bench.rpc_bytes:
            await asyncio.sleep(0.0002)  # a replica gathering a fuller batch (delayed batching)
            continue
        sent, bench.rpc_bytes = bench.rpc_bytes, []
        for data in sent:
            m0 = time.process_time()
            replies = _model(model_reader, data)
            bench.model_cpu += time.process_time() - m0
            batches += len(replies)
            for reply in replies:
                peer.data_received(reply)
    cpu = time.process_time() - cpu0 - bench.model_cpu
    if bench.bad * 100 > bench.answers:
        raise RuntimeError(f"{bench.bad} of {bench.answers} answers were not model outputs")
    return {
        "us_per_request": cpu / bench.answers * 1e6,
        "mean_batch": bench.answers / max(batches, 1),
        "defaults": bench.bad,
    }


def _run_bare(requests: int) -> float:
    """bench/bare_handler.py's protocol on the same bytes and fake transport: µs of CPU per request."""
    from bare_handler import BareProtocol

    bench = _Bench()
    proto = BareProtocol()
    client = _Client(bench, proto)
    proto.connection_made(_Transport(client))  # type: ignore[arg-type]
    data = [request_bytes(i) for i in range(requests)]
    cpu0 = time.process_time()
    for d in data:
        proto.data_received(d)
    return (time.process_time() - cpu0) / requests * 1e6


def measure(
    connections: int, requests: int, repeat: int, gather: bool = False, bare: bool = True
) -> dict[str, float]:
    """Best of ``repeat`` runs of ours and of bare, interleaved. Without ``gather`` delayed batching is
    off, so that every batch is the requests of one round (the result does not depend on how fast the
    machine happens to be: the batch wait is a share of the measured batch latency)."""
    if not gather:
        workers.GATHER_FRACTION = 0.0
    ours: list[dict[str, float]] = []
    bares: list[float] = []
    for _ in range(repeat):
        ours.append(uvloop.run(_run_ours(connections, requests)))
        if bare:
            bares.append(_run_bare(requests))
    best = min(ours, key=lambda r: r["us_per_request"])
    us, bare_us = best["us_per_request"], min(bares, default=float("nan"))
    return {
        "connections": connections,
        "requests": requests,
        "ours_us_per_request": round(us, 2),
        "bare_us_per_request": round(bare_us, 2),
        "bare_over_ours": round(bare_us / us, 3),
        "mean_batch": round(best["mean_batch"], 1),
        "defaults": sum(r["defaults"] for r in ours),
    }


def profile(connections: int, requests: int, top: int) -> None:
    import cProfile
    import pstats

    pr = cProfile.Profile()
    pr.enable()
    uvloop.run(_run_ours(connections, requests))
    pr.disable()
    pstats.Stats(pr).sort_stats("tottime").print_stats(top)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-c", "--connections", type=int, default=32)
    ap.add_argument("-n", "--requests", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=7, help="runs of each; the best is reported")
    ap.add_argument("--smoke", action="store_true", help="2,000 requests, 1 run")
    ap.add_argument("--gather", action="store_true", help="keep delayed batching on (varies with timing)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument(
        "--cached-build", action="store_true", help="the hot path compiled (python -m clipper.compiled build)"
    )
    ap.add_argument("--no-bare", action="store_true", help="ours only (for instruction counts)")
    ap.add_argument("--profile", action="store_true", help="print a cProfile of our path (no timing)")
    args = ap.parse_args(argv)
    if args.smoke:
        args.requests, args.repeat = 2000, 1
    if args.profile:
        profile(args.connections, args.requests, 40)
        return 0
    r = measure(args.connections, args.requests, args.repeat, args.gather, not args.no_bare)
    from clipper.compiled import hot_path

    r["hot_path"] = hot_path()
    if args.json:
        print(json.dumps(r))
    else:
        print(
            f"{args.connections} connections, {args.requests} requests, best of {args.repeat}, hot path {r['hot_path']}"
        )
        print(f"ours  {r['ours_us_per_request']:7.2f} us CPU/request   (mean batch {r['mean_batch']})")
        print(f"bare  {r['bare_us_per_request']:7.2f} us CPU/request")
        print(f"bare / ours = {r['bare_over_ours']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
