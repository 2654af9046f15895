"""Issue 8's side-by-side benchmark: our frontend vs Ray Serve, MLServer and two reference handlers.

    python bench/compare.py                          # everything (installs the peers once, ~2 GB)
    python bench/compare.py comparison --only ours,bare --duration 5
    python bench/compare.py batching cache reconciler quickstart
    python bench/compare.py backends --duration 10 --rounds 3
    python bench/compare.py backends --backends local,kubernetes --kubeconfig FILE

Experiments (positional, default all):
  comparison  the same sum model on each target, one replica, batching on; wrk -t1 -cN -dS;
              every request a distinct input and our prediction cache off (issue 18's setting:
              with distinct inputs a cache can only cost; --ours-cache on keeps its default size),
              or with --same-input the issue's fixed body, our cache on; --rounds rounds: ours and
              the reference handlers (bare: the sum in the HTTP process; floor: the least a server
              of Clipper's design does, HTTP -> queue -> batches to a model process) run side by
              side and are measured in alternation (ours ÷ bare: the median of the per-round
              ratios), Ray Serve and MLServer one at a time afterwards; each run with and without
              wrk's response hook (--hook), a table per mode
  batching    ours: a 2 ms + 20 us/input model, batch size 1 vs adaptive, application objective 20 ms
  cache       ours: distinct inputs (every query misses) vs one repeated input (hits)
  reconciler  50 models + 50 applications applied on the local backend; then time a no-op
              `clipper apply`, `clipper diff` and `clipper --help`
  quickstart  from nothing to the first non-default prediction: manifests (`clipper apply`) and
              the Python API (clipper_admin)
  backends    (not in the default set: needs a Docker engine and the images) the sum model on the
              local backend and on the Docker backend (published ports; the query frontend on the
              host network; the ports published on the network gateway), and with --backends ...,kubernetes
              on a Kubernetes cluster through its NodePort Service; all started at once, prediction
              cache off, distinct inputs, measured in turn for --rounds rounds; CPU per prediction
              of the query frontend and of the engine's userland proxy (docker-proxy) serving its
              published port

Every load run uses the same generator (wrk, with bench/lua/*.lua) and counts only predictions:
2xx answers that are not the application's default output. Prints a table per experiment and
writes every number to a JSON file (--out). No assertion here: the "met" columns compare with the
issue's targets for the reader.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import models  # noqa: E402
import orjson  # noqa: E402
from peers.bare import handler_target  # noqa: E402
from peers.mlserver import mlserver_target  # noqa: E402
from peers.ours import (  # noqa: E402
    GATEWAY,
    add_app,
    docker_cluster,
    kubernetes_cluster,
    local_cluster,
    process_pids,
)
from peers.procs import BENCH_DIR, REPO_DIR, BenchError, Endpoint, cpu_seconds, post  # noqa: E402
from peers.profile import profiled  # noqa: E402
from peers.ray_serve import ray_target  # noqa: E402
from peers.wrk import LoadResult, ensure_wrk, run_wrk, wrk_version  # noqa: E402

from clipper.compiled import frontend_hot_path  # noqa: E402
from clipper.net import free_port  # noqa: E402
from clipper_admin import ClipperException  # noqa: E402

TARGETS = ("ours", "bare", "floor", "ray", "mlserver")
# idle when not loaded: started together and measured in alternation (the peers burn CPU while idle)
LIGHT_TARGETS = ("ours", "bare", "floor")
# --hook: the modes of wrk's response hook (unique.lua's WRK_HOOK), the first one fills the plain keys
HOOK_MODES: dict[str, tuple[bool, ...]] = {"on": (True,), "off": (False,), "both": (True, False)}
EXPERIMENTS = ("comparison", "batching", "cache", "reconciler", "quickstart", "backends")
DEFAULT_EXPERIMENTS = EXPERIMENTS[:-1]  # backends needs a Docker engine and the images
# the backends experiment's targets: the Docker manager's extra arguments ("local", "kubernetes": those
# backends); kubernetes only when asked for (--backends)
BACKENDS: dict[str, dict | str] = {
    "local": "local",
    "docker": {},
    "docker-host": {"query_frontend_host_network": True},
    # diagnostic: the ports published on the network's gateway, reached through the engine's iptables
    # DNAT instead of its userland proxy (the path of an engine run with "userland-proxy": false)
    "docker-nat": {"publish_host": GATEWAY},
    "kubernetes": "kubernetes",
}
DOCKER_BACKENDS = {
    "docker": "Docker backend",
    "docker-host": "Docker backend, query frontend on the host network",
    "docker-nat": "Docker backend, ports published on the network gateway (iptables DNAT, no docker-proxy)",
}
# issue 8's targets, as (ratio or bound, comparison)
GOALS = {
    "ours_vs_ray": 60.0,
    "ours_vs_mlserver": 15.0,
    "ours_vs_bare": 0.2,
    "ours_predictions_per_s": 15000.0,
    "ours_p99_ms_max": 10.0,
    "batching_gain": 20.0,
    "cache_gain": 2.0,
    "reconciler_noop_apply_s_max": 2.0,
    "reconciler_diff_s_max": 2.0,
    "help_s_max": 0.3,
    "quickstart_s_max": 10.0,
    "docker_vs_local": 0.8,  # issue 18
}
# issue 18's targets for the comparison (the local backend, cache off, distinct inputs, -c32)
GOALS_ISSUE18 = {"ours_vs_bare": 0.45, "ours_vs_mlserver": 30.0, "ours_vs_ray": 100.0, "ours_p99_ms_max": 5.0}


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- load runs


def measure(
    ep: Endpoint,
    args: argparse.Namespace,
    connections: int | None = None,
    profile_dir: Path | None = None,
    **kw,
) -> LoadResult:
    """A warm-up run (discarded), then the measured run (profiled with py-spy when ``profile_dir``)."""
    conns = connections or args.connections
    if args.warmup > 0:
        run_wrk(ep, args.warmup, conns, args.threads, **kw)
    if profile_dir is not None and ep.extra.get("pids"):
        with profiled(ep.extra["pids"], args.duration, profile_dir, log=say) as prof:
            res = run_wrk(ep, args.duration, conns, args.threads, **kw)
        ep.extra["profile"] = prof
    else:
        res = run_wrk(ep, args.duration, conns, args.threads, **kw)
    say(
        f"  {ep.name:9s} {'' if res.hook else '(no hook) '}{res.predictions_per_s:10.1f} predictions/s  p50 {res.p50_ms:.2f} ms  "
        f"p99 {res.p99_ms:.2f} ms  defaults {res.defaults}  non-2xx {res.non2xx}  "
        f"socket errors {res.socket_errors}"
    )
    return res


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def fmt(v: float | None, digits: int = 1) -> str:
    return "—" if v is None else f"{v:,.{digits}f}"


def met(value: float | None, goal: float, at_most: bool = False) -> str:
    if value is None:
        return "—"
    return "yes" if (value <= goal if at_most else value >= goal) else "no"


def endpoint_json(ep: Endpoint) -> dict:
    return {"version": ep.version, "url": ep.url, "notes": ep.notes, "setup_s": round(ep.setup_s, 2)}


# ---------------------------------------------------------------- experiments


@contextlib.contextmanager
def ours_target(workdir: Path, cache: bool) -> Iterator[Endpoint]:
    """``cache``: the prediction cache at its default size (else off)."""
    with local_cluster(workdir, "bench-compare", cache_size=None if cache else 0) as conn:
        ep = add_app(conn, "sum", models.sum_batch, batch_size=-1, slo_micros=100_000)
        ep = dataclasses.replace(ep, notes=f"{ep.notes}, prediction cache {'on' if cache else 'off'}")
        ep.extra["pids"] = process_pids(workdir / "clipper-home", "bench-compare")
        yield ep


def target_context(
    name: str, workdir: Path, args: argparse.Namespace
) -> contextlib.AbstractContextManager[Endpoint]:
    return {
        "ours": lambda: ours_target(workdir, cache=args.ours_cache == "on"),
        "bare": lambda: handler_target("bare", workdir),
        "floor": lambda: handler_target("floor", workdir),
        "ray": lambda: ray_target(workdir, log=say),
        "mlserver": lambda: mlserver_target(workdir, log=say),
    }[name]()


def mode_key(hook: bool) -> str:
    return "hook_on" if hook else "hook_off"


def median_load(loads: list[dict]) -> dict:
    """Each number of a list of ``LoadResult.to_json()`` as its median over the runs (integers as the
    lower median, so that they stay counts); other values from the first run."""
    out: dict = {}
    for k, v in loads[0].items():
        vals = [ld[k] for ld in loads]
        if isinstance(v, bool) or not isinstance(v, int | float):
            out[k] = v
        elif isinstance(v, int):
            out[k] = statistics.median_low(vals)
        else:
            out[k] = round(statistics.median(vals), 3)
    return out


def measure_rounds(
    args: argparse.Namespace,
    workdir: Path,
    eps: dict[str, Endpoint],
    hooks: tuple[bool, ...],
    results: dict[str, dict],
) -> None:
    """``args.rounds`` rounds over the started targets ``eps``: each round measures every target in
    each hook mode, target after target, so that the targets of a round share the machine's moment;
    odd rounds go in the reverse order (targets and modes). A target whose run fails is dropped."""
    for name, ep in eps.items():
        results[name] = {**endpoint_json(ep), "modes": {mode_key(h): {"runs": []} for h in hooks}}
    live = dict(eps)
    for rnd in range(1, args.rounds + 1):
        flip = rnd % 2 == 0
        for hook in hooks[::-1] if flip else hooks:
            for name in list(eps)[::-1] if flip else list(eps):
                if name not in live:
                    continue
                ep = live[name]
                first = rnd == 1 and hook == hooks[0]
                prof_dir = workdir / "profile" / name if args.profile and first else None
                try:
                    load = measure(
                        ep, args, profile_dir=prof_dir, unique=None if args.same_input else True, hook=hook
                    )
                except BenchError as e:
                    say(f"  {name}: FAILED: {e}")
                    results[name]["error"] = str(e)
                    del live[name]
                    continue
                run = {"round": rnd, "load": load.to_json(), "load_avg": list(os.getloadavg())}
                results[name]["modes"][mode_key(hook)]["runs"].append(run)
                if "profile" in ep.extra:
                    results[name]["profile"] = ep.extra.pop("profile")


def exp_comparison(args: argparse.Namespace, workdir: Path) -> dict:
    """The light targets (ours, bare: idle when not loaded) run side by side and are measured in
    alternation, round after round, and ours ÷ bare is the median of the ratios within a round; the
    heavy peers (Ray Serve, MLServer: they burn CPU while idle) are started one at a time afterwards,
    measured for as many rounds, and compared by their medians."""
    inputs = "one repeated input" if args.same_input else "distinct inputs (no cache hits)"
    hook = args.hook or ("on" if args.same_input else "both")
    hooks = HOOK_MODES[hook]
    say(
        f"comparison: wrk -t{args.threads} -c{args.connections} -d{args.duration}s, {inputs}, "
        f"{args.rounds} round(s), response hook {hook}, our prediction cache {args.ours_cache}, {args.only}"
    )
    results: dict[str, dict] = {}
    light = [n for n in args.only if n in LIGHT_TARGETS]
    heavy = [n for n in args.only if n not in LIGHT_TARGETS]
    with contextlib.ExitStack() as stack:
        eps: dict[str, Endpoint] = {}
        for name in light:
            try:
                eps[name] = stack.enter_context(target_context(name, workdir, args))
            except (BenchError, ClipperException) as e:
                say(f"  {name}: FAILED: {e}")
                results[name] = {"error": str(e)}
        measure_rounds(args, workdir, eps, hooks, results)
    for name in heavy:
        try:
            with target_context(name, workdir, args) as ep:
                measure_rounds(args, workdir, {name: ep}, hooks, results)
        except (BenchError, ClipperException) as e:
            say(f"  {name}: FAILED: {e}")
            results[name] = {"error": str(e)}
    for r in results.values():
        if "error" in r:
            continue
        for mode in r["modes"].values():
            mode["median"] = median_load([run["load"] for run in mode["runs"]])
        r["load"] = r["modes"][mode_key(hooks[0])]["median"]
    ok = [n for n in args.only if "error" not in results[n]]
    ratios_by_mode: dict[str, dict[str, float | None]] = {}
    ratios_per_round: dict[str, dict[str, list[float | None]]] = {}
    goals_by_mode: dict[str, dict[str, tuple]] = {}
    goals18_by_mode: dict[str, dict[str, tuple]] = {}
    sections = []
    for h in hooks:
        mk = mode_key(h)
        ratios, per_round = comparison_ratios(results, ok, mk)
        ratios_by_mode[mk], ratios_per_round[mk] = ratios, per_round
        ours = results["ours"]["modes"][mk]["median"] if "ours" in ok else {}
        goals = {
            "ours_predictions_per_s": (ours.get("predictions_per_s"), GOALS["ours_predictions_per_s"], False),
            "ours_p99_ms": (ours.get("p99_ms"), GOALS["ours_p99_ms_max"], True),
            **{k: (v, GOALS[k], False) for k, v in ratios.items() if k in GOALS},
        }
        goals_by_mode[mk] = goals
        goals18 = {
            "ours_p99_ms": (ours.get("p99_ms"), GOALS_ISSUE18["ours_p99_ms_max"], True),
            **{k: (v, GOALS_ISSUE18[k], False) for k, v in ratios.items() if k in GOALS_ISSUE18},
        }
        goals18_by_mode[mk] = goals18
        title = (
            "wrk response hook on (Lua reads every body; defaults counted by wrk)"
            if h
            else "wrk response hook off (no body read; defaults from our frontend's metrics)"
        )
        table = comparison_table(results, args.only, mk, ratios, per_round)
        sections.append(
            f"### {title}\n\n{table}\n\n{goals_table(goals)}\n\n{goals_table(goals18, 'issue 18')}"
        )
    main_mode = mode_key(hooks[0])
    return {
        "settings": {
            "connections": args.connections,
            "duration_s": args.duration,
            "threads": args.threads,
            "inputs": inputs,
            "ours_prediction_cache": args.ours_cache,
            "rounds": args.rounds,
            "hook_modes": [mode_key(h) for h in hooks],
            "ratio_method": "ours vs ours/bare: median of the ratios within each round; "
            "vs ray/mlserver (measured apart): ratio of the medians",
        },
        "results": results,
        "ratios": ratios_by_mode[main_mode],
        "ratios_by_mode": ratios_by_mode,
        "ratios_per_round": ratios_per_round,
        "goals": goals_json(goals_by_mode[main_mode]),
        "goals_by_mode": {mk: goals_json(g) for mk, g in goals_by_mode.items()},
        "goals_issue18_by_mode": {mk: goals_json(g) for mk, g in goals18_by_mode.items()},
        "table": "\n\n".join(sections),
    }


def comparison_ratios(
    results: dict[str, dict], ok: list[str], mk: str
) -> tuple[dict[str, float | None], dict[str, list[float | None]]]:
    """ours ÷ each target in mode ``mk``: the median of the per-round ratios for a light target
    (measured in the same rounds as ours), the ratio of the medians for a heavy peer."""
    ratios: dict[str, float | None] = {}
    per_round: dict[str, list[float | None]] = {}
    ours = results["ours"]["modes"][mk] if "ours" in ok else None
    for n in ok:
        if n == "ours":
            continue
        key = f"ours_vs_{n}"
        mode = results[n]["modes"][mk]
        if ours is None:
            ratios[key] = None
        elif n in LIGHT_TARGETS:
            ratios[key], per_round[key] = round_ratios(ours, mode)
        else:
            ratios[key] = ratio(ours["median"]["predictions_per_s"], mode["median"]["predictions_per_s"])
    if "floor" in ok and "bare" in ok:  # what the design itself leaves of the ceiling on this machine
        modes = results["floor"]["modes"][mk], results["bare"]["modes"][mk]
        ratios["floor_vs_bare"], per_round["floor_vs_bare"] = round_ratios(*modes)
    return ratios, per_round


def round_ratios(a: dict, b: dict) -> tuple[float | None, list[float | None]]:
    """Two light targets' runs in one mode: a ÷ b per round (measured side by side), and their median."""
    theirs = {run["round"]: run["load"]["predictions_per_s"] for run in b["runs"]}
    per_round = [ratio(run["load"]["predictions_per_s"], theirs.get(run["round"])) for run in a["runs"]]
    found = [v for v in per_round if v is not None]
    return (round(statistics.median(found), 3) if found else None), per_round


