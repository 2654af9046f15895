"""``clipper history`` and ``clipper rollback`` on a real local cluster (issue 14 #12): the applies
are kept in the cluster's own store (no secret in them), a rollback switches back to a version that
is still registered, and says clearly when the version it needs was removed."""

from __future__ import annotations

import json
import subprocess

import pytest
import requests

from tests.integration.test_reconciler import MODEL_SRC, clipper, conn_for, manifests, predict, workspace  # noqa: F401

pytestmark = pytest.mark.slow

TOKEN = "history-test-token-0123456789abcdef"


def git(work, *args: str) -> str:
    return subprocess.run(["git", "-C", str(work), *args], check=True, capture_output=True, text=True).stdout


def test_history_then_rollback(workspace):  # noqa: F811
    work, env, ports = workspace
    f = str(work / "all.yaml")
    text = manifests(ports).replace("rpcPort: ", f"adminToken: {TOKEN}, rpcPort: ", 1)
    (work / "all.yaml").write_text(text)
    git(work, "init", "-q")
    git(work, "-c", "user.email=t@example", "-c", "user.name=t", "commit", "-qam", "init", "--allow-empty")
    git(work, "add", ".")
    git(work, "-c", "user.email=t@example", "-c", "user.name=t", "commit", "-qm", "v1")
    first = git(work, "rev-parse", "HEAD").strip()[:12]
    clipper("apply", "-f", f, env=env, check=0)
    (work / "models" / "sum_model.py").write_text(MODEL_SRC.format(factor=10))
    git(work, "-c", "user.email=t@example", "-c", "user.name=t", "commit", "-qam", "v2")
    second = git(work, "rev-parse", "HEAD").strip()[:12]
    clipper("apply", "-f", f, env=env, check=0)
    clipper("apply", "-f", f, env=env, check=0)  # nothing to do: not recorded
    assert predict(ports[0])[1]["output"] == 30.0

    entries = json.loads(clipper("history", "-f", f, "--output", "json", env=env, check=0).stdout)
    assert [(e["number"], e["revision"], e["result"]) for e in entries] == [
        (1, first, "succeeded"),
        (2, second, "succeeded"),
    ]
    assert "@" in entries[0]["who"]
    assert any("Model/sum-model" in c for c in entries[1]["changes"])
    # kept in the cluster (through the token-protected API), never on this machine, never the token
    stored = requests.post(f"http://127.0.0.1:{ports[1]}/admin/get_record", timeout=10,
                           headers={"Authorization": f"Bearer {TOKEN}"},
                           json={"namespace": "reconciler", "key": "history"}).json()["value"]  # fmt: skip
    assert stored and TOKEN not in stored
    assert not (work.parent / "home" / "rt" / "reconciler" / "history.json").exists()
    table = clipper("history", "-f", f, env={**env, "COLUMNS": "200"}, check=0).stdout
    assert first in table and second in table

    # rollback (no N): the previous successful apply; its version is still registered: switched back
    out = clipper("rollback", "-f", f, env=env, check=0).stdout
    assert f"Rolled back to #1 ({first})" in out
    assert predict(ports[0])[1]["output"] == 3.0
    entries = json.loads(clipper("history", "-f", f, "--output", "json", env=env, check=0).stdout)
    assert entries[-1]["revision"] == f"rollback to #1 ({first})" and entries[-1]["result"] == "succeeded"

    # forward again to #2, then remove #1's version: a rollback to #1 says so and changes nothing
    clipper("rollback", "2", "-f", f, env=env, check=0)
    assert predict(ports[0])[1]["output"] == 30.0
    conn = conn_for(env, ports)
    current = {m["model_version"] for m in conn.get_all_models(verbose=True) if m["is_current_version"]}
    old = next(
        m["model_version"] for m in conn.get_all_models(verbose=True) if m["model_version"] not in current
    )
    conn.stop_versioned_models({"sum-model": [old]})  # unregisters it too
    refused = clipper("rollback", "1", "-f", f, env=env)
    assert refused.returncode == 2
    said = " ".join((refused.stdout + refused.stderr).split())
    assert f"Model/sum-model version {old} was removed from the cluster" in said, said
    assert f"Check out revision {first} and clipper apply it" in said
    assert predict(ports[0])[1]["output"] == 30.0
    missing = clipper("rollback", "99", "-f", f, env=env)
    assert missing.returncode == 2 and "no apply #99 in the history" in missing.stdout + missing.stderr


def test_keep_versions_unregisters_old_versions_and_removes_their_model_directories(workspace):  # noqa: F811
    work, env, ports = workspace
    f = str(work / "all.yaml")
    (work / "all.yaml").write_text(manifests(ports).replace("rpcPort: ", "keepVersions: 2, rpcPort: ", 1))
    models_dir = work.parent / "home" / "rt" / "models" / "sum-model"
    seen: list[str] = []
    for factor in (1, 10, 100):
        (work / "models" / "sum_model.py").write_text(MODEL_SRC.format(factor=factor))
        clipper("apply", "-f", f, env=env, check=0)
        conn = conn_for(env, ports)
        seen.append(
            next(m["model_version"] for m in conn.get_all_models(verbose=True) if m["is_current_version"])
        )
    registered = {m["model_version"] for m in conn_for(env, ports).get_all_models(verbose=True)}
    assert registered == set(seen[1:])  # the oldest is gone, the current and the previous stay
    assert not (models_dir / seen[0]).exists()
    assert (models_dir / seen[1]).is_dir() and (models_dir / seen[2]).is_dir()
    assert predict(ports[0])[1]["output"] == 300.0
