"""``clipper sync``'s command line: what a user can get wrong is a clear message and exit status 2,
and an attempt that fails before any cluster is involved (a bad ref, invalid manifests) is reported
in the status file and to the webhook."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from pathlib import Path

import pytest

from reconciler.cli import build_parser, main
from reconciler.errors import ReconcilerError
from reconciler.sync import state_lock
from tests.unit.test_sync_git import commit, git
from tests.unit.test_sync_notify import Receiver


def run(capsys, *args: str) -> tuple[int, str]:
    code = main(["--no-color", "sync", *args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.fixture
def repo(tmp_path, monkeypatch):
    monkeypatch.setenv("CLIPPER_HOME", str(tmp_path / "home"))
    work = tmp_path / "repo"
    work.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True)
    return work


@pytest.mark.parametrize(
    "args, message",
    [
        (["--repo", "ext::sh -c id"], "'<transport>::' address"),
        (["--repo", "https://u:pw@example.com/r.git"], "contains credentials"),
        (["--repo", "REPO", "--ref", "--upload-pack=touch x"], "would be read as an option"),
        (["--repo", "REPO", "--path", "../outside"], "without '..'"),
        (["--repo", "REPO", "--token-file", "t", "--token-env", "T"], "not both"),
        (["--repo", "REPO", "--verify-signatures"], "needs the trusted keys"),
        (["--repo", "REPO", "--notify", "ftp://x/y"], "http:// or https://"),
    ],
)
def test_mistakes_are_clear_errors(repo, capsys, args, message):
    args = [str(repo) if a == "REPO" else a for a in args]
    code, out = run(capsys, *args, "--once")
    assert code == 2 and message in " ".join(out.split()), out
    assert "Traceback" not in out


@pytest.mark.parametrize(
    "value, seconds", [("90", 90.0), ("60s", 60.0), ("500ms", 0.5), ("5m", 300.0), ("1h", 3600.0)]
)
def test_durations(value, seconds):
    args = build_parser().parse_args(["sync", "--repo", "r", "--interval", value])
    assert args.interval == seconds


@pytest.mark.parametrize("value", ["0", "-5s", "soon", "inf"])
def test_bad_durations_are_refused(value, capsys):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["sync", "--repo", "r", f"--interval={value}"])
    assert e.value.code == 2 and "duration" in capsys.readouterr().err


def test_a_missing_ref_and_invalid_manifests_fail_once_with_the_reason_in_status_and_webhook(
    repo, capsys, tmp_path
):
    receiver = Receiver()
    events, hook = receiver.bodies, receiver.url
    state = tmp_path / "state"
    try:
        commit(repo, {"deploy/all.yaml": "apiVersion: clipper.ai/v1\nkind: Cluster\nmetadata: {name: c}\n"
                      "spec: {backend: local, queryPort: -4}\n"}, "bad")  # fmt: skip
        code, out = run(capsys, "--repo", str(repo), "--ref", "nope", "--state-dir", str(state), "--once",
                        "--notify", hook)  # fmt: skip
        assert code == 2 and "cannot fetch 'nope'" in out, out
        doc = json.loads((state / "status.json").read_text())
        assert (doc["sync"], doc["revision"], doc["targetRevision"]) == ("Unknown", None, None)

        code, out = run(capsys, "--repo", str(repo), "--ref", "main", "--path", "deploy", "--state-dir",
                        str(state), "--once", "--notify", hook, "--name", "demo")  # fmt: skip
        head = git(repo, "rev-parse", "HEAD")
        assert (
            code == 2 and f"revision {head[:12]} not applied: invalid manifests: deploy/all.yaml:4:" in out
        ), out
        assert str(state) + "/trees" not in out.split("state in")[-1]  # located in the repository
        doc = json.loads((state / "status.json").read_text())
        assert (doc["sync"], doc["revision"], doc["targetRevision"]) == ("OutOfSync", None, head)
        assert "spec.queryPort" in doc["message"]
        assert [(e["object"], e["sync"], e["targetRevision"]) for e in events][-1] == (
            "Sync/demo",
            "OutOfSync",
            head[:12],
        )
        assert "spec.queryPort" in events[-1]["message"]
    finally:
        receiver.close()


def test_one_sync_per_state_directory(tmp_path):
    with state_lock(tmp_path):
        with pytest.raises(
            ReconcilerError, match=f"another clipper sync \\(pid {os.getpid()}\\) uses {tmp_path}"
        ):
            with state_lock(tmp_path):
                pass
    with state_lock(tmp_path):  # released
        pass
    assert Path(tmp_path / "sync.lock").exists()


def test_the_loop_backs_off_exponentially_up_to_the_cap_and_stops_cleanly(repo, tmp_path):
    import io

    from rich.console import Console

    from reconciler.sync import run_sync
    from tests.integration.test_gitops_workflow import wait_for

    commit(repo, {"all.yaml": "kind: Nothing\n"}, "invalid")
    args = build_parser().parse_args(["sync", "--repo", str(repo), "--ref", "main", "--state-dir", str(tmp_path / "s"),
                                      "--interval", "200ms", "--max-backoff", "800ms"])  # fmt: skip
    buf = io.StringIO()
    stop = threading.Event()
    result: list[int] = []
    loop = threading.Thread(target=lambda: result.append(run_sync(args, Console(file=buf, width=400), stop)))
    loop.start()
    try:
        assert wait_for(lambda: buf.getvalue().count("sync failed") >= 5, 60), buf.getvalue()
    finally:
        stop.set()
        loop.join(timeout=60)
    delays = [
        line.split("retrying in ")[1].split()[0]
        for line in buf.getvalue().splitlines()
        if "retrying in" in line
    ]
    assert delays[:5] == ["0.2", "0.4", "0.8", "0.8", "0.8"], buf.getvalue()
    assert "5 failure(s) in a row" in buf.getvalue()
    assert result == [0] and buf.getvalue().rstrip().endswith("sync stopped")


def test_a_last_good_revision_left_by_an_earlier_run_is_verified_before_drift_repair_applies_it(
    repo, tmp_path
):
    import io
    import shutil

    from rich.console import Console

    from reconciler.sync import Syncer, source_for
    from tests.unit.test_sync_git import gpg_key

    head = commit(repo, {"all.yaml": "apiVersion: clipper.ai/v1\nkind: Cluster\nmetadata: {name: c}\n"
                         "spec: {backend: local}\n"}, "valid but unsigned")  # fmt: skip
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    # an earlier run without --verify-signatures synced it
    (state / "status.json").write_text(json.dumps({"repo": str(repo.resolve()), "ref": "main", "path": ".",
                                                   "revision": head}))  # fmt: skip
    env, fingerprint = gpg_key(tmp_path, "resume")
    try:
        keyring = tmp_path / "trusted.asc"
        keyring.write_text(subprocess.run(["gpg", "--armor", "--export", fingerprint], env=env, check=True,
                                          capture_output=True, text=True).stdout)  # fmt: skip
        base = ["sync", "--repo", str(repo), "--ref", "main", "--state-dir", str(state)]
        for extra, loads in (([], True), (["--verify-signatures", "--gpg-keyring", str(keyring)], False)):
            args = build_parser().parse_args(base + extra)
            syncer = Syncer(args, source_for(args), Console(file=io.StringIO()))
            syncer.resume()
            assert syncer.state.revision == head and syncer.source.fetch() == head
            assert (syncer._last_good() is not None) is loads
    finally:
        subprocess.run(["gpgconf", "--kill", "all"], env=env, capture_output=True)
        shutil.rmtree(env["GNUPGHOME"], ignore_errors=True)
