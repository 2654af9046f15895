"""How cost grows: with the number of applications, models and replicas (one command, JSON + PNGs).

Experiments (``python bench/scaling.py [EXPERIMENT ...]``, default: all):

* ``apps`` -- 1, 10, 100 applications, each linked to its own model with one replica (a Python sum
  closure), created with ``clipper apply`` on the local backend (``bench/compare.py``'s fleet), prediction
  cache off... the default cache is on, so the load uses distinct inputs (every query misses). wrk
  ``-t1 -c32`` spreads its requests over all the applications in turn (``bench/lua/unique.lua``,
  ``WRK_APPS``): predictions/s and p99. Also per point: the query frontend's RSS, every replica's RSS
  and PSS (the median is "memory per idle replica": measured before the load), and the times of the
  first ``clipper apply``, a no-op ``clipper apply`` and ``clipper diff``.
* ``reconciler`` -- ``clipper diff`` and a no-op ``clipper apply`` for 10, 100, 500 models (+ as many
  applications) with ``replicas: 0`` on the local backend (real management frontend, store and CLI
  process; no replica processes, which 500 of would not fit this machine), and the same plan
  in-process on the reconciler's fake cluster (``tests/fakes/cluster.py``: the reconciler's own cost,
  no HTTP). Goal: linear, <= 3 s at 500.
* ``frontend_memory`` -- the query frontend's RSS with 0, 1,000 and 2,000 applications (each with its
  own registered model, no replica) written into its SQLite store before it starts: after loading, and
  after one request to every application (each app's metrics then hold a sample).
* ``replica_memory`` -- an idle replica's RSS/PSS (process tree: for PySpark, Python + the JVM):
  a Python closure and a PySpark model (``bench/pyspark_startup.py``'s LogisticRegression), each
  started until ready (no frontend to connect to, so it stays idle). ``--no-pyspark`` skips PySpark.

Results: ``bench/results/scaling-<time>.json`` and one PNG per experiment next to it (matplotlib).

    python bench/scaling.py                    # everything (~10 min on the 2-core VM)
    python bench/scaling.py apps --duration 10
    python bench/scaling.py --smoke            # tiny sizes, 1 s loads, no PNG unless --plot
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import orjson  # noqa: E402
from compare import cli_env, clipper_cli, machine_info, write_fleet  # noqa: E402
from peers.ours import TEMPLATE, process_pids  # noqa: E402
from peers.procs import BENCH_DIR, REPO_DIR, BenchError, Endpoint, post  # noqa: E402
from peers.wrk import run_wrk  # noqa: E402

EXPERIMENTS = ("apps", "reconciler", "frontend_memory", "replica_memory")
RESULTS = BENCH_DIR / "results"
MiB = 1024 * 1024
REPEAT = 3  # no-op applies and diffs per fleet (the best is kept)


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- process memory --------------------------------------------------------------------------------


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (a PySpark replica's JVM is a child of its Python process)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
    return out


def memory(pid: int) -> dict[str, float]:
    """RSS and PSS (MiB) of ``pid``'s process tree. PSS shares each shared page among its users, so
    the PSS of N replicas adds up to what they really cost together."""
    rss = pss = 0
    for p in _tree(pid):
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                key, _, rest = line.partition(":")
                if key in ("Rss", "Pss"):
                    kib = int(rest.split()[0])
                    rss += kib * (key == "Rss")
                    pss += kib * (key == "Pss")
        except OSError:
            pass
    return {"rss_mib": round(rss / 1024, 1), "pss_mib": round(pss / 1024, 1)}


# -- apps: N applications, each with its own model and replica ----------------------------------------


def _fleet(
    workdir: Path, name: str, n: int, replicas: int, repeat: int = REPEAT
) -> tuple[Path, dict[str, str], dict[str, Any]]:
    """Write a fleet of n models + n apps and ``clipper apply`` it (timed: the first apply, then the
    best of ``repeat`` no-op applies and diffs, interleaved: the machine's load varies)."""
    root = workdir / name
    shutil.rmtree(root, ignore_errors=True)
    write_fleet(root, n, replicas, name)
    env = cli_env(workdir / f"{name}-home")
    times: dict[str, Any] = {}
    steps = [("initial_apply_s", ["apply", "-f", str(root)], 1800)]
    steps += [
        ("noop_apply_s", ["apply", "-f", str(root)], 300),
        ("diff_s", ["diff", "-f", str(root)], 300),
    ] * repeat
    for label, argv, limit in steps:
        took, rc, tail = clipper_cli(*argv, env=env, timeout=limit)
        if rc != 0:
            raise BenchError(f"clipper {argv[0]} ({label}, {n} models) exited {rc}:\n{tail}")
        times[label] = round(min(took, times.get(label, took)), 3)
        say(f"  {n} models: {label} {took:.2f} s")
    return root, env, times


def _delete(root: Path, env: dict[str, str]) -> None:
    took, rc, tail = clipper_cli("delete", "-f", str(root), "--cluster", env=env, timeout=600)
    if rc != 0:
        say(f"  clipper delete exited {rc}:\n{tail}")


def _query_port(root: Path) -> int:
    text = (root / "cluster.yaml").read_text()
    return int(text.split("queryPort:")[1].split()[0])


def exp_apps(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    points = []
    for n in args.apps:
        say(f"apps: {n} application(s), each with its own model and one replica")
        root, env, times = _fleet(workdir, f"apps{n}", n, 1, args.repeat)
        try:
            home = Path(env["CLIPPER_HOME"])
            pids = process_pids(home, f"apps{n}")
            replicas = [memory(pid) for key, pid in pids.items() if key != "query-frontend"]
            if len(replicas) != n:
                raise BenchError(f"{len(replicas)} replica processes for {n} models")
            port = _query_port(root)
            url = f"http://127.0.0.1:{port}/a-000/predict"
            _until_answers(url)
            fe_before = memory(pids["query-frontend"])
            ep = Endpoint(name="ours", url=url, body="", template=TEMPLATE, version="")
            apps = ("/a-%03d/predict", n)
            if args.warmup > 0:
                run_wrk(ep, args.warmup, args.connections, unique=True, apps=apps)
            load = run_wrk(ep, args.duration, args.connections, unique=True, apps=apps)
            points.append(
                {
                    "apps": n,
                    **times,
                    "predictions_per_s": round(load.predictions_per_s, 1),
                    "p50_ms": load.p50_ms,
                    "p99_ms": load.p99_ms,
                    "defaults": load.defaults,
                    "errors": load.non2xx + load.socket_errors,
                    "frontend_idle": fe_before,
                    "frontend_after_load": memory(pids["query-frontend"]),
                    "replica_rss_mib_median": statistics.median(r["rss_mib"] for r in replicas),
                    "replica_pss_mib_median": statistics.median(r["pss_mib"] for r in replicas),
                    "replicas_pss_mib_total": round(sum(r["pss_mib"] for r in replicas), 1),
                    "load_avg": round(os.getloadavg()[0], 1),
                }
            )
            say(f"  {points[-1]}")
        finally:
            _delete(root, env)
    return {"connections": args.connections, "duration_s": args.duration, "points": points}


def _until_answers(url: str, timeout: float = 120.0) -> None:
    body = TEMPLATE % 1
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            status, out = post(url, body)
            if status == 200 and orjson.loads(out).get("default") is False:
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.1)
    raise BenchError(f"{url} gave no model output within {timeout:.0f} s")


# -- reconciler: diff / no-op apply against the number of models ------------------------------------


def exp_reconciler(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    local, fake = [], []
    for n in args.models:
        say(f"reconciler: {n} models + {n} applications, replicas: 0 (local backend)")
        root, env, times = _fleet(workdir, f"fleet{n}", n, 0, args.repeat)
        try:
            pids = process_pids(Path(env["CLIPPER_HOME"]), f"fleet{n}")
            local.append({"models": n, **times, "frontend": memory(pids["query-frontend"])})
        finally:
            _delete(root, env)
        fake.append({"models": n, **_fake_cluster_times(workdir / f"fake{n}", n)})
        say(f"  fake cluster: {fake[-1]}")
    return {"local": local, "fake_cluster": fake}


def _fake_cluster_times(root: Path, n: int) -> dict[str, float]:
    """In-process on the fake cluster: the first apply, then a no-op apply and a diff (load the
    manifests + observe + plan), best of 3."""
    sys.path.insert(0, str(REPO_DIR))
    from reconciler.desired import desired_state
    from reconciler.engine import Target, apply, plan_for
    from reconciler.loader import load_manifests
    from tests.fakes.cluster import FakeCluster

    write_fleet(root, n, 0, f"fake{n}")
    text = (
        (root / "models.yaml")
        .read_text()
        .replace(
            "    python:\n      function: models/sum_model.py:predict\n",
            '    image: "registry.example/sum:1"\n',
        )
    )
    (root / "models.yaml").write_text(text)  # an image source: the fake cluster builds nothing
    cluster = FakeCluster(running=False)
    paths = [str(root)]

    def target() -> Target:
        manifests = load_manifests(paths)
        return Target(desired_state(manifests), cluster, root / "state", manifests.files)

    t0 = time.perf_counter()
    apply(target(), "bench")
    first = time.perf_counter() - t0
    noop, diff = [], []
    for _ in range(3):
        t0 = time.perf_counter()
        plan = apply(target(), "bench")
        noop.append(time.perf_counter() - t0)
        if plan.changes:
            raise BenchError(f"the fake cluster's second apply of {n} models changed something")
        t0 = time.perf_counter()
        plan_for(target(), "bench", False)
        diff.append(time.perf_counter() - t0)
    return {
        "initial_apply_s": round(first, 3),
        "noop_apply_s": round(min(noop), 3),
        "diff_s": round(min(diff), 3),
    }


# -- frontend memory against the number of applications ---------------------------------------------


def exp_frontend_memory(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    import cloudpickle
    import frontend
    from frontend import Stack

    from clipper.config_store import AppRecord, ModelRecord, open_store

    cloudpickle.register_pickle_by_value(frontend)  # its no-op model, for a replica that cannot import it
    points = []
    for n in args.frontend_apps:
        say(f"frontend_memory: {n} applications")
        root = workdir / f"fm{n}"
        root.mkdir()
        os.environ["CLIPPER_HOME"] = str(root)
        stack = Stack(root)
        store = open_store(stack.store)
        for i in range(n):
            store.add_app(AppRecord(f"x{i}", "doubles", "-1.0", 100000))
            store.add_model(ModelRecord(f"mx{i}", "1", "doubles"))
            store.add_link(f"x{i}", f"mx{i}")
        store.close()
        try:
            stack.start(100000, direct=True)  # + the "bench" app, its model and one replica
            pid = stack.procs[0].pid  # direct: the query frontend is the first process
            loaded = memory(pid)
            base = f"http://127.0.0.1:{stack.http_port}"
            for i in range(n):  # no replica: each answers its default at once
                status, _ = post(f"{base}/x{i}/predict", b'{"input": [1.5]}')
                if status != 200:
                    raise BenchError(f"/x{i}/predict answered {status}")
            points.append({"apps": n, "loaded": loaded, "after_one_request_each": memory(pid)})
            say(f"  {points[-1]}")
        finally:
            stack.stop()
    return {"points": points}


# -- idle replica memory -------------------------------------------------------------------------------


def exp_replica_memory(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    import cloudpickle
    from pyspark_startup import time_ready

    out: dict[str, Any] = {}
    closure = workdir / "closure"
    closure.mkdir()
    (closure / "func.pkl").write_bytes(cloudpickle.dumps(lambda xs: [str(sum(x)) for x in xs]))
    seen: dict[str, float] = {}
    _, _ = time_ready(closure, {}, on_ready=lambda pid: seen.update(memory(pid)))
    out["python_closure"] = dict(seen)
    say(f"replica_memory: python closure {seen}")
    if args.pyspark:
        spark_dir = _pyspark_model_dir()
        seen.clear()
        _, _ = time_ready(spark_dir, {}, on_ready=lambda pid: seen.update(memory(pid)))
        out["pyspark"] = dict(seen)
        say(f"replica_memory: pyspark {seen}")
    return out


def _pyspark_model_dir() -> Path:
    from pyspark_startup import _predict, _train, local_spark

    from clipper_admin.deployers.pyspark import save_pyspark_function

    spark = local_spark()
    try:
        return Path(save_pyspark_function("bench", _predict, _train(spark), spark.sparkContext))
    finally:
        spark.stop()


# -- plots ---------------------------------------------------------------------------------------------


def plot(result: dict[str, Any], stem: Path) -> list[Path]:
    """One PNG per experiment present in ``result``; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []

    def save(fig: Any, name: str) -> None:
        path = stem.with_name(f"{stem.name}-{name}.png")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made.append(path)

    if "apps" in result:
        pts = result["apps"]["points"]
        xs = [p["apps"] for p in pts]
        fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(13, 3.8))
        a1.plot(xs, [p["predictions_per_s"] for p in pts], "o-")
        a1.set(xscale="log", xlabel="applications (one model + replica each)", ylabel="predictions/s",
               title="throughput (wrk -c32, distinct inputs)", ylim=(0, None))  # fmt: skip
        a2.plot(xs, [p["p99_ms"] for p in pts], "o-", color="tab:red")
        a2.axhline(5, ls="--", color="grey", label="5 ms")
        a2.set(xscale="log", xlabel="applications", ylabel="p99 ms", title="p99 latency", ylim=(0, None))
        a2.legend()
        a3.plot(xs, [p["frontend_after_load"]["rss_mib"] for p in pts], "o-", label="query frontend RSS")
        a3.plot(xs, [p["replicas_pss_mib_total"] for p in pts], "s-", label="all replicas, PSS")
        a3.set(xscale="log", yscale="log", xlabel="applications", ylabel="MiB", title="memory")
        a3.legend()
        save(fig, "apps")
    if "reconciler" in result:
        r = result["reconciler"]
        fig, ax = plt.subplots(figsize=(6.5, 4))
        for rows, where, mark in (
            (r["local"], "local backend", "o"),
            (r["fake_cluster"], "fake cluster", "s"),
        ):
            xs = [p["models"] for p in rows]
            ax.plot(xs, [p["diff_s"] for p in rows], mark + "-", label=f"diff, {where}")
            ax.plot(xs, [p["noop_apply_s"] for p in rows], mark + "--", label=f"no-op apply, {where}")
        ax.axhline(3, ls=":", color="grey", label="goal at 500: 3 s")
        ax.set(xlabel="models (+ as many applications)", ylabel="seconds", title="clipper diff / no-op apply")
        ax.legend(fontsize=8)
        save(fig, "reconciler")
    if "frontend_memory" in result:
        pts = result["frontend_memory"]["points"]
        xs = [p["apps"] for p in pts]
        fig, ax = plt.subplots(figsize=(6.5, 4))
        ax.plot(xs, [p["loaded"]["rss_mib"] for p in pts], "o-", label="after loading")
        ax.plot(xs, [p["after_one_request_each"]["rss_mib"] for p in pts], "s-", label="after 1 request each")
        ax.set(xlabel="applications (each with its own model, no replica)", ylabel="RSS MiB",
               title="query frontend memory", ylim=(0, None))  # fmt: skip
        ax.legend()
        save(fig, "frontend-memory")
    if "replica_memory" in result:
        r = result["replica_memory"]
        names = list(r)
        fig, ax = plt.subplots(figsize=(5.5, 3.6))
        ax.bar([f"{n}\nRSS" for n in names], [r[n]["rss_mib"] for n in names], color="tab:blue")
        ax.bar([f"{n}\nPSS" for n in names], [r[n]["pss_mib"] for n in names], color="tab:orange")
        ax.set(ylabel="MiB", title="one idle replica (process tree)")
        save(fig, "replica-memory")
    return made


# -- main ------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("experiments", nargs="*", metavar="EXPERIMENT", help=f"any of {', '.join(EXPERIMENTS)}")
    ap.add_argument(
        "--smoke",
        action="store_true",
        help="tiny sizes, 1 s loads, no warm-up, one no-op apply and diff per fleet (a check, not a measurement)",
    )
    ap.add_argument("-c", "--connections", type=int, default=32)
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of each measured load")
    ap.add_argument("--warmup", type=float, default=2.0, help="seconds of unmeasured load first (0: none)")
    ap.add_argument(
        "--repeat", type=int, default=REPEAT, help="no-op applies and diffs per fleet (the best is kept)"
    )
    ap.add_argument("--apps", type=int, nargs="+", default=[1, 10, 100])
    ap.add_argument("--models", type=int, nargs="+", default=[10, 100, 500])
    ap.add_argument("--frontend-apps", type=int, nargs="+", default=[0, 1000, 2000])
    ap.add_argument("--no-pyspark", dest="pyspark", action="store_false")
    ap.add_argument("--out", type=Path, help="the JSON file (default bench/results/scaling-<time>.json)")
    ap.add_argument("--plot", action="store_true", help="PNGs also with --smoke")
    args = ap.parse_args(argv)
    unknown = set(args.experiments) - set(EXPERIMENTS)
    if unknown:
        ap.error(f"unknown experiment(s) {', '.join(sorted(unknown))}: choose from {', '.join(EXPERIMENTS)}")
    args.experiments = args.experiments or list(EXPERIMENTS)
    if args.repeat < 1:
        ap.error(f"--repeat {args.repeat}: give at least 1 (each fleet's no-op apply and diff are timed)")
    if args.smoke:
        args.apps, args.models, args.frontend_apps = [1, 2], [2], [0, 20]
        args.duration, args.warmup, args.connections, args.pyspark, args.repeat = 1.0, 0.0, 4, False, 1
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    result: dict[str, Any] = {
        "command": " ".join(sys.argv),
        "started": stamp,
        "machine": machine_info(),
        "load_avg_start": os.getloadavg(),
    }
    run = {"apps": exp_apps, "reconciler": exp_reconciler, "frontend_memory": exp_frontend_memory,
           "replica_memory": exp_replica_memory}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="clipper-bench-scaling-") as tmp:
        # a smoke run leaves nothing in bench/results unless asked to (--out)
        out = args.out or (Path(tmp) if args.smoke else RESULTS) / f"scaling-{stamp}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        failed = []
        for name in args.experiments:
            try:
                result[name] = run[name](args, Path(tmp))
            except (BenchError, OSError, subprocess.SubprocessError) as e:  # the others still run
                say(f"{name} FAILED: {e}")
                result[f"{name}_error"] = str(e)[-3000:]
                failed.append(name)
            out.write_text(json.dumps(result, indent=1))  # what is done so far survives a later failure
        result["load_avg_end"] = os.getloadavg()
        if not args.smoke or args.plot:
            result["plots"] = [str(p) for p in plot(result, out.with_suffix(""))]
        out.write_text(json.dumps(result, indent=1))
        say(f"results: {out}")
    print(json.dumps(result))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
