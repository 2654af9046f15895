"""Redis restarted under the frontends (the local-suite stand-in for the Docker backend's Redis
container): a redis-server with ``--appendonly yes`` is stopped and started again on the same port
and directory; the state is kept and both frontends carry on by themselves."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import redis
import requests

from clipper.net import free_port
from tests.integration.cluster_fixtures import Cluster, make_model_dir, wait_for

pytestmark = pytest.mark.slow


def triple(xs):
    return [repr(3.0 * float(sum(x))) for x in xs]


class AofRedis:
    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.dir = root / "redis"
        self.dir.mkdir()
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.dir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        r = redis.Redis(port=self.port)
        wait_for(r.ping, 15, "redis-server")
        r.close()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


@pytest.fixture
def setup(tmp_path):
    rs = AofRedis(tmp_path)
    rs.start()
    c = Cluster(tmp_path, f"redis://127.0.0.1:{rs.port}")
    try:
        c.start_mgmt()
        c.start_query_frontend()
        c.add_app("a", "doubles", 5_000_000)
        c.add_model("t", "1", "doubles")
        c.link("a", "t")
        c.start_container(make_model_dir(tmp_path, "t", triple), "t", "1", "doubles")
        assert c.wait_serving("a", {"input": [1.0]})["output"] == 3.0
        yield c, rs
    except BaseException:
        print(c.log_tail())
        raise
    finally:
        c.close()
        rs.stop()


def admin_state(c: Cluster) -> tuple:
    return (
        c.admin_call("get_all_applications", {"verbose": True}).json(),
        c.admin_call("get_all_models", {"verbose": True}).json(),
        c.admin_call("get_linked_models", {"app_name": "a"}).json(),
    )


def test_state_kept_and_frontends_reconnect_by_themselves(setup):
    c, rs = setup
    before = admin_state(c)
    rs.stop()
    # Predictions do not need the store while it is down: the routing table is in memory.
    assert c.predict("a", {"input": [2.0]}).json()["output"] == 6.0
    # An admin call without a store is an error answer, not a hang or a crash.
    r = c.http.post(f"{c.admin}/get_all_applications", json={"verbose": False}, timeout=30)
    assert r.status_code >= 500
    rs.start()

    def admin_ok():
        try:
            return c.http.post(f"{c.admin}/get_all_applications", json={"verbose": True}, timeout=5).ok
        except requests.RequestException:
            return False

    wait_for(admin_ok, 30, "the management frontend to reach the restarted Redis")
    assert admin_state(c) == before
    # A change made after the restart reaches the query frontend (its subscription reconnected).
    c.add_app("late", "doubles", 5_000_000)
    c.link("late", "t")
    assert c.wait_serving("late", {"input": [1.0, 1.0]}, timeout=30)["output"] == 6.0
    assert c.wait_serving("a", {"input": [4.0]})["output"] == 12.0
    assert c.qf is not None and c.qf.poll() is None
