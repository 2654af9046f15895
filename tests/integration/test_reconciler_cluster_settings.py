"""Cluster settings are reconciled on a running local cluster: a changed ``cacheSizeBytes``, port or
admin token is planned (``diff`` names the field and exits 1), applied by restarting the affected
frontend while predictions continue, and in effect afterwards; a field that cannot change in place
is refused with its reason (exit 2)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import requests

from clipper.net import free_port
from tests.integration.test_reconciler import (
    clipper,
    manifests,
    workspace,  # noqa: F401  (the fixture)
)
from tests.integration.test_reconciler_live_updates import Answer, load

pytestmark = pytest.mark.slow


def with_spec(ports: tuple[int, int, int], extra: str) -> str:
    """The test manifests with ``extra`` (flow-style YAML fields) added to the Cluster spec."""
    return manifests(ports).replace(f"rpcPort: {ports[2]}}}", f"rpcPort: {ports[2]}, {extra}}}")


def query_argv(home: Path) -> list[str]:
    table = json.loads((home / "rt" / "desired.json").read_text())["processes"]
    return list(table["query-0"]["argv"])


def admin_status(port: int, token: str | None = None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    r = requests.post(
        f"http://127.0.0.1:{port}/admin/get_all_applications",
        json={"verbose": False},
        headers=headers,
        timeout=10,
    )
    return r.status_code


def settled(answers: list[Answer]) -> list[Answer]:
    return [a for a in answers if a[0] != 200 or a[1].get("default")]


def test_cache_size_token_and_port_changes_are_planned_and_applied(workspace):  # noqa: F811
    work, env, ports = workspace
    home = Path(env["CLIPPER_HOME"])
    f = work / "all.yaml"
    f.write_text(with_spec(ports, "adminAuth: none"))
    clipper("apply", "-f", str(f), env=env, check=0)
    assert admin_status(ports[1]) == 200  # open, as the manifest says

    # cacheSizeBytes: planned, then the query frontend restarts with it under load
    f.write_text(with_spec(ports, "adminAuth: none, cacheSizeBytes: 1048576"))
    diff = clipper("diff", "-f", str(f), env=env)
    assert diff.returncode == 1, diff.stdout + diff.stderr
    assert "cacheSizeBytes" in diff.stdout and "33554432" in diff.stdout and "1048576" in diff.stdout, (
        diff.stdout
    )
    gaps: list[float] = []
    with load(ports[0], retry_s=60, gaps=gaps) as answers:
        assert _wait(lambda: len(answers) > 10)
        began = time.monotonic()
        out = clipper("apply", "-f", str(f), env=env, check=0)
        took = time.monotonic() - began
        n = len(answers)
        assert _wait(lambda: len(answers) > n + 10)
    assert "Cluster/rt" in out.stdout + out.stderr, out.stdout + out.stderr
    argv = query_argv(home)
    assert argv[argv.index("--prediction-cache-size") + 1] == "1048576"
    # One query frontend: while it restarts, a client retrying refused connections waits (``gaps``),
    # then, until the replicas have reconnected, gets the default output; apply returns only after.
    assert [a for a in answers if a[0] != 200] == []
    assert settled(answers[n:]) == [], settled(answers[n:])[:5]
    defaults = settled(answers[:n])
    assert all("No connected models" in a[1]["default_explanation"] for a in defaults), defaults[:5]
    print(f"cache size change applied in {took:.1f} s; {len(answers)} predictions, none failed; "
          f"longest retried gap {max(gaps, default=0.0):.2f} s, {len(defaults)} default outputs while "
          "the replica reconnected")  # fmt: skip
    assert clipper("diff", "-f", str(f), env=env).returncode == 0

    # an admin token added: the management API requires it from then on
    f.write_text(with_spec(ports, "cacheSizeBytes: 1048576, adminToken: tok-abc123"))
    diff = clipper("diff", "-f", str(f), env=env)
    assert diff.returncode == 1 and "adminToken" in diff.stdout and "tok-abc123" not in diff.stdout, (
        diff.stdout
    )
    clipper("apply", "-f", str(f), env=env, check=0)
    assert admin_status(ports[1]) == 401
    assert admin_status(ports[1], "tok-abc123") == 200
    assert clipper("diff", "-f", str(f), env=env).returncode == 0

    # another token: the running one is used until the management frontend has restarted with it
    f.write_text(with_spec(ports, "cacheSizeBytes: 1048576, adminToken: tok-xyz789"))
    assert clipper("diff", "-f", str(f), env=env).returncode == 1
    clipper("apply", "-f", str(f), env=env, check=0)
    assert (admin_status(ports[1], "tok-abc123"), admin_status(ports[1], "tok-xyz789")) == (401, 200)
    f.write_text(with_spec(ports, "cacheSizeBytes: 1048576, adminToken: tok-abc123"))
    clipper("apply", "-f", str(f), env=env, check=0)

    # a new query port: the frontend answers there
    new_query = free_port()
    moved = (new_query, ports[1], ports[2])
    f.write_text(with_spec(moved, "cacheSizeBytes: 1048576, adminToken: tok-abc123"))
    diff = clipper("diff", "-f", str(f), env=env)
    assert diff.returncode == 1 and "queryPort" in diff.stdout, diff.stdout
    clipper("apply", "-f", str(f), env=env, check=0)
    r = requests.post(f"http://127.0.0.1:{new_query}/hello/predict", json={"input": [1.0, 2.0]}, timeout=10)
    assert (r.status_code, r.json()["output"]) == (200, 3.0)
    assert clipper("diff", "-f", str(f), env=env).returncode == 0

    # a new RPC port: the query frontend listens there and the model replica, restarted, connects to it
    new_rpc = free_port()
    moved = (new_query, ports[1], new_rpc)
    f.write_text(with_spec(moved, "cacheSizeBytes: 1048576, adminToken: tok-abc123"))
    diff = clipper("diff", "-f", str(f), env=env)
    assert diff.returncode == 1 and "rpcPort" in diff.stdout and "every model replica" in diff.stdout, (
        diff.stdout
    )
    clipper("apply", "-f", str(f), env=env, check=0)
    r = requests.post(f"http://127.0.0.1:{new_query}/hello/predict", json={"input": [1.0, 2.0]}, timeout=10)
    assert (r.status_code, r.json()["output"], r.json()["default"]) == (200, 3.0, False)
    table = json.loads((home / "rt" / "desired.json").read_text())["processes"]
    argv = table["query-0"]["argv"]
    assert argv[argv.index("--rpc-port") + 1] == str(new_rpc)
    # the replica reaches the frontend on the cluster's Unix socket, whose path did not change: it
    # reconnected to the restarted frontend without being restarted (its TCP port is not used)
    sock = str((home / "rt" / "rpc.sock").resolve())
    replicas = [p["env"] for k, p in table.items() if k.startswith("model")]
    assert [e["CLIPPER_RPC_SOCKET"] for e in replicas] == [sock], table
    assert clipper("diff", "-f", str(f), env=env).returncode == 0

    # a field that cannot change in place: refused with the reason, nothing changes
    f.write_text(
        with_spec(
            moved, "cacheSizeBytes: 1048576, adminToken: tok-abc123, allowUnauthenticatedReplicas: true"
        )
    )
    diff = clipper("diff", "-f", str(f), env=env)
    assert diff.returncode == 2, diff.stdout + diff.stderr
    applied = clipper("apply", "-f", str(f), env=env, check=2)
    text = applied.stdout + applied.stderr
    assert "allowUnauthenticatedReplicas" in text and "delete the cluster and apply again" in text, text
    f.write_text(manifests(ports))  # the fixture's teardown deletes the cluster with its manifest


def _wait(cond, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    return False