def comparison_table(
    results: dict[str, dict],
    names: list[str],
    mk: str,
    ratios: dict[str, float | None],
    per_round: dict[str, list[float | None]],
) -> str:
    rows = []
    for n in names:
        r = results[n]
        if "error" in r:
            rows.append([n, "FAILED", *("—" for _ in range(10))])
            continue
        runs, med = r["modes"][mk]["runs"], r["modes"][mk]["median"]
        vs = "1" if n == "ours" else fmt(ratios.get(f"ours_vs_{n}"), 2)
        vs_rounds = " / ".join(fmt(v, 2) for v in per_round.get(f"ours_vs_{n}", []))
        rows.append(
            [
                n,
                r["version"],
                fmt(med["predictions_per_s"]),
                " / ".join(fmt(run["load"]["predictions_per_s"], 0) for run in runs),
                fmt(med["p50_ms"], 2),
                fmt(med["p99_ms"], 2),
                " / ".join(fmt(run["load"]["p99_ms"], 2) for run in runs),
                str(sum(run["load"]["defaults"] for run in runs)),
                str(sum(run["load"]["non2xx"] + run["load"]["socket_errors"] for run in runs)),
                vs,
                vs_rounds or "—",
                " / ".join(f"{run['load_avg'][0]:.1f}" for run in runs),
            ]
        )
    header = ["target", "version", "predictions/s (median)", "per round", "p50 ms", "p99 ms (median)"]
    header += ["p99 per round", "defaults (all rounds)", "errors (all rounds)", "ours ÷ target"]
    header += ["ours ÷ target per round", "load avg per round"]
    table = md_table(header, rows)
    if (floor_vs_bare := ratios.get("floor_vs_bare")) is not None:
        each = " / ".join(fmt(v, 2) for v in per_round["floor_vs_bare"])
        table += f"\n\nfloor ÷ bare (the design's own cost on this machine): {fmt(floor_vs_bare, 2)} (per round {each})"
    return table


