"""bench/frontend.py --smoke produces numbers (never a timed assertion)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
needs_wrk = pytest.mark.skipif(
    shutil.which("wrk") is None and not Path("/usr/bin/wrk").exists(), reason="wrk not installed"
)


@needs_wrk
def test_bench_smoke_prints_numbers():
    out = subprocess.run(
        [sys.executable, str(REPO / "bench" / "frontend.py"), "--smoke", "--json", "-c", "4"],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=REPO,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["predictions_per_s"] > 0
    assert result["p50_ms"] > 0 and result["p99_ms"] >= result["p50_ms"]


@needs_wrk
def test_bench_traffic_smoke_prints_numbers():
    """bench/traffic.py: the plain, routed, split and shadow apps side by side (issue 17)."""
    out = subprocess.run(
        [sys.executable, str(REPO / "bench" / "traffic.py"), "--smoke", "--json", "-c", "4"],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=REPO,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    for app in ("bench", "routed", "split", "shadow"):
        assert result[app]["predictions_per_s"] > 0, result
        assert result[app]["errors"] == 0, result
