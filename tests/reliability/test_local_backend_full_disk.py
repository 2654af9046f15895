"""A full disk under CLIPPER_HOME while a replica crashes: the supervisor survives (it used to die of
ENOSPC in its status write, taking the cluster with it), the frontends keep answering, and the replica
is restarted once there is space again. CLIPPER_HOME is a small tmpfs (mounting needs root, as CI runs).
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import time

import pytest
import requests

from clipper_admin.deployers import python as python_deployer
from tests.integration.admin_local_fixtures import predict, start_cluster, wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs as CLIPPER_HOME needs root"),
]

REPLICA = "model/sum-model/1/0"


def feature_sum(xs):
    return [str(sum(x)) for x in xs]


@pytest.fixture
def small_home(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(home)], check=True)
    try:
        yield home
    finally:
        subprocess.run(["umount", "-l", str(home)], check=False)


def fill(path) -> None:
    """Write ``path`` until the file system is full."""
    with open(path, "wb", buffering=0) as f:
        for chunk in (1 << 20, 4096, 1):
            try:
                while True:
                    f.write(b"\0" * chunk)
            except OSError as e:
                assert e.errno == errno.ENOSPC
    with pytest.raises(OSError):
        (path.parent / "probe").write_bytes(b"x" * 8192)


def answers(url: str) -> bool:
    with contextlib.suppress(requests.RequestException):
        return requests.get(url, timeout=5).status_code == 200
    return False


def test_full_disk_while_a_replica_crashes(small_home):
    conn = start_cluster("full", small_home)
    d = conn.cm.dir
    try:
        conn.register_application(
            name="sum", input_type="doubles", default_output="-1.0", slo_micros=1_000_000
        )
        python_deployer.deploy_python_closure(
            conn, name="sum-model", version=1, input_type="doubles", func=feature_sum
        )
        conn.link_model_to_app(app_name="sum", model_name="sum-model")
        assert predict(conn, "sum", {"input": [1.0, 2.0]})["output"] == 3.0
        pid = d.read_status()[REPLICA]["pid"]

        fill(small_home / "filler")
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5  # several restart attempts and status writes fail meanwhile
        while time.monotonic() < deadline:
            assert d.supervisor_alive()
            time.sleep(0.2)
        assert answers(f"http://{conn.cm.get_admin_addr()}/admin/ping")
        assert answers(f"http://{conn.get_query_addr()}/health")
        r = requests.post(f"http://{conn.get_query_addr()}/sum/predict", json={"input": [1.0]}, timeout=10)
        assert r.status_code == 200, r.text

        (small_home / "filler").unlink()  # space is back: the status is published, the replica runs
        wait_for(
            lambda: (s := d.read_status().get(REPLICA, {}))["state"] == "running" and s["pid"] != pid,
            60,
            "the replica restarted",
        )
        assert predict(conn, "sum", {"input": [2.0, 3.0]}, timeout=60)["output"] == 5.0
        assert d.supervisor_alive()
        wait_for(
            lambda: "No space left on device" in (d.logs / "supervisor.log").read_text(),
            30,
            "the supervisor's report of the full disk",
        )
    finally:
        conn.stop_all()