def exp_batching(args: argparse.Namespace, workdir: Path) -> dict:
    """Batch size 1 vs adaptive at the same load (-c N). Batch size 1 is also measured at -c 2, where
    it is not overloaded, and the gain is taken against the better of its two runs."""
    c = args.batching_connections
    fixed_ms, per_us = models.SLOW_FIXED_S * 1e3, models.SLOW_PER_INPUT_S * 1e6
    say(f"batching: {fixed_ms:g} ms + {per_us:g} us/input, slo 20 ms, -c{c} (and -c2 for batch size 1)")
    out: dict = {"settings": {"connections": c, "duration_s": args.duration, "slo_micros": 20_000}}
    runs = (("batch_size_1", 1, c), ("batch_size_1_c2", 1, 2), ("adaptive", -1, c))
    with local_cluster(workdir, "bench-batching") as conn:
        eps = {
            bs: add_app(conn, app, models.slow_batch, batch_size=bs, slo_micros=20_000)
            for bs, app in ((1, "slow-bs1"), (-1, "slow-adaptive"))
        }
        for label, bs, conns in runs:
            load = measure(eps[bs], args, connections=conns, unique=True).to_json()
            out[label] = {**endpoint_json(eps[bs]), "load": load}
    best_bs1 = max(out[k]["load"]["predictions_per_s"] for k in ("batch_size_1", "batch_size_1_c2"))
    gain = ratio(out["adaptive"]["load"]["predictions_per_s"], best_bs1)
    p99 = out["adaptive"]["load"]["p99_ms"]
    goals = {"batching_gain": (gain, GOALS["batching_gain"], False), "adaptive_p99_ms": (p99, 20.0, True)}
    out["gain"] = gain
    out["goals"] = goals_json(goals)
    loads = {
        f"batch size 1, -c{c}": out["batch_size_1"]["load"],
        "batch size 1, -c2": out["batch_size_1_c2"]["load"],
        f"adaptive, -c{c}": out["adaptive"]["load"],
    }
    out["table"] = load_table(loads) + "\n\n" + goals_table(goals)
    return out


