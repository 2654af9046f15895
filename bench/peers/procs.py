"""Start and stop the processes a benchmark target needs, and wait until an endpoint answers."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent.parent
REPO_DIR = BENCH_DIR.parent


class BenchError(Exception):
    """A benchmark target could not be set up; the message says what to look at."""


@dataclass(frozen=True)
class Endpoint:
    """What the load generator needs to know about a started target."""

    name: str
    url: str
    body: str  # the fixed request body
    template: str  # the same body with one %d, for distinct inputs (unique.lua)
    version: str
    notes: str = ""
    setup_s: float = 0.0
    extra: dict = field(default_factory=dict)


def start(cmd: Sequence[str], log: Path, env: dict[str, str] | None = None, cwd: Path | None = None):
    """Start ``cmd`` in its own session (so that its whole process group can be stopped)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    out = open(log, "ab")  # noqa: SIM115 - owned by the child
    full_env = {**os.environ, **(env or {})}
    return subprocess.Popen(
        list(cmd),
        stdout=out,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=full_env,
        cwd=cwd,
        start_new_session=True,
    )


def stop(proc: subprocess.Popen, grace_s: float = 15.0) -> None:
    """SIGTERM the process group ``proc`` leads, SIGKILL it after ``grace_s``."""
    if proc.poll() is None:
        _signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            pass
    # children that outlived their leader are still in its group
    _signal_group(proc, signal.SIGKILL)
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        pass


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def post(url: str, body: str | bytes, timeout: float = 5.0) -> tuple[int, bytes]:
    data = body.encode() if isinstance(body, str) else body
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_until(
    check: Callable[[], bool],
    timeout_s: float,
    what: str,
    proc: subprocess.Popen | None = None,
    log: Path | None = None,
) -> float:
    """Poll ``check`` until it is true; returns the seconds it took. Raises ``BenchError`` on timeout."""
    t0 = time.perf_counter()
    last: Exception | None = None
    while time.perf_counter() - t0 < timeout_s:
        if proc is not None and proc.poll() is not None:
            raise BenchError(f"{what}: the process exited with {proc.returncode}{_tail(log)}")
        try:
            if check():
                return time.perf_counter() - t0
        except (OSError, ValueError) as e:
            last = e
        time.sleep(0.05)
    raise BenchError(f"{what}: not ready after {timeout_s:.0f} s (last error: {last}){_tail(log)}")


def _tail(log: Path | None, lines: int = 15) -> str:
    if log is None or not log.exists():
        return ""
    text = log.read_text(errors="replace").splitlines()[-lines:]
    return f"\n--- last lines of {log} ---\n" + "\n".join(text)


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process so far (Linux ``/proc``), None where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
