"""The health gate on a real local cluster: a new version whose predict raises never takes traffic."""

from __future__ import annotations

import json
import threading

import pytest

from tests.integration.test_reconciler import clipper, conn_for, manifests, predict, workspace  # noqa: F401

pytestmark = pytest.mark.slow

HEALTH = "  health: {input: [1.0, 2.0], timeoutSeconds: 5}\n"
BROKEN_SRC = "def predict(xs):\n    raise ValueError('this model is broken')\n"


def with_health(ports) -> str:
    docs = manifests(ports)
    return docs.replace("  replicas: 1\n", "  replicas: 1\n" + HEALTH, 1)


def test_a_model_whose_predict_raises_never_takes_traffic(workspace):  # noqa: F811
    work, env, ports = workspace
    f = str(work / "all.yaml")
    (work / "all.yaml").write_text(with_health(ports))
    clipper("apply", "-f", f, env=env, check=0)
    assert predict(ports[0])[1]["output"] == 3.0
    conn = conn_for(env, ports)
    serving = conn.get_current_model_version("sum-model")
    ok = json.loads(clipper("status", "-f", f, "--output", "json", env=env, check=0).stdout)
    assert ok["ok"] and {(o["sync"]["status"], o["health"]["status"]) for o in ok["objects"]} == {
        ("Synced", "Healthy")
    }

    (work / "models" / "sum_model.py").write_text(BROKEN_SRC)
    failures: list[object] = []
    answers = 0
    stop = threading.Event()

    def hammer() -> None:
        nonlocal answers
        while not stop.is_set():
            code, body = predict(ports[0])
            answers += 1
            if code != 200 or body.get("default") or body.get("output") != 3.0:
                failures.append((code, body))

    t = threading.Thread(target=hammer)
    t.start()
    try:
        proc = clipper("apply", "-f", f, env=env)
    finally:
        stop.set()
        t.join(timeout=30)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "health check failed" in out and "this model is broken" in out, out
    assert failures == [] and answers > 0
    # the previous version keeps serving; the broken one is registered aside, without replicas
    assert conn.get_current_model_version("sum-model") == serving
    assert {r["model_version"] for r in conn.get_all_model_replicas(verbose=True)} == {serving}
    assert "clipper-health-sum-model" not in conn.get_all_apps()
    assert predict(ports[0])[1]["output"] == 3.0

    # status: the model is Degraded (its new version does not serve) and OutOfSync; exit 1
    proc = clipper("status", "-f", f, "--output", "json", env=env, check=1)
    model = next(o for o in json.loads(proc.stdout)["objects"] if o["kind"] == "Model")
    assert (model["sync"]["status"], model["health"]["status"]) == ("OutOfSync", "Degraded"), model
    assert "does not serve" in model["health"]["reason"] and model["versions"]["current"] == serving
    # the table fits a narrow terminal: cells wrap, nothing is cut with an ellipsis
    table = clipper("status", "-f", f, env={**env, "COLUMNS": "70"}, check=1).stdout
    assert "…" not in table and "Degraded" in table and max(map(len, table.splitlines())) <= 70, table