def exp_cache(args: argparse.Namespace, workdir: Path) -> dict:
    """Hit vs miss for two models: the trivial sum model, whose misses batching makes almost as
    cheap as hits (the gain is small: the HTTP work dominates both), and the slow model of the
    batching experiment (2 ms + 20 us/input), where a miss costs the model's time. The issue 8
    target is judged on the slow model: a cache exists for models whose calls cost something."""
    say(f"cache: distinct inputs vs one repeated input, -c{args.connections}, sum and slow models")
    out: dict = {"settings": {"connections": args.connections, "duration_s": args.duration}}
    with local_cluster(workdir, "bench-cache") as conn:
        for key, func in (("sum", models.sum_batch), ("slow", models.slow_batch)):
            ep = add_app(conn, f"cached-{key}", func, batch_size=-1, slo_micros=100_000)
            out[f"endpoint_{key}"] = endpoint_json(ep)
            out[f"miss_{key}"] = measure(ep, args, unique=True).to_json()
            out[f"hit_{key}"] = measure(ep, args, unique=False).to_json()
            out[f"gain_{key}"] = ratio(
                out[f"hit_{key}"]["predictions_per_s"], out[f"miss_{key}"]["predictions_per_s"]
            )
    gain = out["gain_slow"]
    goals = {"cache_gain": (gain, GOALS["cache_gain"], False)}
    out["gain"] = gain
    out["goals"] = goals_json(goals)
    out["table"] = load_table(
        {
            "sum model, miss (distinct inputs)": out["miss_sum"],
            "sum model, hit (one input)": out["hit_sum"],
            "slow model, miss (distinct inputs)": out["miss_slow"],
            "slow model, hit (one input)": out["hit_slow"],
        }
    ) + (f"\n\nsum model hit/miss: {out['gain_sum']}x\n\n" + goals_table(goals))
    return out


def clipper_cli(*argv: str, env: dict[str, str], timeout: float) -> tuple[float, int, str]:
    """Run the installed ``clipper`` CLI; returns (seconds, exit code, output tail)."""
    exe = shutil.which("clipper") or ""
    cmd = [exe, *argv] if exe else [sys.executable, "-m", "reconciler", *argv]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    took = time.perf_counter() - t0
    return took, res.returncode, (res.stdout + res.stderr)[-2000:]


def write_fleet(root: Path, n: int, replicas: int, cluster: str) -> None:
    """A Cluster, ``n`` Models and ``n`` Applications (each app linked to its model)."""
    (root / "models").mkdir(parents=True)
    (root / "models" / "sum_model.py").write_text(
        "def predict(inputs):\n    return [str(sum(x)) for x in inputs]\n"
    )
    (root / "cluster.yaml").write_text(
        f"apiVersion: clipper.ai/v1\nkind: Cluster\nmetadata:\n  name: {cluster}\nspec:\n  backend: local\n"
        f"  queryPort: {free_port()}\n  managementPort: {free_port()}\n  rpcPort: {free_port()}\n"
    )
    docs = [
        f"apiVersion: clipper.ai/v1\nkind: Model\nmetadata:\n  name: m-{i:03d}\nspec:\n  inputType: doubles\n"
        f"  replicas: {replicas}\n  source:\n    python:\n      function: models/sum_model.py:predict\n"
        for i in range(n)
    ]
    (root / "models.yaml").write_text("---\n".join(docs))
    docs = [
        f"apiVersion: clipper.ai/v1\nkind: Application\nmetadata:\n  name: a-{i:03d}\nspec:\n"
        f'  inputType: doubles\n  defaultOutput: "-1.0"\n  latencySloMicros: 100000\n  model: m-{i:03d}\n'
        for i in range(n)
    ]
    (root / "applications.yaml").write_text("---\n".join(docs))


