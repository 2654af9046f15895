"""The apply lease and the ownership records in the cluster's own store (issue 14), on a real local
cluster. A second "machine" is a second reconciler workspace: the same cluster reached through its
management API, with a local state directory of its own (no shared lock file, no shared apps.json)."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from reconciler.errors import ReconcilerError
from tests.integration.test_reconciler import clipper, manifests, workspace  # noqa: F401
from tests.reliability.test_security import APPLY_MODEL_SRC, Booby, _manifests

pytestmark = pytest.mark.slow


def other_machine(files: list[str], env: dict[str, str], state: Path, monkeypatch):
    """A target for the same cluster whose local state (lock file, local records) lives in ``state``."""
    from reconciler.engine import load_target

    monkeypatch.setenv("CLIPPER_HOME", env["CLIPPER_HOME"])  # how this process reaches the cluster
    t = load_target(files)
    t.cluster_dir = state
    return t


HOLDER = """
import sys, time
from clipper_admin import ClipperConnection, LocalContainerManager
from reconciler.clipper_cluster import ClipperCluster
from reconciler.lock import cluster_lease

conn = ClipperConnection(LocalContainerManager(cluster_name="rt", state_dir=sys.argv[1]))
conn.connect()
with cluster_lease(ClipperCluster(conn), timeout=0, ttl_s=2.0, holder="ci@runner-1 pid 1"):
    print("held", flush=True)
    time.sleep(600)
"""


def test_two_machines_share_the_lease_and_the_records(workspace, tmp_path, monkeypatch):  # noqa: F811
    work, env, ports = workspace
    f = str(work / "all.yaml")
    clipper("apply", "-f", f, env=env, check=0)  # machine A (the CLI) creates the cluster
    cluster_dir = Path(env["CLIPPER_HOME"]) / "rt"
    assert not (cluster_dir / "reconciler" / "apps.json").exists()  # the records are the cluster's

    from reconciler.engine import apply, plan_for

    b = other_machine([f], env, tmp_path / "machine-b", monkeypatch)
    plan, obs = plan_for(b, "rt", prune=True)
    assert not plan.has_changes and not plan.conflicts  # B sees A's objects as the reconciler's
    assert obs.app_owners["hello"].owner == "rt"

    # a holder on a third machine takes the lease, then dies with SIGKILL in the middle of its apply
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, env["CLIPPER_HOME"]], env=env,
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(ReconcilerError, match=r"cluster's apply lease \(ci@runner-1 pid 1\)"):
            apply(b, "rt", lock_timeout=0)
        refused = clipper("apply", "-f", f, "--lock-timeout", "0", env=env)  # A too, through the CLI
        assert refused.returncode != 0
        assert "another apply holds the cluster's apply lease (ci@runner-1 pid 1)" in " ".join(
            (refused.stdout + refused.stderr).split()
        )
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    # B's change: it waits until the dead holder's lease expires, then applies
    (work / "all.yaml").write_text(manifests(ports, replicas=2))
    waited: list[object] = []
    b = other_machine([f], env, tmp_path / "machine-b", monkeypatch)
    done = apply(b, "rt", lock_timeout=60, on_lock_wait=waited.append)
    assert waited == ["cluster lease held by ci@runner-1 pid 1"]
    assert [a.ref for a in done.changes] == ["Model/sum-model"]
    # A agrees with what B did: nothing to do, nothing in conflict
    assert clipper("diff", "-f", f, env=env).returncode == 0
    assert not (tmp_path / "machine-b" / "reconciler" / "apps.json").exists()


def test_an_opt_out_cluster_keeps_the_records_local_so_a_forged_record_is_ignored(tmp_path):
    """adminAuth: none: anybody can write the cluster's store through /admin/put_record. A forged
    ownership record there claiming the attacker's registered version must not make ``clipper apply``
    start it: for such a cluster the records stay in the owner-only local file."""
    home, work = tmp_path / "home", tmp_path / "work"
    (work / "models").mkdir(parents=True)
    (work / "models" / "sum_model.py").write_text(APPLY_MODEL_SRC)
    env = {**os.environ, "CLIPPER_HOME": str(home)}
    env.pop("CLIPPER_ADMIN_TOKEN", None)
    from clipper.net import free_port

    ports = (free_port(), free_port(), free_port())
    f = work / "all.yaml"
    auth = ", adminAuth: none"
    f.write_text(_manifests(ports, "1", auth))
    try:
        clipper("apply", "-f", str(f), env=env, check=0)
        local = home / "victim" / "reconciler" / "apps.json"
        assert local.stat().st_mode & 0o777 == 0o600
        body = json.loads(local.read_text())
        marker = tmp_path / "attacker-code-ran"
        evil = tmp_path / "attacker" / "model"
        evil.mkdir(parents=True)
        (evil / "func.pkl").write_bytes(pickle.dumps(Booby(marker)))
        admin = f"http://127.0.0.1:{ports[1]}/admin"
        r = requests.post(f"{admin}/add_model", timeout=10, json={
            "model_name": "sum-model", "model_version": "2", "input_type": "doubles", "labels": [],
            "container_name": f"local:{evil}", "model_data_path": "DEPRECATED", "batch_size": -1})  # fmt: skip
        assert r.status_code == 200, r.text
        # the forged record: version 2 is "the reconciler's", with the attacker's image
        forged = json.loads(json.dumps(body))
        rec = next(iter(forged["models"]["sum-model"].values()))
        forged["models"]["sum-model"]["2"] = {**rec, "image": f"local:{evil}"}
        r = requests.post(f"{admin}/put_record", timeout=10, json={
            "namespace": "reconciler", "key": "ownership", "value": json.dumps(forged)})  # fmt: skip
        assert r.status_code == 200, r.text  # no token on this cluster: anybody may write
        f.write_text(_manifests(ports, "2", auth))
        out = clipper("apply", "-f", str(f), env=env)
        assert out.returncode != 0
        text = " ".join((out.stdout + out.stderr).split())
        assert (
            "Model/sum-model version 2 is registered but was not deployed by this cluster's clipper apply"
            in text
        )
        assert not marker.exists()
    finally:
        clipper("delete", "-f", str(f), "--cluster", env=env)
