"""Who may be a replica, how large an RPC frame may be, and model errors out of band, end to end:
real query frontends and containers (tests/unit/test_rpc_server.py covers the RpcServer alone)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

from clipper.rpc.auth import RpcKeys
from tests.integration.cluster_fixtures import Cluster, make_model_dir, wait_for

from .load import Load
from .peers import FakeReplica, dealer

pytestmark = pytest.mark.slow

NO_MODEL = "No connected models found for query"


def double(xs):
    return [repr(2.0 * float(sum(x))) for x in xs]


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def serving_cluster(tmp_path: Path, rpc_auth: str = "curve", *qf_args: str) -> Cluster:
    c = Cluster(tmp_path, f"sqlite:///{tmp_path}/config.db", rpc_auth=rpc_auth)
    c.start_mgmt()
    c.start_query_frontend(*qf_args)
    c.add_app("a", "doubles", 5_000_000)
    c.add_model("m", "1", "doubles")
    c.link("a", "m")
    return c


def test_replicas_without_the_clusters_keys_never_register(tmp_path: Path):
    """The issue: any process reaching the RPC port registered as a replica of the live version and
    answered most user inputs. Now a rogue without keys, and one with keys of its own that knows the
    frontend's public key, fail the CURVE handshake: no input reaches them, every answer is the
    model's, and the frontend keeps serving while they keep reconnecting."""
    c = serving_cluster(tmp_path)
    rogues: list[FakeReplica] = []
    try:
        c.start_container(make_model_dir(tmp_path, "m", double), "m", "1", "doubles")
        c.wait_serving("a", {"input": [1.0]})
        containers_before = c.containers()
        assert c.rpc_keys is not None
        impostor = RpcKeys.generate()
        forged = RpcKeys(
            c.rpc_keys.server_public, impostor.client_public, client_secret=impostor.client_secret
        )
        rogues = [FakeReplica(c.rpc_port, "m", "1", "hang", keys=k) for k in (None, forged)]
        for r in rogues:
            r.start()
        with Load(f"{c.url}/a/predict", n=3) as load:
            wait_for(lambda: load.sent >= 100, 60, "100 predictions")
        assert len(load.results) == load.sent
        assert not load.non_200()[:3]
        assert not load.defaults()[:3]
        for a in load.results:
            assert a.body["output"] == 2.0 * sum(a.request["input"]), a
        assert all(r.requests == 0 and not r.registered.is_set() for r in rogues)
        assert c.containers() == containers_before
        wait_for(lambda: "failed the handshake" in c.log_tail(n=20000), 10, "the handshake warning")
        assert c.qf is not None and c.qf.poll() is None
    except BaseException:
        print(c.log_tail())
        raise
    finally:
        for r in rogues:
            r.stop()
        c.close()


def test_original_protocol_containers_need_the_clusters_opt_in(tmp_path: Path):
    """The independent spec container knows nothing of CURVE: refused by default (the app answers
    its default, no replica row), served once the cluster allows unauthenticated replicas."""
    secure = serving_cluster(tmp_path / "secure")
    try:
        secure.start_spec_container("m", "1", 3)
        time.sleep(2.0)  # the spec container heartbeats every 0.5 s: it would have registered by now
        r = secure.predict("a", {"input": [1.5, 2.0]}).json()
        assert r["default"] is True and r["default_explanation"] == NO_MODEL
        assert secure.containers() == []
    finally:
        secure.close()
    open_cluster = serving_cluster(tmp_path / "open", "none")
    try:
        open_cluster.start_spec_container("m", "1", 3)
        assert open_cluster.wait_serving("a", {"input": [1.5, 2.0]})["output"] == 3.5
    except BaseException:
        print(open_cluster.log_tail())
        raise
    finally:
        open_cluster.close()


def marker_model(xs):
    if float(xs[0][0]) < 0:
        raise ValueError("negative input")
    return ["\x00Eevil" if float(x[0]) == 1.0 else repr(float(x[0])) for x in xs]


def test_a_model_output_is_never_taken_for_an_error(tmp_path: Path):
    """An output starting with the bytes that used to mark an error is the model's answer, verbatim;
    a model that raises still gets the application's default with its reason."""
    c = serving_cluster(tmp_path)
    try:
        c.start_container(make_model_dir(tmp_path, "m", marker_model), "m", "1", "doubles")
        c.wait_serving("a", {"input": [2.0]})
        r = c.predict("a", {"input": [1.0]}).json()
        assert r["default"] is False and r["output"] == "\x00Eevil", r
        r = c.predict("a", {"input": [-1.0]}).json()
        assert r["default"] is True, r
        assert r["default_explanation"] == "Model error: ValueError: negative input"
    except BaseException:
        print(c.log_tail())
        raise
    finally:
        c.close()


def test_an_oversized_rpc_frame_disconnects_its_sender(tmp_path: Path):
    """The issue: an unregistered peer sending one 512 MiB frame grew the frontend to 1.2 GB. ZeroMQ
    now refuses a frame above --rpc-max-message-bytes from its length prefix, before buffering it:
    the sender is disconnected, the frontend's memory does not follow the frame, it keeps serving."""
    limit = 1 << 20
    c = serving_cluster(tmp_path, "none", "--rpc-max-message-bytes", str(limit))
    ctx = zmq.Context()
    sock = dealer(ctx, c.rpc_port, None)
    try:
        c.start_container(make_model_dir(tmp_path, "m", double), "m", "1", "doubles")
        c.wait_serving("a", {"input": [1.0]})
        assert c.qf is not None
        monitor = sock.get_monitor_socket(zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED)
        before = rss_bytes(c.qf.pid)
        big = b"x" * (48 << 20)
        sent = threading.Event()

        def send() -> None:
            sock.send_multipart([b"", big])
            sent.set()

        threading.Thread(target=send, daemon=True).start()
        events: list[int] = []

        def disconnected() -> bool:
            while monitor.poll(50):
                events.append(recv_monitor_message(monitor)["event"])
            return zmq.EVENT_DISCONNECTED in events

        wait_for(disconnected, 30, "the frontend to drop the sender of the oversized frame")
        time.sleep(0.5)
        grown = rss_bytes(c.qf.pid) - before
        assert grown < 16 << 20, f"the frontend grew by {grown} bytes for a refused frame"
        assert c.wait_serving("a", {"input": [5.0]})["output"] == 10.0
        assert c.qf.poll() is None
    except BaseException:
        print(c.log_tail())
        raise
    finally:
        ctx.destroy(linger=0)  # the socket and its monitor
        c.close()
