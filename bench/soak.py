"""Soak test (not CI): a local cluster at half of its measured capacity for --minutes, with model
replicas SIGKILLed at random; every minute it prints requests, answers, defaults, errors and the query
frontend's resident memory. Errors must stay at zero, answers equal requests, memory flat.

    python bench/soak.py                      # 10 minutes
    python bench/soak.py --minutes 3 --kill-every 20 --json soak.json

"Capacity" is measured first with the same client (closed loop, --threads connections, 10 s), so it
is the capacity of this Python client + the cluster on this machine, not the frontend's own ceiling
(bench/frontend.py with wrk measures that). The cluster is the local backend (LocalContainerManager:
supervised processes, SQLite store) under a temporary CLIPPER_HOME, on free ports.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clipper.net import free_port  # noqa: E402
from clipper_admin import ClipperConnection, LocalContainerManager  # noqa: E402
from clipper_admin.deployers import python as python_deployer  # noqa: E402
from clipper_admin.local.state import QUERY  # noqa: E402

APP, MODEL = "soak", "soak-sum"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Counters:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests = self.answers = self.defaults = self.errors = 0
        self.error_samples: list[str] = []

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return {"requests": self.requests, "answers": self.answers, "defaults": self.defaults,
                    "errors": self.errors}  # fmt: skip


def client(port: int, counters: Counters, stop: threading.Event, interval: float, k: int) -> None:
    """Posts distinct inputs (no cache hits) every ``interval`` seconds (0: closed loop)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    i = 0
    next_at = time.monotonic()
    while not stop.is_set():
        if interval:
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        i += 1
        body = json.dumps({"input": [float(k), float(i), 0.5]})
        with counters.lock:
            counters.requests += 1
        try:
            conn.request("POST", f"/{APP}/predict", body, {"Content-Type": "application/json"})
            r = conn.getresponse()
            data = r.read()
            ok = r.status == 200
            default = ok and json.loads(data).get("default", False)
            error = None if ok else f"{r.status} {data[:200]!r}"
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            default, error = False, repr(e)
        with counters.lock:
            counters.answers += 1
            if error:
                counters.errors += 1
                if len(counters.error_samples) < 10:
                    counters.error_samples.append(error)
            elif default:
                counters.defaults += 1
    conn.close()


def run_clients(port: int, threads: int, interval: float, counters: Counters, stop: threading.Event):
    ts = [threading.Thread(target=client, args=(port, counters, stop, interval, k), daemon=True)
          for k in range(threads)]  # fmt: skip
    for t in ts:
        t.start()
    return ts


def feature_sum(xs):
    return [str(sum(x)) for x in xs]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=8, help="client connections")
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--kill-every", type=float, default=30.0, help="mean seconds between replica kills")
    ap.add_argument("--slo-micros", type=int, default=500_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cache-bytes", type=int, default=33554432, help="prediction cache (0 = off)")
    ap.add_argument("--json", help="write the per-minute report here")
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)

    home = tempfile.mkdtemp(prefix="clipper-soak-")
    os.environ["CLIPPER_HOME"] = home
    cm = LocalContainerManager("soak", clipper_query_port=free_port(), clipper_management_port=free_port(),
                               clipper_rpc_port=free_port(), state_dir=home)  # fmt: skip
    conn = ClipperConnection(cm)
    conn.start_clipper(cache_size=args.cache_bytes)
    report: dict = {"minutes": []}
    try:
        conn.register_application(APP, "doubles", "-1.0", args.slo_micros)
        python_deployer.deploy_python_closure(conn, name=MODEL, version=1, input_type="doubles",
                                              func=feature_sum, num_replicas=args.replicas)  # fmt: skip
        conn.link_model_to_app(APP, MODEL)
        port = cm.clipper_query_port
        time.sleep(1.0)

        # 1. capacity: closed loop for 10 s
        counters, stop = Counters(), threading.Event()
        ts = run_clients(port, args.threads, 0.0, counters, stop)
        time.sleep(2.0)
        before, t0 = counters.snapshot()["answers"], time.monotonic()
        time.sleep(10.0)
        capacity = (counters.snapshot()["answers"] - before) / (time.monotonic() - t0)
        stop.set()
        for t in ts:
            t.join(35)
        rate = capacity / 2
        print(f"capacity {capacity:.0f} req/s (closed loop, {args.threads} connections); soaking at "
              f"{rate:.0f} req/s for {args.minutes} min, a replica killed every ~{args.kill_every:.0f} s",
              flush=True)  # fmt: skip
        report.update(capacity_rps=round(capacity), rate_rps=round(rate), threads=args.threads)

        # 2. soak at half capacity, replicas killed at random
        counters, stop = Counters(), threading.Event()
        ts = run_clients(port, args.threads, args.threads / rate, counters, stop)
        start = time.monotonic()
        end = start + args.minutes * 60
        next_kill = start + rng.expovariate(1 / args.kill_every)
        next_report = start + 60
        kills = 0
        qf_pid = cm.dir.read_status()[QUERY]["pid"]
        rss0 = rss_kib(qf_pid)
        print(f"{'min':>4} {'requests':>9} {'answers':>9} {'defaults':>8} {'errors':>6} {'kills':>5} "
              f"{'qf RSS MiB':>10}", flush=True)  # fmt: skip
        print(f"{0:>4} {0:>9} {0:>9} {0:>8} {0:>6} {0:>5} {rss0 / 1024:>10.1f}", flush=True)
        while True:
            now = time.monotonic()
            if now >= next_kill and now < end:
                status = cm.dir.read_status()
                victims = [p for p, s in status.items() if p.startswith("model/") and s.get("pid")]
                if victims:
                    os.kill(status[rng.choice(victims)]["pid"], signal.SIGKILL)
                    kills += 1
                next_kill = now + rng.expovariate(1 / args.kill_every)
            if now >= next_report or now >= end:
                snap = counters.snapshot()
                rss = rss_kib(qf_pid)
                minute = round((now - start) / 60, 2)
                report["minutes"].append({"minute": minute, **snap, "kills": kills, "qf_rss_kib": rss})
                print(f"{minute:>4} {snap['requests']:>9} {snap['answers']:>9} {snap['defaults']:>8} "
                      f"{snap['errors']:>6} {kills:>5} {rss / 1024:>10.1f}", flush=True)  # fmt: skip
                next_report += 60
                if now >= end:
                    break
            time.sleep(0.05)
        stop.set()
        for t in ts:
            t.join(35)
        final = counters.snapshot()
        report.update(final=final, kills=kills, qf_rss_start_kib=rss0, qf_rss_end_kib=rss_kib(qf_pid),
                      error_samples=counters.error_samples, load_avg=os.getloadavg())  # fmt: skip
        print(f"final: {final['requests']} requests, {final['answers']} answers, {final['defaults']} defaults, "
              f"{final['errors']} errors, {kills} replica kills; query frontend RSS "
              f"{rss0 / 1024:.1f} -> {report['qf_rss_end_kib'] / 1024:.1f} MiB; load avg "
              f"{os.getloadavg()[0]:.1f}", flush=True)  # fmt: skip
        for e in counters.error_samples:
            print("  error:", e)
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=1))
        return 0 if final["errors"] == 0 and final["answers"] == final["requests"] else 1
    finally:
        conn.stop_all()


if __name__ == "__main__":
    sys.exit(main())
