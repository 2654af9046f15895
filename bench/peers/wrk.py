"""The one load generator every target gets: ``wrk`` (Debian's), with the scripts in ``bench/lua``."""

from __future__ import annotations

import itertools
import json
import os
import random
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass
from urllib.parse import urlsplit

from peers.procs import BENCH_DIR, BenchError, Endpoint

LUA_DIR = BENCH_DIR / "lua"
# Each unique.lua run starts its counter at a fresh multiple of 1e10, below 1e15: "N.5" stays an exact
# double (below 2**52), so that distinct inputs never collapse into one cache key.
_SEEDS = itertools.count(random.randrange(1, 90) * 1000)


def ensure_wrk() -> str:
    """The path of ``wrk``, installing Debian's package with apt-get when it is absent."""
    found = shutil.which("wrk")
    if found:
        return found
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [*sudo, "apt-get", "install", "-y", "-q", "wrk"]
    if subprocess.run(install, env=env, capture_output=True).returncode != 0:
        subprocess.run([*sudo, "apt-get", "update", "-q"], env=env, capture_output=True)
        res = subprocess.run(install, env=env, capture_output=True, text=True)
        if res.returncode != 0:
            raise BenchError(f"wrk is not installed and apt-get could not install it:\n{res.stderr[-2000:]}")
    found = shutil.which("wrk")
    if not found:
        raise BenchError("apt-get installed wrk but it is not on PATH")
    return found


def wrk_version() -> str:
    res = subprocess.run([ensure_wrk(), "-v"], capture_output=True, text=True)
    return (res.stdout + res.stderr).splitlines()[0].strip() if (res.stdout + res.stderr) else "?"


@dataclass
class LoadResult:
    """One wrk run. ``predictions`` are 2xx answers that are not default outputs."""

    requests: int
    duration_s: float
    predictions: int
    defaults: int
    non2xx: int
    socket_errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    mean_ms: float
    max_ms: float
    connections: int
    hook: bool = True  # wrk's response hook on (every body read by Lua)
    defaults_from: str = "wrk"  # who counted ``defaults``: "wrk", "frontend metrics" or "none"

    @property
    def predictions_per_s(self) -> float:
        return self.predictions / self.duration_s if self.duration_s else 0.0

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    def to_json(self) -> dict:
        return {
            **asdict(self),
            "predictions_per_s": round(self.predictions_per_s, 1),
            "requests_per_s": round(self.requests_per_s, 1),
        }


def run_wrk(
    ep: Endpoint,
    duration_s: float,
    connections: int,
    threads: int = 1,
    unique: bool | None = None,
    timeout_s: float = 10.0,
    apps: tuple[str, int] | None = None,
    hook: bool = True,
) -> LoadResult:
    """Load ``ep`` for ``duration_s``. ``unique=None``: the fixed body (post.lua); True/False: unique.lua
    with distinct inputs (cache misses) or one repeated input built the same way (cache hits).
    ``apps=(path_format, n)`` (with ``unique``): the requests go to n paths in turn, ``path_format % i``.
    ``hook=False`` (unique.lua only): no Lua response hook, so wrk reads no body; the defaults are then
    the difference of ``ep.extra["defaults_total"]()`` (the target's own count) across the run, or 0
    where the target has no such callable (it never answers a default)."""
    if not hook and unique is None:
        raise BenchError("the fixed body (post.lua) always reads the responses: run it with the hook on")
    counter: Callable[[], int] | None = None if hook else ep.extra.get("defaults_total")
    defaults_before = counter() if counter is not None else 0
    env = dict(os.environ)
    if unique is None:
        script = LUA_DIR / "post.lua"
        env["WRK_BODY"] = ep.body
    else:
        script = LUA_DIR / "unique.lua"
        env["WRK_TEMPLATE"] = ep.template
        env["WRK_UNIQUE"] = "1" if unique else "0"
        env["WRK_PATH"] = urlsplit(ep.url).path
        env["WRK_SEED"] = str(next(_SEEDS) * 10**10)
        env["WRK_HOOK"] = "1" if hook else "0"
        if apps is not None:
            env["WRK_PATH"], env["WRK_APPS"] = apps[0], str(apps[1])
    cmd = [
        ensure_wrk(),
        f"-t{threads}",
        f"-c{max(connections, threads)}",
        f"-d{max(1, round(duration_s))}s",
        f"--timeout={timeout_s:g}s",
        "-s",
        str(script),
        ep.url,
    ]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=duration_s + 60)
    line = next((ln for ln in res.stdout.splitlines() if ln.startswith("WRK_RESULT ")), None)
    if res.returncode != 0 or line is None:
        raise BenchError(
            f"wrk failed on {ep.name} ({res.returncode}):\n{res.stdout[-1500:]}{res.stderr[-1500:]}"
        )
    raw = json.loads(line.removeprefix("WRK_RESULT "))
    lat = raw["latency_us"]
    errors = raw["errors"]
    requests = raw["requests"]
    if hook:
        defaults, defaults_from = raw["defaults"], "wrk"
    elif counter is not None:
        # requests still in flight when wrk stopped may be counted here too: at most one per connection
        defaults, defaults_from = max(0, counter() - defaults_before), "frontend metrics"
    else:
        defaults, defaults_from = 0, "none"
    return LoadResult(
        requests=requests,
        duration_s=raw["duration_us"] / 1e6,
        predictions=requests - raw["non2xx"] - defaults,
        defaults=defaults,
        non2xx=raw["non2xx"],
        socket_errors=errors["connect"] + errors["read"] + errors["write"] + errors["timeout"],
        p50_ms=lat["p50"] / 1000,
        p90_ms=lat["p90"] / 1000,
        p99_ms=lat["p99"] / 1000,
        p999_ms=lat["p999"] / 1000,
        mean_ms=lat["mean"] / 1000,
        max_ms=lat["max"] / 1000,
        connections=connections,
        hook=hook,
        defaults_from=defaults_from,
    )