def cli_env(home: Path) -> dict[str, str]:
    return {**os.environ, "CLIPPER_HOME": str(home), "NO_COLOR": "1"}


def exp_reconciler(args: argparse.Namespace, workdir: Path) -> dict:
    n, reps = args.reconciler_models, args.reconciler_replicas
    say(f"reconciler: {n} models ({reps} replica(s) each) + {n} applications on the local backend")
    root = workdir / "fleet"
    shutil.rmtree(root, ignore_errors=True)
    write_fleet(root, n, reps, "bench-fleet")
    env = cli_env(workdir / "fleet-home")
    out: dict = {"settings": {"models": n, "applications": n, "replicas_per_model": reps}}
    try:
        steps: list[tuple[str, list[str], float]] = [
            ("initial_apply", ["apply", "-f", str(root)], 900),
            ("noop_apply", ["apply", "-f", str(root)], 120),
            ("diff", ["diff", "-f", str(root)], 120),
            ("help", ["--help"], 60),
        ]
        for label, argv, timeout in steps:
            took, rc, tail = clipper_cli(*argv, env=env, timeout=timeout)
            out[label] = {"seconds": round(took, 3), "exit_code": rc}
            say(f"  clipper {' '.join(argv[:1])} ({label}): {took:.3f} s, exit {rc}")
            if rc not in (0,) or label == "noop_apply":
                out[label]["output_tail"] = tail
            if label == "initial_apply" and rc != 0:
                raise BenchError(f"clipper apply failed ({rc}):\n{tail}")
    except (BenchError, subprocess.TimeoutExpired) as e:
        out["error"] = str(e)
        say(f"  FAILED: {e}")
    finally:
        took, rc, tail = clipper_cli("delete", "-f", str(root), "--cluster", env=env, timeout=300)
        out["delete"] = {"seconds": round(took, 3), "exit_code": rc}
    get = lambda k: out.get(k, {}).get("seconds")  # noqa: E731
    goals = {
        "reconciler_noop_apply_s": (get("noop_apply"), GOALS["reconciler_noop_apply_s_max"], True),
        "reconciler_diff_s": (get("diff"), GOALS["reconciler_diff_s_max"], True),
        "help_s": (get("help"), GOALS["help_s_max"], True),
    }
    labels = {
        "initial_apply": "`clipper apply -f DIR` (first: creates everything)",
        "noop_apply": "`clipper apply -f DIR` (no-op)",
        "diff": "`clipper diff -f DIR`",
        "help": "`clipper --help`",
    }
    rows = [[t, fmt(out[k]["seconds"], 3), str(out[k]["exit_code"])] for k, t in labels.items() if k in out]
    out["goals"] = goals_json(goals)
    out["table"] = md_table(["step", "seconds", "exit code"], rows) + "\n\n" + goals_table(goals)
    return out


def first_prediction(url: str, timeout_s: float) -> float:
    """Seconds until ``url`` answers the sum as a non-default prediction."""
    body = orjson.dumps({"input": models.SUM_INPUT})
    want = models.sum_one(models.SUM_INPUT)
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout_s:
        with contextlib.suppress(OSError, ValueError, KeyError):
            status, out = post(url, body, timeout=2)
            res = orjson.loads(out)
            if status == 200 and res.get("default") is False and float(res["output"]) == want:
                return time.perf_counter() - t0
        time.sleep(0.02)
    raise BenchError(f"no non-default prediction from {url} within {timeout_s:.0f} s")


def exp_quickstart(args: argparse.Namespace, workdir: Path) -> dict:
    say("quickstart: from nothing to the first non-default prediction")
    out: dict = {}
    # 1. manifests: examples/manifests/quickstart.yaml as shipped, on free ports and a fresh CLIPPER_HOME
    src = REPO_DIR / "examples" / "manifests"
    root = workdir / "quickstart"
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(src, root)
    qport = free_port()
    manifest = root / "quickstart.yaml"
    text = manifest.read_text()
    for key, port in (("queryPort", qport), ("managementPort", free_port()), ("rpcPort", free_port())):
        text = re.sub(rf"{key}: \d+", f"{key}: {port}", text)
    manifest.write_text(text)
    env = cli_env(workdir / "quickstart-home")
    try:
        t0 = time.perf_counter()
        took, rc, tail = clipper_cli("apply", "-f", str(manifest), env=env, timeout=300)
        if rc != 0:
            raise BenchError(f"clipper apply failed ({rc}):\n{tail}")
        first_prediction(f"http://127.0.0.1:{qport}/hello-world/predict", 120)
        out["manifests"] = {
            "apply_s": round(took, 3),
            "first_prediction_s": round(time.perf_counter() - t0, 3),
        }
    except (BenchError, subprocess.TimeoutExpired) as e:
        out["manifests"] = {"error": str(e)}
    finally:
        clipper_cli("delete", "-f", str(manifest), "--cluster", env=env, timeout=300)
    # 2. the Python API of the original quickstart (start_clipper, register, deploy, link, predict)
    try:
        t0 = time.perf_counter()
        with local_cluster(workdir / "quickstart-api", "quickstart") as conn:
            started = time.perf_counter() - t0
            add_app(conn, "hello-world", models.sum_batch, batch_size=-1, slo_micros=100_000)
            out["python_api"] = {
                "start_clipper_s": round(started, 3),
                "first_prediction_s": round(time.perf_counter() - t0, 3),
            }
    except BenchError as e:
        out["python_api"] = {"error": str(e)}
    for k, v in out.items():
        say(f"  {k}: {v}")
    goals = {
        f"quickstart_{k}_s": (v.get("first_prediction_s"), GOALS["quickstart_s_max"], True)
        for k, v in out.items()
    }
    rows = [
        [k.replace("_", " "), fmt(v.get("first_prediction_s"), 2), v.get("error", "")[:80].replace("\n", " ")]
        for k, v in out.items()
    ]
    out["goals"] = goals_json(goals)
    out["table"] = (
        md_table(["path", "seconds to first prediction", "error"], rows) + "\n\n" + goals_table(goals)
    )
    return out


