"""``clipper sync`` end to end on the local backend: a repository made with ``git init`` in a temporary
directory (a bare "remote" and a clone that commits and pushes), synced with ``--once`` and by the
loop, through new commits, an invalid manifest, a broken model, a signed and an unsigned commit
(``--verify-signatures``), a force-push and a revert; the
status file, the webhook (a tiny http.server on 127.0.0.1) and the metrics endpoint say what
happened, and the last good revision keeps serving whenever a revision fails."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import requests

from clipper.net import free_port
from tests.integration.test_gitops_workflow import GIT, docs, git, output, wait_for
from tests.integration.test_reconciler import MODEL_SRC, clipper, workspace  # noqa: F401
from tests.integration.test_reconciler_health import BROKEN_SRC
from tests.unit.test_sync_git import gpg_key
from tests.unit.test_sync_notify import Receiver

pytestmark = pytest.mark.slow


def push(work: Path, message: str, *extra: str) -> str:
    git(work, "add", "-A")
    git(work, "commit", "-q", *extra, "-m", message)
    git(work, "push", "-q", "--force", "origin", "HEAD:main")
    return git(work, "rev-parse", "HEAD").strip()


@pytest.fixture
def repo(workspace, tmp_path):  # noqa: F811
    """The workspace's manifests (Cluster, Model with a health check, Application) committed to a
    clone of a bare repository and pushed; yields (work, env, ports, bare URL, first commit)."""
    work, env, ports = workspace
    bare = tmp_path / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    (work / ".gitignore").write_text("__pycache__/\n")
    (work / "all.yaml").write_text(docs(ports))
    git(work, "init", "-q", "-b", "main")
    git(work, "remote", "add", "origin", str(bare))
    c1 = push(work, "v1")
    yield work, env, ports, f"file://{bare}", c1


def sync(env: dict[str, str], url: str, state: Path, *extra: str, check: int | None = None):
    return clipper("sync", "--repo", url, "--ref", "main", "--state-dir", str(state), "--once", *extra,
                   env=env, timeout=400, check=check)  # fmt: skip


def status_file(state: Path) -> dict[str, Any]:
    return json.loads((state / "status.json").read_text())


def test_sync_once_then_the_loop_through_good_bad_force_pushed_and_reverted_commits(repo, tmp_path):
    work, env, ports, url, c1 = repo
    port = ports[0]
    state = tmp_path / "state"

    # --once: synced (exit 0), serving, recorded in the status file and the apply history
    proc = sync(env, url, state, check=0)
    assert f"synced main at {c1[:12]}" in proc.stderr, proc.stderr
    assert output(port) == 3.0
    st = status_file(state)
    assert (st["sync"], st["health"], st["revision"], st["targetRevision"]) == ("Synced", "Healthy", c1, c1)
    assert {o["sync"]["revision"] for o in st["objects"]} == {c1[:12]}
    assert state.stat().st_mode & 0o777 == 0o700
    assert (state / "status.json").stat().st_mode & 0o777 == 0o600
    history = json.loads(clipper("history", "-f", str(work / "all.yaml"), "--output", "json", env=env,
                                 check=0).stdout)  # fmt: skip
    assert history[-1]["revision"] == c1[:12] and history[-1]["result"] == "succeeded"

    # --once with an invalid manifest: exit 2 naming the problem; the last good revision serves
    (work / "all.yaml").write_text(docs(ports).replace("replicas: 1", "replicas: -1", 1))
    bad = push(work, "invalid replicas")
    proc = sync(env, url, state, check=2)
    assert f"revision {bad[:12]} not applied: invalid manifests" in proc.stderr, proc.stderr
    assert "spec.replicas" in proc.stderr and f"keeping {c1[:12]}" in proc.stderr
    st = status_file(state)
    assert (st["sync"], st["revision"], st["targetRevision"]) == ("OutOfSync", c1, bad)
    assert output(port) == 3.0

    # --verify-signatures: a commit signed by a trusted key is synced, an unsigned one on top is refused
    # with the reason, and the signed one stays in force
    gpg_env, fingerprint = gpg_key(tmp_path, "deployer")
    keyring = tmp_path / "deployer.asc"
    keyring.write_text(subprocess.run(["gpg", "--armor", "--export", fingerprint], env=gpg_env, check=True,
                                      capture_output=True, text=True).stdout)  # fmt: skip
    try:
        (work / "all.yaml").write_text(docs(ports))
        git(work, "add", "-A")
        subprocess.run(["git", "-C", str(work), *GIT, "commit", "-q", f"--gpg-sign={fingerprint}", "-m", "fix"],
                       env=gpg_env, check=True, capture_output=True)  # fmt: skip
        unsigned = push(work, "unsigned", "--allow-empty", "--no-gpg-sign")
        signed = git(work, "rev-parse", "HEAD~1").strip()
        git(work, "push", "-q", "--force", "origin", f"{signed}:refs/heads/main")
        verify = ("--verify-signatures", "--gpg-keyring", str(keyring))
        proc = sync(env, url, state, *verify, check=0)
        assert f"synced main at {signed[:12]}" in proc.stderr, proc.stderr
        git(work, "push", "-q", "--force", "origin", "HEAD:main")
        proc = sync(env, url, state, *verify, check=2)
        assert f"revision {unsigned[:12]} not applied: revision {unsigned[:12]} is not signed" in proc.stderr
        assert f"keeping {signed[:12]}" in proc.stderr, proc.stderr
        assert (status_file(state)["revision"], status_file(state)["sync"]) == (signed, "OutOfSync")
        assert output(port) == 3.0
    finally:
        subprocess.run(["gpgconf", "--kill", "all"], env=gpg_env, capture_output=True)
        shutil.rmtree(gpg_env["GNUPGHOME"], ignore_errors=True)

    # the loop, with a webhook and metrics
    hook = Receiver()
    events = hook.bodies
    metrics_port = free_port()
    (work / "all.yaml").write_text(docs(ports))
    (work / "models" / "sum_model.py").write_text(MODEL_SRC.format(factor=10))
    c2 = push(work, "v2: factor 10")
    loop = subprocess.Popen(
        [sys.executable, "-m", "reconciler", "--no-color", "sync", "--repo", url, "--ref", "main",
         "--state-dir", str(state), "--interval", "2s", "--max-backoff", "4s", "--name", "demo",
         "--notify", hook.url, "--metrics-port", str(metrics_port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(loop.stdout), daemon=True)  # type: ignore[arg-type]
    reader.start()

    def synced_at(sha: str) -> bool:
        st = status_file(state)
        return st["sync"] == "Synced" and st["revision"] == sha and st["health"] == "Healthy"

    def told(**fields: Any) -> list[dict[str, Any]]:
        return [e for e in list(events) if all(e.get(k) == v for k, v in fields.items())]

    try:
        # a new commit converges (the loop's first pass finds it)
        assert wait_for(lambda: output(port) == 30.0 and synced_at(c2), 240), "".join(lines)
        assert wait_for(
            lambda: told(object="Sync/demo", sync="Synced", revision=c2[:12], health="Healthy"), 60
        )
        assert wait_for(lambda: told(object="Model/sum-model", sync="Synced", health="Healthy"), 60)

        # a broken model: the health gate fails it, c2 keeps serving, status and webhook say why
        (work / "models" / "sum_model.py").write_text(BROKEN_SRC)
        broken = push(work, "broken model")
        assert wait_for(lambda: status_file(state)["targetRevision"] == broken
                        and status_file(state)["sync"] == "OutOfSync", 240), "".join(lines)  # fmt: skip
        st = status_file(state)
        assert st["revision"] == c2 and "health check failed" in st["message"], st
        assert output(port) == 30.0
        assert wait_for(lambda: [e for e in told(object="Sync/demo", sync="OutOfSync",
                                                 targetRevision=broken[:12]) if "health check failed" in e["message"]], 60)  # fmt: skip

        # an invalid manifest on top: still c2, the reason is the manifest's location
        (work / "all.yaml").write_text(docs(ports).replace("replicas: 1", "replicas: -1", 1))
        invalid = push(work, "invalid again")
        assert wait_for(lambda: status_file(state)["targetRevision"] == invalid, 120), "".join(lines)
        st = status_file(state)
        assert st["sync"] == "OutOfSync" and st["revision"] == c2 and "spec.replicas" in st["message"], st
        assert wait_for(lambda: told(object="Sync/demo", sync="OutOfSync", targetRevision=invalid[:12]), 60)
        assert output(port) == 30.0

        # force-push main back to the first commit: it converges to it (the broken ones are gone)
        git(work, "reset", "-q", "--hard", c1)
        git(work, "push", "-q", "--force", "origin", "HEAD:main")
        assert wait_for(lambda: output(port) == 3.0 and synced_at(c1), 240), "".join(lines)
        assert wait_for(lambda: told(object="Sync/demo", sync="Synced", revision=c1[:12]), 60)

        # a commit and its revert
        (work / "models" / "sum_model.py").write_text(MODEL_SRC.format(factor=100))
        c5 = push(work, "factor 100")
        assert wait_for(lambda: output(port) == 300.0 and synced_at(c5), 240), "".join(lines)
        git(work, "revert", "--no-edit", "HEAD")
        git(work, "push", "-q", "origin", "HEAD:main")
        c6 = git(work, "rev-parse", "HEAD").strip()
        assert wait_for(lambda: output(port) == 3.0 and synced_at(c6), 240), "".join(lines)

        # the metrics of the loop
        text = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=30).text
        runs = float(
            next(ln.split()[-1] for ln in text.splitlines() if ln.startswith("clipper_sync_runs_total"))
        )
        failures = float(next(ln.split()[-1] for ln in text.splitlines()
                              if ln.startswith("clipper_sync_failures_total")))  # fmt: skip
        assert runs >= 5 and failures >= 2, text
        assert f'clipper_sync_revision_info{{ref="main",revision="{c6}"}} 1.0' in text
        assert "clipper_sync_objects_out_of_sync 0.0" in text
        assert "clipper_sync_duration_seconds_count" in text
        # only the work trees in use are kept: the last synced revision's, once the next pass has run
        assert wait_for(lambda: [p.name for p in (state / "trees").iterdir()] == [c6[:12]], 60)
    finally:
        loop.send_signal(signal.SIGINT)
        try:
            code = loop.wait(timeout=120)
        finally:
            loop.kill()
            hook.close()
    reader.join(timeout=30)
    assert code == 0 and "".join(lines).rstrip().endswith("sync stopped"), lines
