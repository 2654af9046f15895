"""Who may be a replica, how large an RPC frame may be, and model errors out of band, end to end:
real query frontends and containers (tests/unit/test_rpc_server.py covers the RpcServer alone)."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
import zmq
from zmq.utils.monitor import recv_monitor_message

from clipper.rpc.auth import RpcKeys
from clipper_admin.admin_client import AdminClient
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


def test_the_local_backend_hands_keys_only_to_its_replicas(tmp_path: Path):
    """LocalContainerManager: keys generated per cluster in an owner-only file whose path (never its
    content) goes into desired.json; the replicas it starts serve; a replica started by anyone else
    (the spec container) does not register. ``allow_unauthenticated_replicas=True`` admits it."""
    from clipper_admin.deployers import python as python_deployer
    from tests.integration.admin_local_fixtures import start_cluster

    spec = str(Path(__file__).resolve().parents[1] / "spec_container" / "spec_container.py")
    conn = start_cluster("keyed", tmp_path)
    procs = []
    try:
        cm = conn.cm
        keys_file = tmp_path / "keyed" / "rpc_keys.json"
        assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600
        keys = RpcKeys.read(keys_file)
        desired = (tmp_path / "keyed" / "desired.json").read_text()
        assert keys.server_secret not in desired and keys.client_secret not in desired
        assert str(keys_file) in desired
        conn.register_application("app", "doubles", "-1.0", 5_000_000)
        python_deployer.deploy_python_closure(conn, name="m", version=1, input_type="doubles", func=double)
        conn.link_model_to_app("app", "m")
        url = f"http://{cm.get_query_addr()}/app/predict"

        def ours() -> dict | bool:
            body = requests.post(url, json={"input": [2.0]}, timeout=10).json()
            return not body["default"] and body

        assert wait_for(ours, 30, "the cluster's replica serving")["output"] == 4.0
        # its replicas reach the frontend on the owner-only Unix socket in the cluster directory
        sock = (tmp_path / "keyed" / "rpc.sock").resolve()
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600
        assert json.loads((tmp_path / "keyed" / "cluster.json").read_text())["rpc_socket"] == str(sock)
        replica_log = next((tmp_path / "keyed" / "logs").glob("model-m-1-*.log")).read_text()
        assert f"serving for unix://{sock}" in replica_log, replica_log
        args = [sys.executable, spec, "127.0.0.1", str(cm.clipper_rpc_port), "m", "1", "3", "0.5"]
        procs.append(subprocess.Popen(args))
        time.sleep(2.0)
        assert len(_replica_rows(cm)) == 1  # ours; the spec container never registered
    finally:
        for p in procs:
            p.kill()
            p.wait()
        conn.stop_all()
    assert not keys_file.exists()  # stop_all removes the cluster's keys with its state
    conn = start_cluster("open", tmp_path, allow_unauthenticated_replicas=True)
    try:
        assert not (tmp_path / "open" / "rpc_keys.json").exists()
        assert json.loads((tmp_path / "open" / "cluster.json").read_text())["rpc_socket"] is None
        conn.register_application("app", "doubles", "-1.0", 5_000_000)
        r = requests.post(
            f"http://{conn.cm.get_admin_addr()}/admin/add_model",
            headers=AdminClient(conn.cm).headers(),
            json={"model_name": "spec", "model_version": "1", "labels": [], "input_type": "doubles",
                  "container_name": "original", "model_data_path": "DEPRECATED", "batch_size": -1},
            timeout=10,
        )  # fmt: skip
        assert r.status_code == 200, r.text
        conn.link_model_to_app("app", "spec")
        args = [sys.executable, spec, "127.0.0.1", str(conn.cm.clipper_rpc_port), "spec", "1", "3", "0.5"]
        procs = [subprocess.Popen(args)]
        url = f"http://{conn.cm.get_query_addr()}/app/predict"

        def served():
            body = requests.post(url, json={"input": [1.5, 2.0]}, timeout=10).json()
            return not body["default"] and body

        assert wait_for(served, 30, "the original-protocol container serving")["output"] == 3.5
    finally:
        for p in procs:
            p.kill()
            p.wait()
        conn.stop_all()


def _replica_rows(cm) -> list:
    r = requests.post(
        f"http://{cm.get_admin_addr()}/admin/get_all_containers",
        headers=AdminClient(cm).headers(),
        json={"verbose": False},
        timeout=10,
    )
    return r.json()


def test_a_cluster_manifest_opts_in_to_unauthenticated_replicas():
    from reconciler.backends import container_manager
    from reconciler.desired import DesiredState
    from schemas import Cluster

    def manager(spec: dict):
        cluster = Cluster.model_validate(
            {"apiVersion": "clipper.ai/v1", "kind": "Cluster", "metadata": {"name": "c"}, "spec": spec}
        )
        return container_manager(DesiredState("c", cluster.spec, {}, {}))

    assert manager({}).allow_unauthenticated_replicas is False
    assert manager({"allowUnauthenticatedReplicas": True}).allow_unauthenticated_replicas is True
