"""The whole git workflow end to end on the local backend (issue 14, "Done when"): commit -> apply ->
edit the model's code -> apply -> git revert -> apply -> scale -> prune -> watch with drift and a
broken model, asserting exit codes and ``status --output json`` at each step while a background
thread keeps posting predictions, none of which may fail."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.integration.test_reconciler import MODEL_SRC, clipper, conn_for, manifests, workspace  # noqa: F401
from tests.integration.test_reconciler_health import BROKEN_SRC, HEALTH

pytestmark = pytest.mark.slow

GIT = ["-c", "user.email=t@example", "-c", "user.name=t"]


def docs(ports: tuple[int, int, int], replicas: int = 1, with_model: bool = True) -> str:
    """The Cluster, and a Model with ``spec.health`` and its Application unless ``with_model`` is false."""
    text = manifests(ports, replicas=replicas)
    if not with_model:
        return text.split("---\n")[0]
    return text.replace(f"  replicas: {replicas}\n", f"  replicas: {replicas}\n{HEALTH}", 1)


def git(work: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(work), *GIT, *args], check=True, capture_output=True, text=True
    ).stdout


def commit(work: Path, message: str) -> str:
    git(work, "add", "-A")
    git(work, "commit", "-qm", message)
    return git(work, "rev-parse", "HEAD").strip()[:12]


def status(f: str, env: dict[str, str], check: int = 0) -> dict[str, Any]:
    out = json.loads(clipper("status", "-f", f, "--output", "json", env=env, check=check).stdout)
    assert out["formatVersion"] == 1 and out["ok"] is (check == 0), out
    return out


def obj(st: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(o for o in st["objects"] if o["kind"] == kind)


def assert_synced_healthy(st: dict[str, Any], revision: str) -> None:
    assert st["revision"] == revision, st
    for o in st["objects"]:
        assert (o["sync"]["status"], o["sync"]["revision"], o["health"]["status"]) == (
            "Synced",
            revision,
            "Healthy",
        ), o


class Load:
    """Predictions posted continuously; each answer is recorded with the step it was sent in."""

    def __init__(self, port: int, step: str) -> None:
        self.port = port
        self.step = step
        self.answers: list[tuple[str, int, Any]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            step = self.step
            try:
                r = requests.post(
                    f"http://127.0.0.1:{self.port}/hello/predict", json={"input": [1.0, 2.0]}, timeout=30
                )
                body = r.json()
                answer = ("default", body.get("output")) if body.get("default") else body.get("output")
                self.answers.append((step, r.status_code, answer))
            except requests.RequestException as e:  # a failed request: never allowed
                self.answers.append((step, 0, repr(e)))
            time.sleep(0.02)

    def unexpected(self, allowed: dict[str, Callable[[int, Any], bool]]) -> list[tuple[str, int, Any]]:
        return [a for a in self.answers if not allowed[a[0]](a[1], a[2])]


@contextmanager
def load(port: int, step: str) -> Iterator[Load]:
    lo = Load(port, step)
    t = threading.Thread(target=lo.run, daemon=True)
    t.start()
    try:
        yield lo
    finally:
        lo.stop.set()
        t.join(timeout=60)


def wait_for(cond: Callable[[], bool], timeout: float = 120.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if cond():
                return True
        except requests.RequestException:
            pass
        time.sleep(0.3)
    return cond()


def output(port: int) -> Any:
    r = requests.post(f"http://127.0.0.1:{port}/hello/predict", json={"input": [1.0, 2.0]}, timeout=30)
    return r.json().get("output") if r.status_code == 200 and not r.json().get("default") else None


def ok(*values: float) -> Callable[[int, Any], bool]:
    return lambda code, answer: code == 200 and answer in values


def test_the_git_workflow_end_to_end(workspace):  # noqa: F811
    work, env, ports = workspace
    run_workflow(work, env, ports[0], lambda **kw: docs(ports, **kw), lambda: conn_for(env, ports))


def run_workflow(
    work: Path, env: dict[str, str], port: int, docs: Callable[..., str], connect: Callable[[], Any]
) -> None:
    """The workflow on any backend: ``docs(replicas=, with_model=)`` renders the manifests,
    ``connect()`` returns a connected ``ClipperConnection`` to the cluster they describe."""
    f = str(work / "all.yaml")
    (work / ".gitignore").write_text("__pycache__/\n")
    (work / "all.yaml").write_text(docs())
    git(work, "init", "-q")

    # commit -> apply -> status: Synced/Healthy at the commit
    c1 = commit(work, "v1")
    clipper("apply", "-f", f, env=env, check=0)
    assert output(port) == 3.0
    st = status(f, env)
    assert_synced_healthy(st, c1)
    v1 = obj(st, "Model")["versions"]["current"]
    assert obj(st, "Model")["versions"]["deployedRevision"] == c1

    with load(port, "edit") as lo:
        # edit the model's code + commit -> apply: a new version rolled out, the previous one recorded
        lo.step = "edit"
        (work / "models" / "sum_model.py").write_text(MODEL_SRC.format(factor=10))
        c2 = commit(work, "v2: factor 10")
        clipper("apply", "-f", f, env=env, check=0)
        assert output(port) == 30.0
        st = status(f, env)
        assert_synced_healthy(st, c2)
        versions = obj(st, "Model")["versions"]
        assert versions["current"] != v1 and versions["previous"] == v1, versions
        assert versions["deployedRevision"] == c2

        # git revert -> apply: back to the first output
        lo.step = "revert"
        git(work, "revert", "--no-edit", "HEAD")
        c3 = git(work, "rev-parse", "HEAD").strip()[:12]
        clipper("apply", "-f", f, env=env, check=0)
        assert output(port) == 3.0
        assert_synced_healthy(status(f, env), c3)

        # scale to 2 -> apply waits, so diff holds right after
        lo.step = "scale"
        (work / "all.yaml").write_text(docs(replicas=2))
        c4 = commit(work, "scale to 2")
        clipper("apply", "-f", f, env=env, check=0)
        clipper("diff", "-f", f, env=env, check=0)
        st = status(f, env)
        assert_synced_healthy(st, c4)
        assert obj(st, "Model")["replicas"] == {"desired": 2, "actual": 2}

        # remove the app and the model: without --prune nothing goes (diff: "would prune", exit 1)
        lo.step = "unlisted"
        (work / "all.yaml").write_text(docs(with_model=False))
        commit(work, "remove the model and the app")
        clipper("apply", "-f", f, env=env, check=0)
        proc = clipper("diff", "-f", f, env=env, check=1)
        assert "would prune" in proc.stdout + proc.stderr, proc.stdout
        st = status(f, env, check=1)
        assert {(o["kind"], o["sync"]["status"]) for o in st["objects"] if o["kind"] != "Cluster"} == {
            ("Model", "OutOfSync"),
            ("Application", "OutOfSync"),
        }, st
        assert output(port) == 3.0
        # --prune: gone (from here on the app legitimately does not exist)
        lo.step = "prune"
        clipper("apply", "-f", f, "--prune", env=env, check=0)
        conn = connect()
        assert "hello" not in conn.get_all_apps() and conn.get_all_models() == []
        clipper("diff", "-f", f, env=env, check=0)
        lo.step = "pruned"
        assert (
            requests.post(
                f"http://127.0.0.1:{port}/hello/predict", json={"input": [1.0]}, timeout=30
            ).status_code
            == 404
        )
    pruned = lo.answers
    allowed = {
        "edit": ok(3.0, 30.0),
        "revert": ok(30.0, 3.0),
        "scale": ok(3.0),
        "unlisted": ok(3.0),
        # while the prune runs: the model first, so the app may briefly answer its default, then 404
        "prune": lambda code, a: (code == 200 and a in (3.0, ("default", "-1"))) or code == 404,
        "pruned": lambda code, a: code == 404,
    }
    assert [a for a in pruned if a[1] == 0] == [], "requests failed"
    assert lo.unexpected(allowed) == [], lo.unexpected(allowed)
    assert {a[0] for a in pruned} >= {"edit", "revert", "scale", "unlisted"}

    # bring the model back by reverting the removal, and let watch apply it
    git(work, "revert", "--no-edit", "HEAD")
    c6 = git(work, "rev-parse", "HEAD").strip()[:12]
    watcher = subprocess.Popen([sys.executable, "-m", "reconciler", "--no-color", "watch", "-f", str(work), "--interval", "1"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(watcher.stdout), daemon=True)  # type: ignore[arg-type]
    reader.start()

    def said(text: str, since: int = 0) -> bool:
        # rich wraps long lines at the terminal width: compare with whitespace normalised
        return " ".join(text.split()) in " ".join("".join(lines[since:]).split())

    try:
        assert wait_for(lambda: output(port) == 3.0, 180), lines
        conn = connect()
        assert wait_for(lambda: len(conn.get_all_model_replicas()) == 2, 120)
        assert_synced_healthy(status(f, env), c6)
        serving = conn.get_current_model_version("sum-model")
        with load(port, "drift") as lo:
            # drift: someone scales the model down; watch scales it back
            lo.step = "drift"
            before = len(lines)
            conn.set_num_replicas("sum-model", 1)
            assert wait_for(lambda: said("scaled 1 -> 2", before), 120), "".join(lines)
            assert wait_for(lambda: len(conn.get_all_model_replicas()) == 2, 120), lines
            # a broken model commit: the health gate fails it, watch reports it, the previous serves
            lo.step = "broken"
            (work / "models" / "sum_model.py").write_text(BROKEN_SRC)
            commit(work, "broken model")
            # the model's error and the failed apply may reach watch's output in either order
            broken_said = ("this model is broken", "apply failed", "health check failed")
            assert wait_for(lambda: all(said(t) for t in broken_said), 180), "".join(lines)
            assert conn.get_current_model_version("sum-model") == serving
            assert output(port) == 3.0
        st = status(f, env, check=1)
        model = obj(st, "Model")
        assert model["sync"]["status"] == "OutOfSync" and model["versions"]["current"] == serving, model
        assert [a for a in lo.answers if a[1] == 0] == [], "requests failed"
        assert lo.unexpected({"drift": ok(3.0), "broken": ok(3.0)}) == []
        assert {a[0] for a in lo.answers} == {"drift", "broken"}
    finally:
        watcher.send_signal(signal.SIGINT)
        try:
            # an apply in progress (a broken version retried) first stops the replicas it started:
            # on a loaded machine the Docker engine takes a while for that
            code = watcher.wait(timeout=120)
        except subprocess.TimeoutExpired:
            # where it is stuck: the CLI prints every thread's stack on SIGUSR1 (faulthandler)
            before, counted = len(lines), [-1]

            def dumped() -> bool:  # a stack was printed, and no more lines came since the last poll
                done = said("File ", before) and len(lines) == counted[0]
                counted[0] = len(lines)
                return done

            watcher.send_signal(signal.SIGUSR1)
            wait_for(dumped, 15)
            raise AssertionError(
                "watch did not stop within 120 s of SIGINT:\n"
                + "".join(lines[max(0, before - 40) : before])
                + "\nits threads' stacks (SIGUSR1):\n"
                + "".join(lines[before:])
            ) from None
        finally:
            watcher.kill()
    reader.join(timeout=30)
    assert code == 0 and "".join(lines).rstrip().endswith("watch stopped"), lines