def engine_userland_proxy() -> dict:
    """Whether the Docker engine proxies published ports in userland: dockerd's ``--userland-proxy``
    argument, else ``userland-proxy`` in /etc/docker/daemon.json, else its default (true)."""
    from clipper_admin.docker.ports import processes

    for args in processes("dockerd").values():
        for arg in args:
            if arg.startswith("--userland-proxy"):
                return {"userland_proxy": arg.partition("=")[2] != "false", "from": "dockerd " + arg}
    with contextlib.suppress(OSError, ValueError):
        conf = json.loads(Path("/etc/docker/daemon.json").read_text())
        if "userland-proxy" in conf:
            return {"userland_proxy": bool(conf["userland-proxy"]), "from": "/etc/docker/daemon.json"}
    return {"userland_proxy": True, "from": "the engine's default"}


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (Linux ``/proc``)."""
    children: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(proc.name))
    tree, todo = [], [pid]
    while todo:
        tree.append(todo.pop())
        todo.extend(children.get(tree[-1], []))
    return tree


def docker_pids(conn) -> dict[str, list[int]]:
    """The query frontend container's processes, and the ``docker-proxy`` of its published REST
    port (none when the frontend is on the host network or the engine runs without the proxy)."""
    from clipper_admin.container_manager import CLIPPER_QUERY_FRONTEND_CONTAINER_LABEL
    from clipper_admin.docker.ports import userland_proxy_pids

    cm = conn.cm
    frontends = cm._containers(CLIPPER_QUERY_FRONTEND_CONTAINER_LABEL)
    return {
        "query-frontend": [p for c in frontends for p in process_tree(c.attrs["State"]["Pid"])],
        "docker-proxy": userland_proxy_pids(cm.clipper_query_port),
    }


def docker_hot_path(conn) -> str:
    """The hot path of the query frontend container's image (images/build.sh labels it)."""
    from clipper_admin.container_manager import CLIPPER_QUERY_FRONTEND_CONTAINER_LABEL

    labels = {
        c.image.labels.get("ai.clipper.hot-path", "?")
        for c in conn.cm._containers(CLIPPER_QUERY_FRONTEND_CONTAINER_LABEL)
    }
    return " ".join(sorted(labels)) or "?"


def kubernetes_pids(conn) -> dict[str, list[int]]:
    """The query frontend pod's processes, when its node is this machine (the test cluster's single
    node): the processes whose cgroup path names the pod's UID (the kubelet's ``pod<uid>`` cgroup)."""
    from clipper_admin.kubernetes import names as n

    cm = conn.cm
    selector = n.cluster_selector(cm.cluster_name, **{n.NAME_LABEL: "query-frontend"})
    uids = [p["metadata"]["uid"] for p in cm.api.list("Pod", cm.namespace, selector)]
    marks = {f"pod{u}" for u in uids} | {f"pod{u.replace('-', '_')}" for u in uids}  # cgroupfs, systemd
    found = []
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError, ValueError):
            if proc.name.isdigit() and any(m in (proc / "cgroup").read_text() for m in marks):
                found.append(int(proc.name))
    return {"query-frontend": found}


def exp_backends(args: argparse.Namespace, workdir: Path) -> dict:
    """The same sum model behind the local backend and the Docker backend (issue 18: Docker >= 0.8x
    local). All targets run throughout; each round measures each in turn, so that the machine's
    noise spreads over all of them; the ratio is taken from the medians."""
    names = args.backends
    say(
        f"backends: {', '.join(names)}; wrk -t{args.threads} -c{args.connections} -d{args.duration}s, "
        f"distinct inputs, cache off, {args.rounds} round(s)"
    )
    out: dict = {
        "settings": {
            "connections": args.connections,
            "duration_s": args.duration,
            "threads": args.threads,
            "rounds": args.rounds,
            "cache_size": 0,
        },
        "engine": engine_userland_proxy() if any(n.startswith("docker") for n in names) else None,
    }
    eps: dict[str, Endpoint] = {}
    pids: dict[str, dict[str, list[int]]] = {}
    with contextlib.ExitStack() as stack:
        for name in names:
            extra = BACKENDS[name]
            if extra == "local":
                conn = stack.enter_context(local_cluster(workdir, "bench-backends-local", cache_size=0))
                eps[name] = add_app(conn, "sum", models.sum_batch)
                local = process_pids(workdir / "clipper-home", "bench-backends-local")
                pids[name] = {"query-frontend": [local["query-frontend"]]}
            elif extra == "kubernetes":
                if not args.kubeconfig:
                    raise BenchError(
                        "--backends kubernetes needs --kubeconfig (tests/kubernetes/cluster/up.sh prints it)"
                    )
                conn = stack.enter_context(
                    kubernetes_cluster("bench", args.kubeconfig, args.image_loader, cache_size=0)
                )
                eps[name] = add_app(
                    conn, "sum", models.sum_batch, backend="Kubernetes backend, through the NodePort Service"
                )
                pids[name] = kubernetes_pids(conn)
            else:
                assert isinstance(extra, dict)
                cluster = f"bench-{name}-{os.getpid()}"
                conn = stack.enter_context(docker_cluster(cluster, cache_size=0, **extra))
                eps[name] = add_app(conn, "sum", models.sum_batch, backend=DOCKER_BACKENDS[name])
                pids[name] = docker_pids(conn)
            eps[name] = dataclasses.replace(eps[name], name=name)
            out[name] = {**endpoint_json(eps[name]), "pids": pids[name], "runs": []}
            if name.startswith("docker"):
                out[name]["hot_path"] = docker_hot_path(conn)
        for rnd in range(args.rounds):
            for name in names:
                before = {g: [cpu_seconds(p) for p in ps] for g, ps in pids[name].items()}
                load = measure(eps[name], args, unique=True).to_json()
                run = {"round": rnd + 1, "load": load, "load_avg": list(os.getloadavg())}
                for group, ps in pids[name].items():
                    spent = [
                        a - b
                        for a, b in zip((cpu_seconds(p) for p in ps), before[group], strict=True)
                        if a is not None and b is not None
                    ]
                    if spent and load["predictions"]:
                        run[f"{group}_cpu_us_per_prediction"] = round(
                            sum(spent) / load["predictions"] * 1e6, 1
                        )
                out[name]["runs"].append(run)
    rows = []
    for name in names:
        runs = out[name]["runs"]
        med = {
            k: statistics.median(r["load"][k] for r in runs)
            for k in ("predictions_per_s", "p50_ms", "p99_ms")
        }
        cpu = {
            g: statistics.median(r[f"{g}_cpu_us_per_prediction"] for r in runs)
            for g in ("query-frontend", "docker-proxy")
            if all(f"{g}_cpu_us_per_prediction" in r for r in runs) and runs
        }
        out[name]["median"] = {**med, **{f"{g}_cpu_us_per_prediction": v for g, v in cpu.items()}}
        per_run = " / ".join(fmt(r["load"]["predictions_per_s"], 0) for r in runs)
        rows.append(
            [
                name,
                fmt(med["predictions_per_s"]),
                per_run,
                fmt(med["p99_ms"], 2),
                fmt(cpu.get("query-frontend")),
                fmt(cpu.get("docker-proxy")),
                " / ".join(f"{r['load_avg'][0]:.1f}" for r in runs),
            ]
        )
    local_pps = out.get("local", {}).get("median", {}).get("predictions_per_s")
    ratios = {
        f"{n.replace('-', '_')}_vs_local": ratio(out[n]["median"]["predictions_per_s"], local_pps)
        for n in names
        if n != "local"
    }
    out["ratios"] = ratios
    out["ratios_per_round"] = {
        f"{n.replace('-', '_')}_vs_local": [
            ratio(r["load"]["predictions_per_s"], lr["load"]["predictions_per_s"])
            for r, lr in zip(out[n]["runs"], out["local"]["runs"], strict=True)
        ]
        for n in names
        if n != "local" and "local" in out
    }
    # issue 18 sets a target for Docker; Kubernetes is recorded
    goals = {k: (v, GOALS["docker_vs_local"], False) for k, v in ratios.items() if k.startswith("docker")}
    out["goals"] = goals_json(goals)
    header = ["target", "predictions/s (median)", "per round", "p99 ms", "frontend CPU µs/pred."]
    header += ["docker-proxy CPU µs/pred.", "load avg per round"]
    out["table"] = md_table(header, rows) + "\n\n" + goals_table(goals, "issue 18")
    return out


