"""The cost of a traffic split and of a 10 % shadow vs a plain app, side by side in one run (issue 17).

One local stack (bench/frontend.py's: SQLite store, management frontend, query frontend with the
prediction cache off, no-op closure replicas of ``noop:1`` and ``noop:2``) serving three apps:

* ``bench``  — plain: linked to ``noop``, current version 1;
* ``routed`` — traffic with one target ``noop:1``: the routing path's own cost, same model work;
* ``split``  — traffic ``noop:1`` 90 / ``noop:2`` 10;
* ``shadow`` — traffic ``noop:1`` 100, shadow ``noop:2`` at 10 %.

Both replicas run during every measurement. wrk (``-t1 -c<N>``) drives the three apps in turn,
``--rounds`` times (interleaved, to spread the machine's noise over all three); the report gives each
app's median predictions/s and p99 and the cost relative to the plain app.

    python bench/traffic.py                 # 32 connections, 3 rounds of 8 s per app
    python bench/traffic.py --smoke --json  # 1 round of 2 s (a quick check, not a measurement)
    python bench/traffic.py --micro         # in-process CPU per request object, no servers (steadier)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.error
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cloudpickle  # noqa: E402
import frontend  # noqa: E402 - the sibling harness
from frontend import WRK_SCRIPT, Stack, post, run_wrk  # noqa: E402

cloudpickle.register_pickle_by_value(frontend)  # its no-op model, for replicas that cannot import it

APPS = ("bench", "routed", "split", "shadow")


def configure(stack: Stack) -> None:
    admin = f"http://127.0.0.1:{stack.mgmt_port}/admin"
    post(
        f"{admin}/add_model",
        {
            "model_name": "noop",
            "model_version": "2",
            "labels": [],
            "input_type": "doubles",
            "container_name": "local",
            "model_data_path": "DEPRECATED",
            "batch_size": -1,
        },
    )
    post(f"{admin}/set_model_version", {"model_name": "noop", "model_version": "1"})
    stack.start_replica("2", wait=False)
    for app in APPS[1:]:
        post(
            f"{admin}/add_app",
            {"name": app, "input_type": "doubles", "default_output": "-1.0", "latency_slo_micros": 100000},
        )
    v1 = {"model_name": "noop", "model_version": "1"}
    post(f"{admin}/set_app_traffic", {"name": "routed", "targets": [{**v1, "weight": 1}]})
    post(
        f"{admin}/set_app_traffic",
        {"name": "split", "targets": [{**v1, "weight": 90}, {**v1, "model_version": "2", "weight": 10}]},
    )
    post(
        f"{admin}/set_app_traffic",
        {
            "name": "shadow",
            "targets": [{**v1, "weight": 1}],
            "shadow": {**v1, "model_version": "2", "percent": 10},
        },
    )
    url = f"http://127.0.0.1:{stack.http_port}"

    def answers(app: str) -> bool:
        try:
            return all(
                b'"default":false' in post(f"{url}/{app}/predict", {"input": [0.5]}) for _ in range(20)
            )
        except urllib.error.HTTPError as e:
            if e.code != 404:  # 404: the new app has not reached the query frontend yet
                raise
            time.sleep(0.05)
            return False

    for app in APPS:  # until each app is routed and both replicas answer
        for _ in range(300):
            if answers(app):
                break
        else:
            raise RuntimeError(f"{app} does not answer with model outputs")


def micro() -> dict[str, float]:
    """Microseconds per request object, created and answered in-process (one input, the model's
    answer arriving at once): the part of a request's frontend CPU that routing changes."""
    import timeit

    from clipper.config_store.base import AppRecord
    from clipper.config_store.traffic import Target, TrafficConfig
    from clipper.metrics import MetricsRegistry
    from clipper.query_frontend.processor import PendingRequest, TargetRequest
    from clipper.query_frontend.routes import AppRoute
    from clipper.query_frontend.traffic import AppTraffic

    metrics = MetricsRegistry(False)
    app = AppRoute(AppRecord("a", "doubles", "-1", 100000), ("m",), ("m", "1"), metrics, time.perf_counter)
    one = AppTraffic("a", TrafficConfig((Target("m", "1", 1),)), metrics)
    split = AppTraffic("b", TrafficConfig((Target("m", "1", 90), Target("m", "2", 10))), metrics)

    def plain() -> None:
        PendingRequest(app, 1, 0, time.perf_counter(), False).output(0, b"1.0")

    def routed(at: AppTraffic) -> None:
        i = at.choose()
        TargetRequest(app, 1, 0, time.perf_counter(), False, at.stats[i]).output(0, b"1.0")

    cases = {"bench": plain, "routed": lambda: routed(one), "split": lambda: routed(split)}
    n = 100_000
    return {k: round(min(timeit.repeat(f, number=n, repeat=5)) / n * 1e6, 2) for k, f in cases.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-c", "--connections", type=int, default=32)
    ap.add_argument("-d", "--duration", type=int, default=8, help="seconds per app per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--smoke", action="store_true", help="1 round of 2 s")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--micro", action="store_true", help="only the in-process microbenchmark")
    args = ap.parse_args(argv)
    if args.micro:
        us = micro()
        print(json.dumps(us) if args.json else "\n".join(f"{k:8} {v:6.2f} us/request" for k, v in us.items()))
        return 0
    if args.smoke:
        args.duration, args.rounds = 2, 1
    runs: dict[str, list[dict]] = {a: [] for a in APPS}
    with tempfile.TemporaryDirectory(prefix="clipper-bench-traffic-") as tmp:
        os.environ["CLIPPER_HOME"] = tmp
        root = Path(tmp)
        script = root / "post.lua"
        script.write_text(WRK_SCRIPT)
        stack = Stack(root)
        try:
            stack.start(100000)
            configure(stack)
            for app in APPS:  # warm-up
                run_wrk(stack.http_port, args.connections, 1, script, app)
            for _ in range(args.rounds):
                for app in APPS:
                    runs[app].append(run_wrk(stack.http_port, args.connections, args.duration, script, app))
        except Exception:
            for log in ("query_frontend.log", "mgmt.log", "container.log", "container-2.log"):
                p = root / log
                if p.exists():
                    sys.stderr.write(f"--- {log}\n{p.read_text()[-3000:]}\n")
            raise
        finally:
            stack.stop()
    result: dict[str, dict[str, float]] = {}
    for app in APPS:
        rps = statistics.median(r["rps"] for r in runs[app])
        p99 = statistics.median(r["p99_us"] for r in runs[app]) / 1000
        result[app] = {
            "predictions_per_s": round(rps, 1),
            "p99_ms": p99,
            "errors": sum(r["errors"] for r in runs[app]),
        }
    base = result["bench"]
    for app in APPS:
        r = result[app]
        r["throughput_cost_pct"] = round(100 * (1 - r["predictions_per_s"] / base["predictions_per_s"]), 1)
        r["p99_ratio"] = round(r["p99_ms"] / base["p99_ms"], 2) if base["p99_ms"] else float("nan")
    if args.json:
        print(
            json.dumps(
                {"connections": args.connections, "seconds": args.duration, "rounds": args.rounds, **result}
            )
        )
        return 0
    print(f"{args.connections} connections, {args.rounds} round(s) of {args.duration} s per app (median)")
    print(f"{'app':8} {'pred/s':>9} {'p99 ms':>8} {'cost %':>7} {'p99 x':>6} errors")
    for app in APPS:
        r = result[app]
        print(
            f"{app:8} {r['predictions_per_s']:9.0f} {r['p99_ms']:8.2f} {r['throughput_cost_pct']:7.1f} "
            f"{r['p99_ratio']:6.2f} {r['errors']:.0f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
