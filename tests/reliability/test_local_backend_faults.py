"""Process faults on the local backend (``LocalContainerManager`` + its supervisor), real processes:
a model replica SIGKILLed under load, the query frontend and the management frontend SIGKILLed.
(The Docker suite repeats the container faults; that is the Docker engineer's.)

The one timed bound is the issue's "predictions resume within 5 s" after the query frontend is
back: we assert 10 s (5 s + 5 s of margin for this shared 2-core machine) and print the measure.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from clipper_admin.deployers import python as python_deployer
from clipper_admin.local.state import MANAGEMENT, QUERY
from tests.integration.admin_local_fixtures import cluster_processes, predict, start_cluster, wait_for

from .load import Load

pytestmark = pytest.mark.slow

RESUME_BOUND_S = 5.0
MARGIN_S = 5.0
EXPLANATIONS = {
    "No connected models found for query",
    "Failed to retrieve a prediction response within the specified latency SLO",
}


def feature_sum(xs):
    return [str(sum(x)) for x in xs]


@pytest.fixture(scope="module")
def conn(tmp_path_factory):
    home = tmp_path_factory.mktemp("clipper_home")
    old = os.environ.get("CLIPPER_HOME")
    os.environ["CLIPPER_HOME"] = str(home)
    conn = start_cluster("faults", home)
    try:
        conn.register_application(
            name="sum", input_type="doubles", default_output="-1.0", slo_micros=1_000_000
        )
        python_deployer.deploy_python_closure(
            conn, name="sum-model", version=1, input_type="doubles", func=feature_sum, num_replicas=2
        )
        conn.link_model_to_app(app_name="sum", model_name="sum-model")
        assert predict(conn, "sum", {"input": [1.0, 2.0]})["output"] == 3.0
        yield conn
    finally:
        conn.stop_all()
        if old is None:
            os.environ.pop("CLIPPER_HOME", None)
        else:
            os.environ["CLIPPER_HOME"] = old


def restarted(conn, proc_id: str, old_pid: int) -> int | None:
    s = conn.cm.dir.read_status().get(proc_id, {})
    return s["pid"] if s.get("state") == "running" and s.get("pid") not in (None, old_pid) else None


def sigkill(conn, proc_id: str) -> int:
    pid = conn.cm.dir.read_status()[proc_id]["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: restarted(conn, proc_id, pid), 30, f"the supervisor to restart {proc_id}")
    return pid


def connected_replicas(conn) -> int:
    return len([r for r in conn.get_all_model_replicas(verbose=True) if r["model_name"] == "sum-model"])


def test_sigkilled_replica_under_load_loses_no_request(conn):
    url = f"http://{conn.get_query_addr()}/sum/predict"
    with Load(url, n=4) as load:
        wait_for(lambda: load.sent > 20, 30, "load running")
        sigkill(conn, "model/sum-model/1/0")
        wait_for(lambda: connected_replicas(conn) == 2, 30, "the restarted replica reconnected")
        time.sleep(0.5)
    assert len(load.results) == load.sent > 20
    assert not load.non_200()[:3]
    assert all(d["default_explanation"] in EXPLANATIONS for d in load.defaults())
    print(f"{load.sent} requests, {len(load.defaults())} defaults")


def test_query_frontend_restart_restores_config_and_predictions_resume(conn):
    addr = conn.get_query_addr()
    sigkill(conn, QUERY)
    session = requests.Session()
    wait_for(lambda: _ok(session, f"http://{addr}/health"), 30, "the restarted query frontend")
    t_up = time.monotonic()
    # The routing table comes from the store: the app is known at once (no 404).
    first = session.post(f"http://{addr}/sum/predict", json={"input": [0.5]}, timeout=10)
    assert first.status_code == 200, first.text

    def model_answer():
        r = session.post(f"http://{addr}/sum/predict", json={"input": [time.monotonic()]}, timeout=10)
        return r.status_code == 200 and not r.json()["default"]

    wait_for(model_answer, 30, "a model output after the restart")
    resumed = time.monotonic() - t_up
    print(f"predictions resumed {resumed:.2f} s after the query frontend answered /health")
    assert resumed < RESUME_BOUND_S + MARGIN_S
    wait_for(lambda: connected_replicas(conn) == 2, 30, "both replicas reconnected")


def _ok(session: requests.Session, url: str) -> bool:
    try:
        return session.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def test_management_frontend_restart_loses_nothing(conn):
    before = (
        conn.get_all_apps(verbose=True),
        conn.get_all_models(verbose=True),
        conn.get_linked_models("sum"),
        conn.get_current_model_version("sum-model"),
    )
    sigkill(conn, MANAGEMENT)
    wait_for(lambda: _ok(requests.Session(), f"http://{conn.cm.get_admin_addr()}/admin/ping"), 30, "ping")
    after = (
        conn.get_all_apps(verbose=True),
        conn.get_all_models(verbose=True),
        conn.get_linked_models("sum"),
        conn.get_current_model_version("sum-model"),
    )
    assert after == before
    conn.register_application(name="after", input_type="doubles", default_output="0", slo_micros=100_000)
    conn.link_model_to_app(app_name="after", model_name="sum-model")
    assert predict(conn, "after", {"input": [2.0, 2.0]})["output"] == 4.0


def test_killed_supervisor_loses_nothing_and_the_next_clipper_command_adopts_its_processes(conn):
    d = conn.cm.dir
    before = {p: s["pid"] for p, s in d.read_status().items()}
    store = (conn.get_all_apps(verbose=True), conn.get_all_models(verbose=True))
    sup = d.supervisor_pid()
    os.kill(sup, signal.SIGKILL)
    wait_for(lambda: not d.supervisor_alive(), 30, "the supervisor gone")
    # nothing depends on the supervisor: the cluster keeps serving
    assert cluster_processes(d.root) == set(before.values())
    assert predict(conn, "sum", {"input": [1.0, 2.0]})["output"] == 3.0

    # any `clipper` command (here `clipper get`: it connects) starts a new supervisor that adopts them
    out = subprocess.run(
        [str(Path(sys.executable).with_name("clipper")), "get", "apps", "--cluster", "faults", "--output", "json"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert sorted(a["name"] for a in json.loads(out.stdout)) == sorted(conn.get_all_apps())
    assert d.supervisor_alive() and d.supervisor_pid() != sup
    assert {p: s["pid"] for p, s in d.read_status().items()} == before  # adopted, none started twice
    assert cluster_processes(d.root) == set(before.values())
    assert (conn.get_all_apps(verbose=True), conn.get_all_models(verbose=True)) == store

    # the new supervisor restarts an adopted replica that dies, and the cluster answers again
    sigkill(conn, "model/sum-model/1/0")
    wait_for(lambda: connected_replicas(conn) == 2, 30, "the restarted replica reconnected")
    assert predict(conn, "sum", {"input": [2.0, 3.0]})["output"] == 5.0
