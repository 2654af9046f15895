"""A model function that hangs, on the local backend (real processes): the query caught in it gets
the default within its objective, the replica is reported unhealthy (and the reconciler sees the
model short of replicas) while hung, the container's watchdog ends it after CLIPPER_PREDICT_TIMEOUT,
the supervisor restarts it, and other inputs are answered again.

Bounds are generous (this shared 2-core machine is noisy): the frontend suspends the replica after
its --batch-timeout (4 s), the container exits after CLIPPER_PREDICT_TIMEOUT (8 s here).
"""

from __future__ import annotations

import os
import time

import pytest
import requests

from clipper_admin.deployers import python as python_deployer
from reconciler.clipper_cluster import ClipperCluster
from reconciler.observed import observe
from tests.integration.admin_local_fixtures import predict, start_cluster, wait_for

pytestmark = pytest.mark.slow

PREDICT_TIMEOUT_S = 8
PROC = "model/hang-model/1/0"
SLO_DEFAULT = "Failed to retrieve a prediction response within the specified latency SLO"


def upper_or_hang(xs):
    import time as _t

    out = []
    for x in xs:
        if x == b"hang":
            _t.sleep(3600)
        out.append(x.decode().upper())
    return out


@pytest.fixture(scope="module")
def conn(tmp_path_factory):
    home = tmp_path_factory.mktemp("clipper_home")
    saved = {k: os.environ.get(k) for k in ("CLIPPER_HOME", "CLIPPER_PREDICT_TIMEOUT")}
    os.environ["CLIPPER_HOME"] = str(home)
    os.environ["CLIPPER_PREDICT_TIMEOUT"] = str(PREDICT_TIMEOUT_S)  # the supervisor passes it on
    conn = start_cluster("hung", home)
    try:
        conn.register_application(
            name="echo", input_type="strings", default_output="DEFAULT", slo_micros=1_000_000
        )
        python_deployer.deploy_python_closure(
            conn, name="hang-model", version=1, input_type="strings", func=upper_or_hang
        )
        conn.link_model_to_app(app_name="echo", model_name="hang-model")
        assert predict(conn, "echo", {"input": "ok"})["output"] == "OK"
        yield conn
    finally:
        conn.stop_all()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def replica_health(conn) -> list[bool]:
    return [
        r["healthy"] for r in conn.get_all_model_replicas(verbose=True) if r["model_name"] == "hang-model"
    ]


def test_a_hung_replica_is_reported_unhealthy_then_restarted(conn):
    before = conn.cm.dir.read_status()[PROC]
    assert before["state"] == "running" and replica_health(conn) == [True]

    t0 = time.monotonic()
    r = requests.post(f"http://{conn.get_query_addr()}/echo/predict", json={"input": "hang"}, timeout=30)
    waited = time.monotonic() - t0
    body = r.json()
    assert r.status_code == 200 and body["default"] is True and body["output"] == "DEFAULT"
    assert body["default_explanation"] == SLO_DEFAULT
    assert waited < 1.0 + 4.0, f"the hung query waited {waited:.1f} s (objective 1 s)"

    # Past the frontend's --batch-timeout: out of rotation, listed as unhealthy, not counted.
    wait_for(lambda: replica_health(conn) == [False], 15, "the hung replica reported unhealthy")
    assert (
        observe(ClipperCluster(conn), {}).models["hang-model"]["1"].replicas == 0
    )  # clipper diff: short of replicas

    # The container's watchdog ends it; the supervisor starts a new process.
    def restarted():
        s = conn.cm.dir.read_status()[PROC]
        return s["state"] == "running" and s["pid"] not in (None, before["pid"]) and s

    after = wait_for(restarted, PREDICT_TIMEOUT_S + 60, "the supervisor to restart the hung replica")
    assert after["restarts"] > before["restarts"]
    assert after["last_exit"] == 4
    assert predict(conn, "echo", {"input": "again"}, timeout=60)["output"] == "AGAIN"
    # The dead replica's row goes once the frontend notices its silence (~3 s).
    wait_for(lambda: replica_health(conn) == [True], 15, "only the new, healthy replica listed")
    log = conn.cm.dir.log_file(PROC).read_text()
    assert "longer than CLIPPER_PREDICT_TIMEOUT (8 s): the function is hung; exiting with code 4" in log
