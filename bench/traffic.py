"""The cost of a traffic split and of a 10 % shadow vs a plain app, side by side in one run.

One local stack (bench/frontend.py's: SQLite store, management frontend, query frontend with the
prediction cache off, no-op closure replicas of ``noop:1`` and ``noop:2``) serving three apps:

* ``bench``  — plain: linked to ``noop``, current version 1;
* ``routed`` — traffic with one target ``noop:1``: the routing path's own cost, same model work;
* ``split``  — traffic ``noop:1`` 90 / ``noop:2`` 10;
* ``shadow`` — traffic ``noop:1`` 100, shadow ``noop:2`` at 10 %.

Both replicas run during every measurement. wrk (``-t1 -c<N>``) drives the four apps in turn,
``--rounds`` times (interleaved, to spread the machine's noise over all four); the report gives each
app's median predictions/s and p99, the cost relative to the plain app, and (Linux) the CPU time per
prediction of the query frontend process and of the two replica processes, which says where a cost
comes from. ``--syscalls`` adds each group's system calls, context switches and CPU migrations per
prediction, counted by ``perf stat`` (Linux, root or a permissive ``perf_event_paranoid``): counts,
unlike CPU time, barely move with the machine's noise, and on this path they follow the per-message
costs.

    python bench/traffic.py                 # 32 connections, 3 rounds of 8 s per app
    python bench/traffic.py --smoke --json  # 1 round of 2 s (a quick check, not a measurement)
    python bench/traffic.py --syscalls      # + system calls, context switches, migrations per prediction
    python bench/traffic.py --micro         # in-process CPU per request object, no servers (steadier)
    python bench/traffic.py --once split 3000  # one --micro case, untimed: instructions under valgrind
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cloudpickle  # noqa: E402
import frontend  # noqa: E402 - the sibling harness
from frontend import RPC_TRANSPORTS, WRK_SCRIPT, Stack, post, run_wrk  # noqa: E402
from peers.procs import cpu_seconds  # noqa: E402

cloudpickle.register_pickle_by_value(frontend)  # its no-op model, for replicas that cannot import it

APPS = ("bench", "routed", "split", "shadow")


def _threads(pid: int) -> list[int]:
    try:
        return [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return []


#: ``perf stat``'s events, by the names this benchmark reports them under.
PERF_EVENTS = {
    "raw_syscalls:sys_enter": "syscalls",
    "context-switches": "context_switches",
    "cpu-migrations": "migrations",
}


def _perf_stat(groups: dict[str, list[int]], seconds: float, out: Path) -> subprocess.Popen[bytes]:
    """``perf stat`` of every thread of the groups' processes for ``seconds`` (started beside wrk)."""
    pids = [pid for pids in groups.values() for pid in pids]
    cmd = [
        "perf",
        "stat",
        "-x,",
        "-o",
        str(out),
        "--per-thread",
        "-e",
        ",".join(PERF_EVENTS),
    ]
    cmd += ["-p", ",".join(map(str, pids)), "--", "sleep", f"{seconds:g}"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _perf_counts(groups: dict[str, list[int]], out: Path) -> dict[str, dict[str, float]]:
    """``{group: {event: n}}`` (the names of :data:`PERF_EVENTS`) from :func:`_perf_stat`'s output."""
    group_of = {tid: g for g, pids in groups.items() for pid in pids for tid in _threads(pid)}
    totals = {g: dict.fromkeys(PERF_EVENTS.values(), 0.0) for g in groups}
    for line in out.read_text().splitlines():
        fields = line.split(",")
        if len(fields) < 4 or not fields[1].isdigit():
            continue  # a comment, a blank line, "<not counted>"
        tid = int(fields[0].rsplit("-", 1)[-1])
        event = PERF_EVENTS.get(fields[3])
        if tid in group_of and event is not None:
            totals[group_of[tid]][event] += int(fields[1])
    return totals


def machine_times() -> list[int]:
    """The whole machine's CPU times so far (``/proc/stat``'s ``cpu`` line, in clock ticks): user,
    nice, system, idle, iowait, irq, softirq, steal, ..."""
    with open("/proc/stat") as f:
        return [int(x) for x in f.readline().split()[1:]]


def median_interval(values: list[float], confidence: float = 0.95) -> tuple[float, float] | None:
    """A distribution-free confidence interval for the median of ``values`` (independent rounds):
    the order statistics ``x(k)`` and ``x(n+1-k)`` with the largest ``k`` whose coverage,
    ``1 - 2 * P(Binomial(n, 1/2) < k)``, is at least ``confidence``; None when ``n`` is too small
    for any (fewer than 6 values at 95 %). A target is demonstrated only when the whole interval
    meets it: this VM's per-round costs spread wider than the costs themselves."""
    xs = sorted(values)
    n = len(xs)
    best = None
    below = 0.0
    for k in range(1, n // 2 + 1):
        below += math.comb(n, k - 1) / 2**n  # now P(Binomial(n, 1/2) < k)
        if 1 - 2 * below < confidence:
            break
        best = k
    return (xs[best - 1], xs[n - best]) if best is not None else None


def batch_totals(port: int) -> dict[str, tuple[float, float]]:
    """Each version's (batches, queries) so far: the ``batch_size`` summaries' ``_count`` and ``_sum``
    in the frontend's Prometheus text."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/prometheus", timeout=10) as resp:
        text = resp.read().decode()
    totals: dict[str, list[float]] = {}
    for line in text.splitlines():  # clipper_model_batch_size_queries_count{model="noop",version="1"} 12
        if not line.startswith("clipper_model_batch_size") or "{" not in line:
            continue
        family, _, rest = line.partition("{")
        labels, _, value = rest.rpartition("} ")
        field = 0 if family.endswith("_count") else 1 if family.endswith("_sum") else -1
        if field >= 0:
            pairs = dict(kv.split("=", 1) for kv in labels.split(","))
            key = f"{pairs['model'].strip(chr(34))}:{pairs['version'].strip(chr(34))}"
            totals.setdefault(key, [0.0, 0.0])[field] = float(value)
    return {v: (t[0], t[1]) for v, t in totals.items()}


def measure(
    stack: Stack, connections: int, seconds: int, script: Path, app: str, syscalls: bool = False
) -> dict:
    """One wrk run of ``app``, with the CPU microseconds per prediction of the query frontend and of
    the replicas (both, summed) during it; ``syscalls``: their system calls and context switches per
    prediction too (``perf stat`` over all but the run's last second)."""
    groups = {
        "frontend": [p.pid for p in stack.procs if "clipper.query_frontend" in p.args],
        "replicas": [p.pid for p in stack.procs if "clipper.container" in p.args],
    }
    before = {g: [cpu_seconds(pid) for pid in pids] for g, pids in groups.items()}
    machine_before = machine_times()
    batches_before = batch_totals(stack.http_port)
    perf_out = stack.root / f"perf-{app}.csv"
    window = max(seconds - 1, 1)
    perf = _perf_stat(groups, window, perf_out) if syscalls else None
    r = run_wrk(stack.http_port, connections, seconds, script, app)
    if perf is not None:
        perf.wait(timeout=30)
        predictions = r["rps"] * window
        if perf.returncode == 0 and predictions:
            for g, counts in _perf_counts(groups, perf_out).items():
                for event, n in counts.items():
                    r[f"{g}_{event}"] = n / predictions
    for g, pids in groups.items():
        spent = [
            (a - b) for a, b in zip((cpu_seconds(pid) for pid in pids), before[g], strict=True)
            if a is not None and b is not None
        ]  # fmt: skip
        if spent and r["requests"]:
            r[f"{g}_cpu_us"] = sum(spent) / r["requests"] * 1e6
    spent_ticks = [a - b for a, b in zip(machine_times(), machine_before, strict=False)]
    if sum(spent_ticks) > 0:  # the machine's idle and stolen (by the hypervisor) shares of the run
        r["idle_pct"] = 100 * (spent_ticks[3] + spent_ticks[4]) / sum(spent_ticks)
        r["steal_pct"] = 100 * spent_ticks[7] / sum(spent_ticks) if len(spent_ticks) > 7 else 0.0
    for version, (n, queries) in batch_totals(stack.http_port).items():
        n0, q0 = batches_before.get(version, (0.0, 0.0))
        if n > n0:  # the mean batch of each version that served this run (shadows included)
            r[f"batch_{version}"] = (queries - q0) / (n - n0)
    return r


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


def micro_cases() -> dict[str, Callable[[], None]]:
    """One request object of each app, created and answered in-process (one input, the model's
    answer arriving at once): the part of a request's frontend CPU that routing changes."""
    from clipper.config_store.base import AppRecord
    from clipper.config_store.traffic import Shadow, Target, TrafficConfig
    from clipper.metrics import MetricsRegistry
    from clipper.query_frontend.processor import CapturingRequest, PendingRequest, TargetRequest
    from clipper.query_frontend.routes import AppRoute
    from clipper.query_frontend.server import _ShadowPair
    from clipper.query_frontend.traffic import AppTraffic

    metrics = MetricsRegistry(False)
    app = AppRoute(AppRecord("a", "doubles", "-1", 100000), ("m",), ("m", "1"), metrics)
    one = AppTraffic("a", TrafficConfig((Target("m", "1", 1),)), metrics)
    split = AppTraffic("b", TrafficConfig((Target("m", "1", 90), Target("m", "2", 10))), metrics)
    shadow = AppTraffic("c", TrafficConfig((Target("m", "1", 1),), shadow=Shadow("m", "2", 10)), metrics)

    def plain() -> None:
        PendingRequest(app, 1, 0, time.perf_counter(), False).output(0, b"1.0")

    def routed(at: AppTraffic) -> None:
        i = at.choose()
        TargetRequest(app, 1, 0, time.perf_counter(), False, at.stats[i]).output(0, b"1.0")

    def shadowed(at: AppTraffic) -> None:  # QueryFrontend.predict_traffic's shadow path
        i = at.choose()
        if at.shadow_stats is None or not at.shadow_now():
            TargetRequest(app, 1, 0, time.perf_counter(), False, at.stats[i]).output(0, b"1.0")
            return
        pair, t0 = _ShadowPair(at.shadow_stats), time.perf_counter()
        CapturingRequest(app, 1, t0, False, at.stats[i], True, pair.done).output(0, b"1.0")
        CapturingRequest(app, 1, t0, False, at.shadow_stats, False, pair.done).output(0, b"1.0")

    return {
        "bench": plain,
        "routed": lambda: routed(one),
        "split": lambda: routed(split),
        "shadow": lambda: shadowed(shadow),
    }


def micro() -> dict[str, float]:
    """Microseconds per request object of each case of :func:`micro_cases`."""
    import timeit

    cases = micro_cases()
    # rounds interleaved over the cases and the best of each kept: a busy moment of the machine then
    # slows one round of every case alike, not all rounds of one case
    n, best = 20_000, dict.fromkeys(cases, float("inf"))
    for _ in range(15):
        for k, f in cases.items():
            best[k] = min(best[k], timeit.timeit(f, number=n))
    return {k: round(t / n * 1e6, 2) for k, t in best.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-c", "--connections", type=int, default=32)
    ap.add_argument("-d", "--duration", type=int, default=8, help="seconds per app per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument(
        "--rpc",
        choices=RPC_TRANSPORTS,
        default="socket",
        help="replicas on the frontend's Unix socket (the local backend's default) or on its CURVE TCP port",
    )
    ap.add_argument("--smoke", action="store_true", help="1 round of 2 s")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--micro", action="store_true", help="only the in-process microbenchmark")
    ap.add_argument(
        "--syscalls",
        action="store_true",
        help="system calls, context switches and CPU migrations per prediction (perf stat)",
    )
    ap.add_argument(
        "--once",
        nargs=2,
        metavar=("CASE", "N"),
        help="run one --micro case N times, untimed (to count instructions under valgrind)",
    )
    args = ap.parse_args(argv)
    if args.once:
        f = micro_cases()[args.once[0]]
        for _ in range(int(args.once[1])):
            f()
        return 0
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
        stack = Stack(root, rpc=args.rpc)
        try:
            stack.start(100000)
            configure(stack)
            for app in APPS:  # warm-up
                run_wrk(stack.http_port, args.connections, 1, script, app)
            for rnd in range(args.rounds):
                for app in APPS if rnd % 2 == 0 else APPS[::-1]:  # drift spreads over all four apps
                    runs[app].append(
                        measure(stack, args.connections, args.duration, script, app, args.syscalls)
                    )
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
        for g in ("frontend", "replicas"):
            cpu = [r[f"{g}_cpu_us"] for r in runs[app] if f"{g}_cpu_us" in r]
            if cpu:
                result[app][f"{g}_cpu_us_per_prediction"] = round(statistics.median(cpu), 1)
            for event in PERF_EVENTS.values():
                counts = [r[f"{g}_{event}"] for r in runs[app] if f"{g}_{event}" in r]
                if counts:
                    result[app][f"{g}_{event}_per_prediction"] = round(statistics.median(counts), 3)
        versions = sorted({k for r in runs[app] for k in r if k.startswith("batch_")})
        result[app]["mean_batch"] = {  # queries per RPC message, per version (median over the rounds)
            k.removeprefix("batch_"): round(statistics.median(r[k] for r in runs[app] if k in r), 2)
            for k in versions
        }
    base = result["bench"]
    for app in APPS:
        r = result[app]
        # The cost is the median of the per-round costs: each round's apps are measured seconds
        # apart, while the machine's speed drifts over a whole run (medians of each app's
        # throughput would compare different moments).
        r["per_round_predictions_per_s"] = [round(x["rps"], 1) for x in runs[app]]
        per_round = [100 * (1 - a["rps"] / b["rps"]) for a, b in zip(runs[app], runs["bench"], strict=True)]
        r["per_round_cost_pct"] = [round(c, 1) for c in per_round]
        # every round's own measurements (CPU, batches, perf counts): what a slow round did differently
        r["rounds"] = [{k: round(v, 3) for k, v in x.items()} for x in runs[app]]
        r["throughput_cost_pct"] = round(statistics.median(per_round), 1)
        interval = median_interval(per_round)
        r["throughput_cost_interval_pct"] = [round(c, 1) for c in interval] if interval else None
        r["p99_ratio"] = round(r["p99_ms"] / base["p99_ms"], 2) if base["p99_ms"] else float("nan")
    if args.json:
        print(
            json.dumps(
                {"connections": args.connections, "seconds": args.duration, "rounds": args.rounds, **result}
            )
        )
        return 0
    print(
        f"{args.connections} connections, {args.rounds} round(s) of {args.duration} s per app "
        "(medians; the cost: of the per-round costs)"
    )
    print(
        f"{'app':8} {'pred/s':>9} {'p99 ms':>8} {'cost %':>7} {'p99 x':>6} errors  CPU us/pred: frontend replicas"
    )
    for app in APPS:
        r = result[app]
        cpu = "  ".join(
            f"{r.get(f'{g}_cpu_us_per_prediction', float('nan')):8.1f}" for g in ("frontend", "replicas")
        )
        print(
            f"{app:8} {r['predictions_per_s']:9.0f} {r['p99_ms']:8.2f} {r['throughput_cost_pct']:7.1f} "
            f"{r['p99_ratio']:6.2f} {r['errors']:6.0f}           {cpu}"
        )
    for app in APPS[1:]:
        costs = " / ".join(f"{c:.1f}" for c in result[app]["per_round_cost_pct"])
        print(f"{app:8} cost % per round: {costs}")
        interval = result[app]["throughput_cost_interval_pct"]
        if interval:
            print(f"{app:8} cost %, 95 % interval of the median: {interval[0]:.1f} to {interval[1]:.1f}")
        else:
            print(f"{app:8} cost %: too few rounds for a 95 % interval of the median (6 or more)")
    for app in APPS:
        batches = ", ".join(f"{v} {b:.1f}" for v, b in result[app]["mean_batch"].items())
        print(f"{app:8} queries per batch: {batches}")
    if args.syscalls:
        print(f"{'app':8} per prediction: {'syscalls':>19} {'context switches':>21}")
        print(f"{'':8}                 {'frontend':>9} {'replicas':>9} {'frontend':>10} {'replicas':>10}")
        for app in APPS:
            r = result[app]
            cells = [
                r.get(f"{g}_{e}_per_prediction", float("nan"))
                for e in ("syscalls", "context_switches")
                for g in ("frontend", "replicas")
            ]
            print(
                f"{app:8}                 {cells[0]:9.2f} {cells[1]:9.2f} {cells[2]:10.3f} {cells[3]:10.3f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
