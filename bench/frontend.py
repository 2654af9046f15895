"""Query-frontend throughput/latency benchmark: a local stack driven by wrk.

Starts, on free ports and under a temporary CLIPPER_HOME: a SQLite config store, the management
frontend (the application and model are registered through its HTTP API, as a user would), the query
frontend and one no-op closure replica (``python -m clipper.container``), then runs
``wrk -t1 -c<connections> -d<seconds>`` posting ``{"input": [1.1, 2.2, 3.3, 4.4]}`` and prints
predictions/s, p50 and p99 (and how many answers were defaults).

    python bench/frontend.py                  # 32 connections, 15 s
    python bench/frontend.py -c 64 -d 30
    python bench/frontend.py --smoke          # 2-second run (used by the test suite)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import cloudpickle

from clipper.rpc.auth import RPC_KEYS_FILE_ENV, RpcKeys
from clipper.rpc.stream import MAX_SOCKET_PATH_BYTES

WRK_SCRIPT = r"""
wrk.method = "POST"
wrk.body = '{"input": [1.1, 2.2, 3.3, 4.4]}'
wrk.headers["Content-Type"] = "application/json"
local defaults = 0
local non200 = 0
response = function(status, headers, body)
  if status ~= 200 then non200 = non200 + 1 end
  if string.find(body, '"default":true', 1, true) then defaults = defaults + 1 end
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT requests=%d duration_us=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d errors=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout + summary.errors.status))
end
"""


def noop(inputs):
    return ["0"] * len(inputs)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def post(url: str, body: dict) -> bytes:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.read()


RPC_TRANSPORTS = ("socket", "tcp")


class Stack:
    """The local backend's processes, started by hand.

    ``rpc``: how replicas reach the frontend. ``socket`` (default) is what ``LocalContainerManager``
    sets up: a Unix socket in a private directory, no CURVE, no ZeroMQ. ``tcp`` is the
    Docker and Kubernetes path: the RPC port with CURVE-authenticated replicas.
    """

    def __init__(self, root: Path, rpc: str = "socket") -> None:
        if rpc not in RPC_TRANSPORTS:
            raise ValueError(f"rpc must be one of {RPC_TRANSPORTS}, not {rpc!r}")
        self.root = root
        self.procs: list[subprocess.Popen] = []
        self.mgmt_port, self.http_port, self.rpc_port = free_port(), free_port(), free_port()
        self.store = f"sqlite:///{root}/config.db"
        self.rpc_keys_file = root / "rpc_keys.json"  # the TCP port stays CURVE-authenticated
        RpcKeys.generate().write(self.rpc_keys_file)
        self.rpc_socket = self._private_socket_path(root) if rpc == "socket" else None

    @staticmethod
    def _private_socket_path(root: Path) -> Path:
        """A socket path in a directory of its own with mode 0700 (the frontend refuses any other),
        short enough for a socket address (else under a new temporary directory)."""
        d = root / "rpc"
        if len(os.fsencode(d / "rpc.sock")) > MAX_SOCKET_PATH_BYTES:
            d = Path(tempfile.mkdtemp(prefix="clipper-rpc-"))
        d.mkdir(mode=0o700, exist_ok=True)
        d.chmod(0o700)
        return d / "rpc.sock"

    def spawn(self, args: list[str], log: str, env: dict | None = None) -> subprocess.Popen:
        out = open(self.root / log, "wb")
        p = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env or os.environ.copy())
        self.procs.append(p)
        return p

    def start(self, slo_micros: int, direct: bool = False, cache_bytes: int = 0) -> None:
        py = sys.executable
        if not direct:
            self.spawn(
                [
                    py,
                    "-m",
                    "clipper.management_frontend",
                    "--store",
                    self.store,
                    "--port",
                    str(self.mgmt_port),
                ],
                "mgmt.log",
            )
        profile = os.environ.get("CLIPPER_BENCH_CPROFILE")  # a path: run the frontend under cProfile
        self.spawn(
            [
                py,
                *(["-m", "cProfile", "-o", profile] if profile else []),
                "-m",
                "clipper.query_frontend",
                "--store",
                self.store,
                "--port",
                str(self.http_port),
                "--rpc-port",
                str(self.rpc_port),
                "--prediction-cache-size",
                str(cache_bytes),
                "--rpc-keys-file",
                str(self.rpc_keys_file),
                *(["--rpc-socket", str(self.rpc_socket)] if self.rpc_socket else []),
                "--log-level",
                "WARNING",
            ],
            "query_frontend.log",
        )
        wait_http(f"http://127.0.0.1:{self.http_port}/health")
        if direct:
            self.configure_store(slo_micros)
        else:
            self.configure_admin(slo_micros)
        self.start_replica()

    def configure_store(self, slo_micros: int) -> None:
        """Write the configuration straight into the store (no management frontend)."""
        from clipper.config_store import AppRecord, ModelRecord, open_store

        store = open_store(self.store)
        store.add_app(AppRecord("bench", "doubles", "-1.0", slo_micros))
        store.add_model(ModelRecord("noop", "1", "doubles"))
        store.add_link("bench", "noop")
        store.close()

    def configure_admin(self, slo_micros: int) -> None:
        wait_http(f"http://127.0.0.1:{self.mgmt_port}/admin/ping")
        admin = f"http://127.0.0.1:{self.mgmt_port}/admin"
        post(
            f"{admin}/add_app",
            {
                "name": "bench",
                "input_type": "doubles",
                "default_output": "-1.0",
                "latency_slo_micros": slo_micros,
            },
        )
        post(
            f"{admin}/add_model",
            {
                "model_name": "noop",
                "model_version": "1",
                "labels": [],
                "input_type": "doubles",
                "container_name": "local",
                "model_data_path": "DEPRECATED",
                "batch_size": -1,
            },
        )
        post(f"{admin}/add_model_links", {"app_name": "bench", "model_names": ["noop"]})

    def start_replica(self, version: str = "1", wait: bool = True) -> None:
        """A no-op replica of ``noop:<version>``; ``wait``: until the ``bench`` app answers with it."""
        py = sys.executable
        model = self.root / ("model" if version == "1" else f"model-{version}")
        model.mkdir()
        (model / "func.pkl").write_bytes(cloudpickle.dumps(noop))
        env = dict(
            os.environ,
            CLIPPER_MODEL_NAME="noop",
            CLIPPER_MODEL_VERSION=version,
            CLIPPER_IP="127.0.0.1",
            CLIPPER_PORT=str(self.rpc_port),
            CLIPPER_INPUT_TYPE="doubles",
            CLIPPER_MODEL_PATH=str(model),
            CLIPPER_LOG_LEVEL="WARNING",
            **{RPC_KEYS_FILE_ENV: str(self.rpc_keys_file)},
            **({"CLIPPER_RPC_SOCKET": str(self.rpc_socket)} if self.rpc_socket else {}),
        )
        self.spawn(
            [py, "-m", "clipper.container"],
            "container.log" if version == "1" else f"container-{version}.log",
            env,
        )
        if not wait:
            return
        url = f"http://127.0.0.1:{self.http_port}/bench/predict"
        end = time.monotonic() + 30
        while time.monotonic() < end:  # until the replica answers (not the default)
            try:
                if b'"default":false' in post(url, {"input": [0.5]}):
                    return
            except urllib.error.HTTPError:  # 404 until the frontend has loaded the application
                pass
            time.sleep(0.1)
        raise RuntimeError("the replica did not start serving within 30 s")

    def stop(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in reversed(self.procs):
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def run_wrk(port: int, connections: int, seconds: int, script: Path, app: str = "bench") -> dict:
    wrk = shutil.which("wrk") or "/usr/bin/wrk"
    cmd = [
        wrk,
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        "-s",
        str(script),
        f"http://127.0.0.1:{port}/{app}/predict",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60).stdout
    line = next((ln for ln in out.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result:\n{out}")
    fields = dict(kv.split("=") for kv in line.split()[1:])
    r = {k: int(v) for k, v in fields.items()}
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    return r


def read_metrics(port: int) -> dict:
    """GET /metrics, flattened to {name: {field: value}}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as resp:
        doc = json.loads(resp.read())
    return {k: v for cat in doc.values() for entry in cat for k, v in entry.items()}


