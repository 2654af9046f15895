"""Smoke test of ``bench/image_build.py`` (issue 18: model image build time): one repetition with a
1 MiB package. It checks that the harness builds through the real path, sees the build cache where the
layer order promises it, and writes its numbers and PNG; never how fast (no timed assertion)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_image_build_bench_smoke(tmp_path: Path, docker_client) -> None:
    out = tmp_path / "image-build.json"
    res = subprocess.run(
        [sys.executable, str(REPO / "bench" / "image_build.py"), "--smoke", "--plot", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    report = json.loads(out.read_text())
    rep = report["image_build"]["repetitions"][0]
    for variant in ("no_requirements", "requirement"):
        cases = rep[variant]
        assert set(cases) == {"cold", "function_changed", "no_change", "requirement_added"}
        for row in cases.values():
            assert row["build_s"] > 0 and row["steps"] > 0
            assert sum(row["phases"].values()) > 0
        # the same function again: every step from the cache but the labels (a new version label)
        for step in cases["no_change"]["step_detail"]:
            if not step["instruction"].startswith(("FROM", "LABEL")):
                assert step["cached"], step
        # a new requirement: the wheels are installed again
        assert cases["requirement_added"]["phases"]["pip_install"] > 0
    with_req = rep["requirement"]
    # a new function with the same requirements: the wheels' copy and pip install are cached
    detail = {s["instruction"].split()[0] + " " + s["instruction"].split()[1]: s for s in
              with_req["function_changed"]["step_detail"]}  # fmt: skip
    assert detail["COPY wheels/"]["cached"] and detail["RUN pip"]["cached"]
    assert not detail["COPY model/"]["cached"]
    assert with_req["cold"]["context_mib"] >= 1
    assert Path(report["plot"]).is_file()
    # every image the bench built is gone again
    assert not [t for i in docker_client.images.list() for t in i.tags if t.startswith("bench-build-")]
