"""User error paths of the local backend: each gives a ClipperException with a clear message."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import pytest
import requests

from clipper_admin import ClipperConnection, ClipperException, LocalContainerManager

from .admin_local_fixtures import cluster_processes, new_manager, start_cluster, wait_for

pytestmark = pytest.mark.slow


def test_connect_to_missing_cluster(tmp_path):
    conn = ClipperConnection(LocalContainerManager("absent", state_dir=tmp_path))
    with pytest.raises(ClipperException) as e:
        conn.connect()
    msg = str(e.value)
    assert msg.startswith("Cluster absent does not exist")
    assert str(tmp_path / "absent" / "cluster.json") in msg and "start_clipper()" in msg
    assert conn.connected is False


def test_port_in_use(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        cm = new_manager("busy", tmp_path)
        cm.clipper_management_port = busy
        with pytest.raises(
            ClipperException, match=f"^Port {busy} \\(clipper_management_port\\) is already in use"
        ):
            ClipperConnection(cm).start_clipper()
    assert not (tmp_path / "busy" / "cluster.json").exists()


def test_bad_arguments(tmp_path):
    with pytest.raises(ClipperException, match="Invalid cluster_name"):
        LocalContainerManager("../escape", state_dir=tmp_path)
    cm = new_manager("dup", tmp_path)
    cm.clipper_rpc_port = cm.clipper_query_port
    with pytest.raises(ClipperException, match="ports must differ"):
        ClipperConnection(cm).start_clipper()
    with pytest.raises(ClipperException, match="num_frontend_replicas=1"):
        ClipperConnection(new_manager("many", tmp_path)).start_clipper(num_frontend_replicas=2)


def test_crashing_frontend_reports_its_log_and_cleans_up(tmp_path):
    conn = ClipperConnection(new_manager("crash", tmp_path))
    with pytest.raises(ClipperException) as e:
        conn.start_clipper(cache_size=-1)  # the query frontend refuses a negative cache size
    msg = str(e.value)
    assert "query-0 (exit code" in msg and "crashed while starting" in msg
    assert "prediction cache size must be >= 0" in msg  # the last lines of its log
    assert not (tmp_path / "crash" / "cluster.json").exists()
    assert not conn.cm.dir.supervisor_alive()


def test_second_start_and_a_killed_supervisor(tmp_path):
    conn = start_cluster("twice", tmp_path)
    root = conn.cm.dir.root
    try:
        with pytest.raises(
            ClipperException, match="^Cluster twice cannot be started because it already exists"
        ):
            ClipperConnection(new_manager("twice", tmp_path)).start_clipper()
        conn.register_application("kept", "doubles", "0", 1000)
        # SIGKILL the supervisor: its processes keep serving (no parent-death signal)
        sup = conn.cm.dir.supervisor_pid()
        children = {p: s["pid"] for p, s in conn.cm.dir.read_status().items()}
        os.kill(sup, signal.SIGKILL)
        wait_for(lambda: not conn.cm.dir.supervisor_alive(), what="supervisor gone")
        assert cluster_processes(root) == set(children.values())
        assert conn.get_all_apps() == ["kept"]
        # the next start_clipper() starts a new supervisor that adopts them: same processes, same
        # store; the recorded cluster comes back (the new manager's other ports are not used)
        conn = start_cluster("twice", tmp_path)
        assert conn.cm.dir.supervisor_pid() not in (None, sup)
        assert {p: s["pid"] for p, s in conn.cm.dir.read_status().items()} == children
        assert cluster_processes(root) == set(children.values())  # nothing started twice
        assert conn.get_all_apps() == ["kept"]
        assert "adopted query-0" in (root / "logs" / "supervisor.log").read_text()
    finally:
        conn.stop_all()
    assert cluster_processes(root) == set()  # stop_all stops the adopted processes too
    assert not (root / "config.db").exists()  # the explicit stop_all still cleans up


def test_a_cluster_whose_processes_all_died_comes_back_on_connect(tmp_path):
    """A reboot (or killpg): connect() restarts everything from the recorded state, store kept."""
    conn = start_cluster("reboot", tmp_path)
    root = conn.cm.dir.root
    try:
        conn.register_application("kept", "doubles", "0", 1000)
        os.killpg(conn.cm.dir.supervisor_pid(), signal.SIGKILL)
        wait_for(lambda: not cluster_processes(root), what="every process gone")
        wait_for(lambda: not conn.cm.dir.supervisor_alive(), what="the supervisor gone")
        again = ClipperConnection(LocalContainerManager("reboot", state_dir=tmp_path))
        again.connect()
        assert again.get_all_apps() == ["kept"]
        assert conn.cm.dir.supervisor_alive()
    finally:
        conn.stop_all()
    assert cluster_processes(root) == set()


def test_stop_all_without_a_supervisor_stops_what_it_left_running(tmp_path):
    conn = start_cluster("orphans", tmp_path)
    root = conn.cm.dir.root
    children = cluster_processes(root)
    assert len(children) == 2
    os.kill(conn.cm.dir.supervisor_pid(), signal.SIGKILL)
    wait_for(lambda: not conn.cm.dir.supervisor_alive(), what="the supervisor gone")
    assert cluster_processes(root) == children  # still serving
    ClipperConnection(LocalContainerManager("orphans", state_dir=tmp_path)).stop_all()
    wait_for(lambda: not cluster_processes(root), what="the processes stopped")
    assert not (root / "cluster.json").exists()


def test_a_supervisor_that_cannot_be_restarted_is_a_clipper_exception(tmp_path):
    conn = start_cluster("moved", tmp_path)
    try:
        os.killpg(conn.cm.dir.supervisor_pid(), signal.SIGKILL)
        wait_for(lambda: not conn.cm.dir.supervisor_alive(), what="the supervisor gone")
        info = conn.cm.dir.read_cluster()
        conn.cm.dir.write_cluster({**info, "python": str(tmp_path / "gone" / "python3")})  # venv removed
        with pytest.raises(ClipperException, match="cannot start its supervisor with .*gone/python3"):
            ClipperConnection(LocalContainerManager("moved", state_dir=tmp_path)).connect()
    finally:
        conn.stop_all()


def test_a_failed_start_keeps_an_existing_store(tmp_path):
    cm = new_manager("keep", tmp_path)
    cm.dir.root.mkdir(parents=True)
    cm.dir.store_path.write_bytes(b"not yet a cluster's, still not ours to delete")
    with pytest.raises(ClipperException):
        ClipperConnection(cm).start_clipper(cache_size=-1)  # the query frontend refuses it
    assert cm.dir.store_path.exists()
    assert not cm.dir.cluster_file.exists()


def test_admin_token(tmp_path):
    conn = start_cluster("secure", tmp_path, admin_token="s3cret")
    try:
        admin = conn.cm.get_admin_addr()
        r = requests.post(f"http://{admin}/admin/get_all_applications", json={"verbose": False}, timeout=10)
        assert r.status_code == 401
        conn.register_application("app", "doubles", "0", 1000)
        assert oct((tmp_path / "secure" / "cluster.json").stat().st_mode & 0o777) == "0o600"
        script = (
            "import sys\n"
            "from clipper_admin import ClipperConnection, LocalContainerManager\n"
            "c = ClipperConnection(LocalContainerManager('secure', state_dir=sys.argv[1]))\n"
            "c.connect()\n"
            "print(c.get_all_apps())\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=60
        )
        assert out.stdout.strip() == "['app']", out.stderr
    finally:
        conn.stop_all()


def test_unreachable_cluster_is_a_clipper_exception(tmp_path):
    conn = start_cluster("gone", tmp_path)
    conn.stop_all()
    with pytest.raises(ClipperException, match="Could not reach the Clipper management frontend") as e:
        conn.get_all_apps()
    assert isinstance(e.value, requests.exceptions.ConnectionError)  # what the original raised
