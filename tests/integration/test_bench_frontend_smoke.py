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


def bench_json(script: str, *args: str, timeout: float) -> dict:
    """Run ``bench/<script> args``; its last line of output, parsed as JSON."""
    out = subprocess.run(
        [sys.executable, str(REPO / "bench" / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result: dict = json.loads(out.stdout.strip().splitlines()[-1])
    return result


@needs_wrk
def test_bench_smoke_prints_numbers():
    result = bench_json("frontend.py", "--smoke", "--json", "-c", "4", timeout=180)
    assert result["predictions_per_s"] > 0
    assert result["p50_ms"] > 0 and result["p99_ms"] >= result["p50_ms"]


@needs_wrk
def test_bench_traffic_smoke_prints_numbers():
    """bench/traffic.py: the plain, routed, split and shadow apps side by side (issue 17)."""
    result = bench_json("traffic.py", "--smoke", "--json", "-c", "4", timeout=240)
    for app in ("bench", "routed", "split", "shadow"):
        assert result[app]["predictions_per_s"] > 0, result
        assert result[app]["errors"] == 0, result
    assert result["split"]["throughput_cost_interval_pct"] is None  # one round: no interval claimed
    # queries per RPC message of each version that served the app's run: the split's both versions
    assert set(result["split"]["mean_batch"]) == {"noop:1", "noop:2"}, result["split"]
    assert all(b >= 1 for b in result["split"]["mean_batch"].values()), result["split"]
    assert "noop:1" in result["routed"]["mean_batch"]
    # every round's own measurements: its throughput and the machine's idle and stolen shares
    (only,) = result["split"]["rounds"]
    assert only["rps"] == pytest.approx(result["split"]["predictions_per_s"], abs=0.1)
    assert 0 <= only["idle_pct"] <= 100 and 0 <= only["steal_pct"] <= 100, only


def test_bench_micro_smoke_prints_numbers():
    """bench/micro.py: CPU per request through the real frontend objects, beside the bare handler."""
    result = bench_json("micro.py", "--smoke", "--json", timeout=180)
    assert result["ours_us_per_request"] > 0 and result["bare_us_per_request"] > 0
    assert result["requests"] == 2000 and result["mean_batch"] >= 1
    assert result["hot_path"] == "interpreted"  # this interpreter's modules: no --cached-build


def test_bench_replica_prints_numbers():
    """bench/replica.py: a model container's CPU per RPC message, every case (issue 18)."""
    result = bench_json("replica.py", "-n", "50", "--json", timeout=240)
    assert len(result["cases"]) == 12
    assert {c["transport"] for c in result["cases"]} == {"unix socket", "zmq tcp"}
    for case in result["cases"]:
        assert case["messages"] == 50 and case["round_trip_us"] > 0, case
        assert case["replica_cpu_us_per_message"] >= 0, case


def test_bench_transport_echo_prints_numbers():
    """bench/transport_echo.py: a message's round trip over ZeroMQ ipc and the plain Unix socket."""
    result = bench_json("transport_echo.py", "-n", "200", "--json", timeout=120)
    assert [c["transport"] for c in result["cases"]] == ["zmq", "stream"]
    for case in result["cases"]:
        assert case["messages"] == 200 and case["round_trip_us"] > 0, case


@needs_wrk
def test_bench_scaling_smoke_prints_numbers(tmp_path):
    """bench/scaling.py --smoke: every experiment runs at tiny sizes and yields its numbers and plots."""
    out_file = tmp_path / "scaling.json"
    printed = bench_json("scaling.py", "--smoke", "--plot", "--out", str(out_file), timeout=900)
    result = json.loads(out_file.read_text())
    assert result == printed
    assert [p["apps"] for p in result["apps"]["points"]] == [1, 2]
    for p in result["apps"]["points"]:
        assert p["predictions_per_s"] > 0 and p["errors"] == 0 and p["replica_pss_mib_median"] > 0
    for where in ("local", "fake_cluster"):
        assert [p["models"] for p in result["reconciler"][where]] == [2]
        assert all(p["diff_s"] > 0 and p["noop_apply_s"] > 0 for p in result["reconciler"][where])
    assert [p["apps"] for p in result["frontend_memory"]["points"]] == [0, 20]
    assert result["replica_memory"]["python_closure"]["rss_mib"] > 0
    assert len(result["plots"]) == 4 and all(Path(p).stat().st_size > 0 for p in result["plots"])


def test_bench_scaling_refuses_a_repeat_below_one():
    out = subprocess.run([sys.executable, str(REPO / "bench" / "scaling.py"), "--repeat", "0"],
                         capture_output=True, text=True, timeout=60, cwd=REPO)  # fmt: skip
    assert out.returncode == 2 and "--repeat 0: give at least 1" in out.stderr, out.stderr


def test_bench_traffic_counts_each_groups_system_calls_from_perf_stat(tmp_path, monkeypatch):
    """bench/traffic.py --syscalls: ``perf stat --per-thread -x,`` lines are summed per process group
    (every thread of its processes: the ZeroMQ I/O threads count with their process)."""
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    import traffic

    threads = {10: [10, 11, 12], 20: [20, 21], 30: [30, 31]}
    monkeypatch.setattr(traffic, "_threads", lambda pid: threads[pid])
    out = tmp_path / "perf.csv"
    out.write_text(
        "# started on Wed Dec  2 04:05:21 2026\n\n"
        "python-10,900,,raw_syscalls:sys_enter,2716928041,100.00,35.638,K/sec\n"
        "ZMQbg/IO/0-11,100,,raw_syscalls:sys_enter,411592213,100.00,93.777,K/sec\n"
        "ZMQbg/Reaper-12,<not counted>,,raw_syscalls:sys_enter,0,100.00,,\n"
        "python-21,50,,raw_syscalls:sys_enter,391321128,100.00,41.362,K/sec\n"
        "ZMQbg/IO/0-31,70,,raw_syscalls:sys_enter,240566793,100.00,104.881,K/sec\n"
        "python-99,5000,,raw_syscalls:sys_enter,1,100.00,1,K/sec\n"  # not one of ours
        "python-10,40,,context-switches,2716928041,100.00,2.688,K/sec\n"
        "ZMQbg/IO/0-31,7,,context-switches,240566793,100.00,16.008,K/sec\n"
        "python-10,3,,cpu-migrations,2716928041,100.00,0.201,K/sec\n"
        "python-21,2,,cpu-migrations,391321128,100.00,0.005,K/sec\n"
        "python-21,9,,page-faults,391321128,100.00,0.023,K/sec\n"  # not an event it asked for
    )
    counts = traffic._perf_counts({"frontend": [10], "replicas": [20, 30]}, out)
    assert counts == {
        "frontend": {"syscalls": 1000.0, "context_switches": 40.0, "migrations": 3.0},
        "replicas": {"syscalls": 120.0, "context_switches": 7.0, "migrations": 2.0},
    }


def test_bench_traffic_interval_of_the_median_cost_is_distribution_free(monkeypatch):
    """The order statistics whose binomial coverage reaches 95 %: x(k), x(n+1-k)."""
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    import traffic

    assert traffic.median_interval([5.0, 1.0, 3.0, 2.0, 4.0]) is None  # 5 rounds cannot reach 95 %
    assert traffic.median_interval([6.0, 5.0, 4.0, 3.0, 2.0, 1.0]) == (1.0, 6.0)  # coverage 0.969
    assert traffic.median_interval([float(x) for x in range(1, 11)]) == (2.0, 9.0)  # 0.979; k=3: 0.891
    assert traffic.median_interval([float(x) for x in range(1, 13)]) == (3.0, 10.0)  # 0.961
    assert traffic.median_interval([float(x) for x in range(1, 21)]) == (6.0, 15.0)  # 0.959
    assert traffic.median_interval([1.0, 2.0, 3.0], confidence=0.5) == (1.0, 3.0)