# ---------------------------------------------------------------- output


def md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def load_table(loads: dict[str, dict]) -> str:
    rows = [
        [
            k,
            fmt(v["predictions_per_s"]),
            fmt(v["p50_ms"], 2),
            fmt(v["p99_ms"], 2),
            str(v["defaults"]),
            str(v["non2xx"] + v["socket_errors"]),
        ]
        for k, v in loads.items()
    ]
    return md_table(["run", "predictions/s", "p50 ms", "p99 ms", "defaults", "errors"], rows)


def goals_json(goals: dict[str, tuple]) -> dict:
    return {
        k: {"value": v, ("at_most" if at_most else "at_least"): g, "met": met(v, g, at_most)}
        for k, (v, g, at_most) in goals.items()
    }


def goals_table(goals: dict[str, tuple], issue: str = "issue 8") -> str:
    rows = [
        [k, fmt(v, 3), ("<= " if at_most else ">= ") + f"{g:g}", met(v, g, at_most)]
        for k, (v, g, at_most) in goals.items()
    ]
    return md_table([f"{issue} target", "measured", "target", "met"], rows)


def current_commit() -> str:
    """This checkout's commit; in a --compiled run, that of the checkout it was copied from."""
    commit = subprocess.run(
        ["git", "-C", str(REPO_DIR), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    return os.environ.get("CLIPPER_BENCH_COMMIT") or commit.stdout.strip() or "?"


def machine_info() -> dict:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "load_avg_at_start": list(os.getloadavg()),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "wrk": wrk_version(),
        "commit": current_commit(),
        # how the local backend's query frontend (a child of this interpreter) imports its hot path
        "hot_path": frontend_hot_path(),
    }


RUNNERS: dict[str, Callable[[argparse.Namespace, Path], dict]] = {
    "comparison": exp_comparison,
    "batching": exp_batching,
    "cache": exp_cache,
    "reconciler": exp_reconciler,
    "quickstart": exp_quickstart,
    "backends": exp_backends,
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python bench/compare.py",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
    )
    p.add_argument(
        "experiments",
        nargs="*",
        metavar="EXPERIMENT",
        help=f"any of {', '.join(EXPERIMENTS)}; default (all): {', '.join(DEFAULT_EXPERIMENTS)}",
    )
    p.add_argument(
        "--only", default=",".join(TARGETS), help="comparison targets, comma-separated (default: all)"
    )
    p.add_argument("--duration", type=int, default=15, help="seconds per measured wrk run (default 15)")
    p.add_argument("--warmup", type=int, default=3, help="seconds of discarded warm-up load before each run")
    p.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    p.add_argument(
        "--same-input",
        action="store_true",
        help="comparison: post the one fixed body (our cache then answers all but the first) "
        "instead of distinct inputs",
    )
    p.add_argument(
        "--ours-cache",
        choices=("on", "off"),
        help="comparison: our prediction cache at its default size or off (default: off with distinct "
        "inputs, issue 18's setting; on with --same-input)",
    )
    p.add_argument("--threads", type=int, default=1, help="wrk threads (default 1)")
    p.add_argument(
        "--batching-connections",
        type=int,
        default=96,
        help="connections of the batching runs (96: the most offered load whose p99 stays inside the 20 ms objective here)",
    )
    p.add_argument(
        "--backends",
        default=",".join(b for b in BACKENDS if b != "kubernetes"),
        help=f"backends: targets, comma-separated, from {', '.join(BACKENDS)} (default: all but kubernetes)",
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="comparison and backends: rounds of one run per target (and hook mode); the tables give the "
        "medians and each round's value (default 3)",
    )
    p.add_argument(
        "--hook",
        choices=tuple(HOOK_MODES),
        help="comparison: wrk's Lua response hook on (every body read by wrk: its CPU per request), off "
        "(no body read; our defaults from the frontend's Prometheus counter) or both, a table each "
        "(default: both; on with --same-input; the other experiments always run with it on)",
    )
    p.add_argument("--kubeconfig", help="backends: the kubeconfig of the cluster of the kubernetes target")
    p.add_argument(
        "--image-loader",
        default="containerd:/run/clipper-k8s/containerd.sock",
        help="backends: how model images reach the kubernetes target's nodes (default: the test "
        "cluster's containerd, as tests/kubernetes/cluster/up.sh starts it)",
    )
    p.add_argument("--reconciler-models", type=int, default=50, help="models (and applications) in the fleet")
    p.add_argument("--reconciler-replicas", type=int, default=1, help="replicas per model of the fleet")
    p.add_argument(
        "--profile",
        action="store_true",
        help="comparison: sample our query frontend and model replica with py-spy during the measured run "
        "(top functions by own time in the JSON; it slows ours down: do not record those numbers)",
    )
    p.add_argument(
        "--compiled",
        action="store_true",
        help="run from a copy of this checkout with the hot path compiled by mypyc (bench/compiled_tree.py; "
        "~1.5 min to build, needs gcc, the Python headers and mypy): our targets run the compiled build, as "
        "the images do; without it they run whatever this interpreter imports (an editable install: interpreted)",
    )
    p.add_argument("--out", type=Path, help="JSON result file (default bench/results/compare-<time>.json)")
    p.add_argument("--workdir", type=Path, help="where clusters, logs and manifests go (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs) afterwards")
    args = p.parse_args(argv)
    unknown = [e for e in args.experiments if e not in EXPERIMENTS + ("all",)]
    if unknown:
        p.error(f"unknown experiment {', '.join(unknown)}; choose from {', '.join(EXPERIMENTS)}")
    if not args.experiments or "all" in args.experiments:
        args.experiments = list(DEFAULT_EXPERIMENTS)
    args.only = [t.strip() for t in args.only.split(",") if t.strip()]
    bad = [t for t in args.only if t not in TARGETS]
    if bad or not args.only:
        p.error(f"--only takes targets from {', '.join(TARGETS)} (got {args.only})")
    args.backends = [t.strip() for t in args.backends.split(",") if t.strip()]
    bad = [t for t in args.backends if t not in BACKENDS]
    if bad or not args.backends:
        p.error(f"--backends takes targets from {', '.join(BACKENDS)} (got {args.backends})")
    if args.same_input and args.hook not in (None, "on"):
        p.error(
            "--same-input posts the fixed body with bench/lua/post.lua, which always reads the responses: "
            "use --hook on (or leave --hook out)"
        )
    if args.ours_cache is None:
        args.ours_cache = "on" if args.same_input else "off"
    if args.duration < 1 or args.connections < 1 or args.warmup < 0 or args.rounds < 1:
        p.error("--duration, --connections and --rounds must be at least 1, --warmup at least 0")
    return args


def run_compiled(argv: list[str], out_path: Path, workdir: Path | None) -> int:
    """This command again, without --compiled, from a compiled copy of the checkout (its frontends,
    started with this interpreter, inherit PYTHONPATH and the working directory)."""
    import compiled_tree

    missing = compiled_tree.missing_toolchain()
    if missing:
        say(f"error: --compiled: cannot compile the hot path: {missing}")
        return 2
    build_dir = Path(tempfile.mkdtemp(prefix="clipper-bench-compiled-"))
    try:
        say("building a compiled copy of this checkout (bench/compiled_tree.py) ...")
        try:
            tree = compiled_tree.build(build_dir)
        except compiled_tree.BuildError as e:
            say(f"error: --compiled: {e}")
            return 2
        args = [a for a in argv if a != "--compiled"] + ["--out", str(out_path.resolve())]
        if workdir is not None:
            args += ["--workdir", str(workdir.resolve())]
        env = {**os.environ, "PYTHONPATH": str(tree), "CLIPPER_BENCH_COMMIT": current_commit()}
        return subprocess.run(
            [sys.executable, str(tree / "bench" / "compare.py"), *args], cwd=tree, env=env
        ).returncode
    finally:
        shutil.rmtree(build_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        ensure_wrk()
    except BenchError as e:
        say(f"error: {e}")
        return 2
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out_path = args.out or BENCH_DIR / "results" / f"compare-{stamp}.json"
    if args.compiled:
        # the copy's run gets the same arguments; the last --out and --workdir (absolute) win
        return run_compiled(list(sys.argv[1:] if argv is None else argv), out_path, args.workdir)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="clipper-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    report: dict = {
        "machine": machine_info(),
        "command": " ".join(["python", "bench/compare.py", *sys.argv[1:]]),
    }
    failed = False
    try:
        for name in args.experiments:
            try:
                report[name] = RUNNERS[name](args, workdir)
            except (BenchError, ClipperException) as e:
                say(f"{name}: FAILED: {e}")
                report[name] = {"error": str(e)}
            failed |= _has_error(report[name])
    finally:
        report["machine"]["load_avg_at_end"] = list(os.getloadavg())
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(report, indent=2) + "\n")
        if not args.keep and not failed and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    m = report["machine"]
    la = f"load avg {m['load_avg_at_start'][0]:.1f} -> {m['load_avg_at_end'][0]:.1f}"
    print(
        f"# {m['date']}  {m['cpu']} x{m['cpus']}  Python {m['python']}  {m['wrk'].split(' [')[0]}  {la}  commit {m['commit']}  hot path {m['hot_path']}"
    )
    for name in args.experiments:
        print(f"\n## {name}\n")
        print(report[name].get("table") or f"FAILED: {report[name].get('error')}")
    print(f"\nresults: {out_path}" + (f"\nlogs: {workdir}" if failed or args.keep else ""))
    return 1 if failed else 0


def _has_error(section: dict) -> bool:
    if "error" in section:
        return True
    return any(isinstance(v, dict) and "error" in v for v in section.get("results", section).values())


if __name__ == "__main__":
    sys.exit(main())
