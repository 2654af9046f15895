"""Live updates on a real local cluster while predictions keep flowing: ``clipper watch -f FILE``
rolls out edits of the model's code (not only of the manifest), and an application's default output
and SLO change in place (``/admin/update_app``), with no request failing meanwhile."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import requests

from tests.integration.test_reconciler import (
    MODEL_SRC,
    clipper,
    conn_for,
    manifests,
    workspace,  # noqa: F401  (the fixture)
)
from tests.unit.test_config_store import wait_for as wait_until

pytestmark = pytest.mark.slow

Answer = tuple[int, dict[str, Any]]


def predict(port: int, x: tuple[float, ...] = (1.0, 2.0)) -> Answer:
    r = requests.post(f"http://127.0.0.1:{port}/hello/predict", json={"input": list(x)}, timeout=10)
    return r.status_code, r.json()


@contextmanager
def load(
    port: int, threads: int = 2, retry_s: float = 0.0, gaps: list[float] | None = None
) -> Iterator[list[Answer]]:
    """Predictions posted continuously from ``threads`` threads; yields every answer (so far).

    ``retry_s`` > 0: a refused connection is retried (every 50 ms, up to ``retry_s``) as a client
    riding over a frontend's restart would; each retried stretch's length goes to ``gaps``."""
    answers: list[Answer] = []
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            first_failure: float | None = None
            while True:
                try:
                    answers.append(predict(port))
                except requests.ConnectionError as e:
                    now = time.monotonic()
                    first_failure = first_failure or now
                    if now - first_failure < retry_s and not stop.is_set():
                        time.sleep(0.05)
                        continue
                    answers.append((0, {"error": str(e)}))
                except requests.RequestException as e:  # a failed request
                    answers.append((0, {"error": str(e)}))
                if first_failure is not None and gaps is not None:
                    gaps.append(time.monotonic() - first_failure)
                break

    workers = [threading.Thread(target=hammer, daemon=True) for _ in range(threads)]
    for w in workers:
        w.start()
    try:
        yield answers
    finally:
        stop.set()
        for w in workers:
            w.join(timeout=30)


def test_watch_rolls_out_edits_of_the_model_source_and_its_local_modules(workspace):  # noqa: F811
    work, env, ports = workspace
    f = str(work / "all.yaml")
    clipper("apply", "-f", f, env=env, check=0)
    # a drift check far away: only watching the source files can notice the edits below
    watcher = subprocess.Popen([sys.executable, "-m", "reconciler", "--no-color", "watch", "-f", f, "--interval", "600"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(watcher.stdout), daemon=True)  # type: ignore[arg-type]
    reader.start()
    try:
        with load(ports[0]) as answers:
            assert wait_until(lambda: len(answers) > 20, 30)
            # the watch is up: its first pass found nothing to do, and it says what it watches
            assert wait_until(lambda: "watching" in "".join(lines), 60), lines
            # the model's file, not the manifest
            (work / "models" / "sum_model.py").write_text(MODEL_SRC.format(factor=10))
            assert wait_until(lambda: answers[-1][1].get("output") == 30.0, 180), answers[-1]
            # a local module the model now imports is watched from then on
            (work / "models" / "factors.py").write_text("FACTOR = 100\n")
            (work / "models" / "sum_model.py").write_text(
                "from factors import FACTOR\n\n\ndef predict(xs):\n    return [str(sum(x) * FACTOR) for x in xs]\n"
            )
            assert wait_until(lambda: answers[-1][1].get("output") == 300.0, 180), answers[-1]
            (work / "models" / "factors.py").write_text("FACTOR = 1000\n")
            assert wait_until(lambda: answers[-1][1].get("output") == 3000.0, 180), answers[-1]
        bad = [a for a in answers if a[0] != 200 or a[1].get("default")]
        assert bad == [], bad[:5]
        assert {a[1]["output"] for a in answers} <= {3.0, 30.0, 300.0, 3000.0}
    finally:
        watcher.send_signal(signal.SIGINT)
        try:
            assert watcher.wait(timeout=30) == 0
        finally:
            watcher.kill()
            reader.join(timeout=30)
            out = "".join(lines)
            print(out)  # shown when the test fails
    assert "factors.py" in out, out  # "also watching .../models/factors.py"
    assert "apply failed" not in out, out


SLOW_WHEN_ASKED = """\
import time


def predict(xs):
    out = []
    for x in xs:
        if x[0] > 100:  # a slow query on demand, to miss a tight SLO
            time.sleep(0.5)
        out.append(str(sum(x)))
    return out
"""


def test_apply_changes_an_apps_default_output_and_slo_in_place_under_load(workspace):  # noqa: F811
    work, env, ports = workspace
    f = work / "all.yaml"
    (work / "models" / "sum_model.py").write_text(SLOW_WHEN_ASKED)
    clipper("apply", "-f", str(f), env=env, check=0)
    conn = conn_for(env, ports)
    slow = predict(ports[0], (200.0, 1.0))[1]
    assert (slow["output"], slow["default"]) == (201.0, False)  # 0.5 s is within the 2 s SLO

    # the default output, then the SLO: each an in-place update of the app, not a relink
    edits = [
        manifests(ports).replace('defaultOutput: "-1"', 'defaultOutput: "fallback"'),
        manifests(ports)
        .replace('defaultOutput: "-1"', 'defaultOutput: "fallback"')
        .replace("latencySloMicros: 2000000", "latencySloMicros: 100000"),
    ]
    with load(ports[0], threads=3) as answers:
        assert wait_until(lambda: len(answers) > 20, 30)
        for text in edits:
            f.write_text(text)
            plan = json.loads(clipper("diff", "-f", str(f), "--output", "json", env=env).stdout)
            assert [(a["op"], a["kind"]) for a in plan["actions"] if a["op"] != "noop"] == [
                ("update", "Application")
            ]
            clipper("apply", "-f", str(f), env=env, check=0)
            time.sleep(1)  # keep the load on after the change
    bad = [a for a in answers if a[0] != 200 or a[1].get("default")]
    assert bad == [] and len(answers) > 100, (len(answers), bad[:5])
    assert {a[1]["output"] for a in answers} == {3.0}

    info = conn.get_app_info("hello")
    assert (info["default_output"], info["latency_slo_micros"], info["linked_models"]) == (
        "fallback",
        100000,
        ["sum-model"],
    )
    # the new SLO and default are in effect: a slow query (not cached) now answers the new default
    code, slow = predict(ports[0], (300.0, 1.0))
    assert (code, slow["output"], slow["default"]) == (200, "fallback", True), slow
    assert clipper("diff", "-f", str(f), env=env).returncode == 0
