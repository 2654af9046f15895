"""A rogue DEALER sprays random, truncated and lying frames at a live query frontend's RPC port
while real predictions keep succeeding (tests/unit/test_rpc_server.py covers the RpcServer alone;
this is the whole frontend: dispatcher, routing table and store rows included)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.cluster_fixtures import Cluster, make_model_dir, wait_for

from .load import Load
from .peers import Sprayer

pytestmark = pytest.mark.slow


def double(xs):
    return [repr(2.0 * float(sum(x))) for x in xs]


def test_rogue_peer_spraying_garbage_changes_nothing(tmp_path: Path):
    c = Cluster(tmp_path, f"sqlite:///{tmp_path}/config.db")
    sprayers: list[Sprayer] = []
    try:
        c.start_mgmt()
        c.start_query_frontend()
        c.add_app("a", "doubles", 5_000_000)
        c.add_model("m", "1", "doubles")
        c.link("a", "m")
        c.start_container(make_model_dir(tmp_path, "m", double), "m", "1", "doubles")
        c.wait_serving("a", {"input": [1.0]})
        containers_before = c.containers()
        sprayers = [Sprayer(c.rpc_port, seed=s, keys=c.rpc_keys) for s in (1, 2)]
        for s in sprayers:
            s.start()
        with Load(f"{c.url}/a/predict", n=3) as load:
            wait_for(lambda: load.sent >= 300 and all(s.sent >= 2000 for s in sprayers), 90, "load and spray")
        for s in sprayers:
            s.stop()
        assert len(load.results) == load.sent
        assert not load.non_200()[:3]
        assert not load.defaults()[:3]
        for a in load.results:  # every answer is the right one for its own input
            assert a.body["output"] == 2.0 * sum(a.request["input"]), a
        # State is intact: the same single replica, no ghost rows, and the frontend still serves.
        assert c.containers() == containers_before
        assert c.wait_serving("a", {"input": [5.0]})["output"] == 10.0
        assert c.qf is not None and c.qf.poll() is None
    except BaseException:
        print(c.log_tail())
        raise
    finally:
        for s in sprayers:
            s.stop()
        c.close()
