"""Smoke test of the issue-8 benchmark harness: ours and the reference handlers only, a second or two each.

It checks that ``bench/compare.py`` sets the targets up, drives them with wrk and writes numbers;
never how fast they are (no timed assertion). The peers (Ray Serve, MLServer) need large downloads
and are left to ``python bench/compare.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# The harness installs wrk with apt-get when it is absent; only a machine that can do neither skips.
pytestmark = pytest.mark.skipif(
    shutil.which("wrk") is None and (shutil.which("apt-get") is None or os.geteuid() != 0),
    reason="wrk is not installed and apt-get cannot install it here",
)


def run_compare(tmp_path: Path, *argv: str) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp_path / "result.json"
    env = {**os.environ, "CLIPPER_HOME": str(tmp_path / "home")}
    cmd = [sys.executable, str(REPO / "bench" / "compare.py"), *argv]
    cmd += ["--out", str(out), "--workdir", str(tmp_path / "work")]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env, cwd=REPO)
    assert out.exists(), res.stdout + res.stderr
    return res, json.loads(out.read_text())


def test_comparison_smoke_ours_and_reference_handlers(tmp_path: Path) -> None:
    res, report = run_compare(
        tmp_path,
        "comparison",
        "--only",
        "ours,bare,floor",
        "--duration",
        "1",
        "--warmup",
        "0",
        "--connections",
        "4",
        "--rounds",
        "2",
        "--hook",
        "both",
    )
    assert res.returncode == 0, res.stdout + res.stderr
    comparison = report["comparison"]
    results = comparison["results"]
    assert set(results) == {"ours", "bare", "floor"}
    assert comparison["settings"]["hook_modes"] == ["hook_on", "hook_off"]
    # how the local frontend (a child of compare.py, which runs this interpreter) imports its hot path
    from clipper.compiled import frontend_hot_path

    assert report["machine"]["hot_path"] == frontend_hot_path()
    # distinct inputs: our prediction cache is off (issue 18's setting), and the notes say so
    assert comparison["settings"]["ours_prediction_cache"] == "off"
    assert results["ours"]["notes"].endswith("prediction cache off")
    for name in ("ours", "bare", "floor"):
        load = results[name]["load"]  # the medians of the first mode (hook on), as before
        assert load["predictions"] > 0 and load["predictions_per_s"] > 0
        assert load["non2xx"] == 0 and load["socket_errors"] == 0
        assert 0 < load["p50_ms"] <= load["p99_ms"]
        assert load == results[name]["modes"]["hook_on"]["median"]
        for mode, hook in (("hook_on", True), ("hook_off", False)):
            runs = results[name]["modes"][mode]["runs"]
            assert [r["round"] for r in runs] == [1, 2]
            for r in runs:
                assert r["load"]["hook"] is hook
                assert r["load"]["predictions"] > 0 and r["load"]["predictions_per_s"] > 0
                assert r["load"]["non2xx"] == 0 and r["load"]["socket_errors"] == 0
                assert len(r["load_avg"]) == 3
        # without the hook wrk sees no body: our defaults come from the frontend's counter
        off = results[name]["modes"]["hook_off"]["runs"][0]["load"]["defaults_from"]
        assert off == ("frontend metrics" if name == "ours" else "none")
    for mode in ("hook_on", "hook_off"):
        per_round = comparison["ratios_per_round"][mode]["ours_vs_bare"]
        assert len(per_round) == 2 and all(v is not None and v > 0 for v in per_round)
        assert comparison["ratios_by_mode"][mode]["ours_vs_bare"] > 0
        # the floor (the design's least work: HTTP, queue, batches to a model process), measured in
        # the same rounds: ours ÷ floor and floor ÷ bare per round
        for key in ("ours_vs_floor", "floor_vs_bare"):
            per_round = comparison["ratios_per_round"][mode][key]
            assert len(per_round) == 2 and all(v is not None and v > 0 for v in per_round)
        # issue 18's targets beside issue 8's: the same measured ratio against the stricter bound
        goal18 = comparison["goals_issue18_by_mode"][mode]["ours_vs_bare"]
        assert goal18["at_least"] == 0.45
        assert goal18["value"] == comparison["goals_by_mode"][mode]["ours_vs_bare"]["value"]
        assert comparison["goals_issue18_by_mode"][mode]["ours_p99_ms"]["at_most"] == 5.0
    assert comparison["ratios"]["ours_vs_bare"] == comparison["ratios_by_mode"]["hook_on"]["ours_vs_bare"]
    assert "hook on" in res.stdout and "hook off" in res.stdout
    assert res.stdout.count("| issue 18 target |") == 2
    assert res.stdout.count("| ours |") == 2 and res.stdout.count("| bare |") == 2
    assert res.stdout.count("| floor |") == 2 and res.stdout.count("floor ÷ bare") == 2
    assert report["machine"]["wrk"].startswith("wrk")


def test_cache_smoke_counts_hits_and_misses(tmp_path: Path) -> None:
    res, report = run_compare(tmp_path, "cache", "--duration", "1", "--warmup", "0", "--connections", "4")
    assert res.returncode == 0, res.stdout + res.stderr
    cache = report["cache"]
    for model in ("sum", "slow"):
        assert cache[f"miss_{model}"]["predictions"] > 0 and cache[f"hit_{model}"]["predictions"] > 0
        assert cache[f"gain_{model}"] > 0
    assert cache["gain"] == cache["gain_slow"]


def test_rejects_unknown_experiment_and_target(tmp_path: Path) -> None:
    for argv in (
        ["nosuch"],
        ["comparison", "--only", "ours,triton"],
        ["comparison", "--same-input", "--hook", "off"],
    ):
        res = subprocess.run(
            [sys.executable, str(REPO / "bench" / "compare.py"), *argv],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO,
        )
        assert res.returncode == 2
        assert "usage:" in res.stderr
        assert any(m in res.stderr for m in ("unknown experiment", "--only", "use --hook on"))


def test_a_compiled_run_without_a_compiler_says_what_is_missing(tmp_path: Path) -> None:
    cmd = [sys.executable, str(REPO / "bench" / "compare.py"), "comparison", "--only", "ours", "--compiled"]
    env = {**os.environ, "CC": str(tmp_path / "no-such-cc")}
    res = subprocess.run(
        cmd + ["--out", str(tmp_path / "r.json")], capture_output=True, text=True, timeout=60, env=env
    )
    assert res.returncode == 2, res.stdout + res.stderr
    assert "--compiled: cannot compile the hot path: no C compiler" in res.stdout + res.stderr
    assert not (tmp_path / "r.json").exists()  # nothing measured, nothing written
