"""Optional sampling profile of our processes during a measured run (``--profile``), with py-spy.

py-spy is installed from PyPI into its own venv under the benchmark cache. Each process is sampled
(only samples holding the GIL (Python CPU work, idle waits left out) and the top functions by own
time, computed from py-spy's collapsed stacks). py-spy costs CPU: never record timings with it.
"""

from __future__ import annotations

import collections
import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

from peers.procs import BenchError
from peers.venv import ensure_venv

REQUIREMENT = "py-spy==0.4.3"


def py_spy(log=print) -> Path:
    return ensure_venv("py-spy-0.4.3", [REQUIREMENT], log).parent / "py-spy"


@contextlib.contextmanager
def profiled(pids: dict[str, int], seconds: int, outdir: Path, log=print) -> Iterator[dict]:
    """Record each pid for ``seconds`` while the body runs; fills the yielded dict afterwards."""
    exe = py_spy(log)
    outdir.mkdir(parents=True, exist_ok=True)
    procs = {}
    for name, pid in pids.items():
        raw = outdir / f"{name}.collapsed"
        cmd = [str(exe), "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "200", "--gil"]
        procs[name] = (
            subprocess.Popen(
                [*cmd, "--format", "raw", "-o", str(raw)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            ),
            raw,
        )
    result: dict = {}
    try:
        yield result
    finally:
        for name, (proc, raw) in procs.items():
            try:
                _, err = proc.communicate(timeout=seconds + 30)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate()
            if not raw.exists():
                result[name] = {"error": f"py-spy wrote nothing: {err.decode(errors='replace')[-500:]}"}
                continue
            result[name] = {"collapsed": str(raw), "top_self": top_self(raw)}


def top_self(collapsed: Path, n: int = 15) -> list[list]:
    """[[function (file:line), percent of samples], ...] by own (leaf) time."""
    counts: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        leaf = stack.rsplit(";", 1)[-1]
        counts[leaf] += int(count)
        total += int(count)
    if not total:
        raise BenchError(f"{collapsed} holds no samples")
    return [[f, round(100 * c / total, 1)] for f, c in counts.most_common(n)]