def count(metrics: dict, name: str) -> int:
    return int(metrics.get(name, {}).get("count", 0))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-c", "--connections", type=int, default=32)
    ap.add_argument("-d", "--duration", type=int, default=15, help="seconds of measurement")
    ap.add_argument("--warmup", type=int, default=3, help="seconds of warm-up (not measured)")
    ap.add_argument("--slo-micros", type=int, default=100000)
    ap.add_argument(
        "--cache-bytes",
        type=int,
        default=0,
        help="prediction cache size; 0 (default) measures the model path, since wrk repeats one input",
    )
    ap.add_argument(
        "--rpc",
        choices=RPC_TRANSPORTS,
        default="socket",
        help="replicas on the frontend's Unix socket (the local backend's default) or on its CURVE TCP port",
    )
    ap.add_argument("--smoke", action="store_true", help="a 2-second run, no warm-up")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    ap.add_argument(
        "--direct-store",
        action="store_true",
        help="write the configuration into the store, no management frontend",
    )
    args = ap.parse_args(argv)
    if args.smoke:
        args.duration, args.warmup = 2, 0
    with tempfile.TemporaryDirectory(prefix="clipper-bench-") as tmp:
        os.environ["CLIPPER_HOME"] = tmp
        root = Path(tmp)
        script = root / "post.lua"
        script.write_text(WRK_SCRIPT)
        stack = Stack(root, rpc=args.rpc)
        try:
            stack.start(args.slo_micros, direct=args.direct_store, cache_bytes=args.cache_bytes)
            if args.warmup:
                run_wrk(stack.http_port, args.connections, args.warmup, script)
            before = read_metrics(stack.http_port)
            r = run_wrk(stack.http_port, args.connections, args.duration, script)
            metrics = read_metrics(stack.http_port)
        except Exception:
            for log in ("query_frontend.log", "mgmt.log", "container.log"):
                p = root / log
                if p.exists():
                    sys.stderr.write(f"--- {log}\n{p.read_text()[-3000:]}\n")
            raise
        finally:
            stack.stop()
    batch = metrics.get("model:noop:1:batch_size", {})
    answered = count(metrics, "app:bench:num_predictions") - count(before, "app:bench:num_predictions")
    defaults = sum(
        count(metrics, f"app:bench:default_outputs:{k}") - count(before, f"app:bench:default_outputs:{k}")
        for k in ("slo", "no_connected_model")
    )
    ratio = defaults / answered if answered else float("nan")

    result = {
        "connections": args.connections,
        "seconds": args.duration,
        "predictions_per_s": round(r["rps"], 1),
        "p50_ms": r["p50_us"] / 1000,
        "p99_ms": r["p99_us"] / 1000,
        "max_ms": r["max_us"] / 1000,
        "errors": r["errors"],
        "default_ratio": ratio,
        "mean_batch_size": round(float(batch.get("mean", "nan")), 1),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"connections   {result['connections']}  ({result['seconds']} s, wrk -t1)")
        print(f"predictions/s {result['predictions_per_s']:.0f}")
        print(f"p50           {result['p50_ms']:.2f} ms")
        print(f"p99           {result['p99_ms']:.2f} ms")
        print(f"max           {result['max_ms']:.2f} ms")
        print(
            f"errors        {result['errors']}   default ratio {result['default_ratio']}   mean batch size {result['mean_batch_size']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
