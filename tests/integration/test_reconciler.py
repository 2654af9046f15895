"""clipper apply/diff/delete/watch against a real local cluster (supervised processes, SQLite store)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from clipper.net import free_port

pytestmark = pytest.mark.slow

MODEL_SRC = "def predict(xs):\n    return [str(sum(x) * {factor}) for x in xs]\n"


def manifests(ports, replicas=1, with_app=True, name="rt"):
    q, m, r = ports
    docs = f"""\
apiVersion: clipper.ai/v1
kind: Cluster
metadata: {{name: {name}}}
spec: {{backend: local, queryPort: {q}, managementPort: {m}, rpcPort: {r}}}
---
apiVersion: clipper.ai/v1
kind: Model
metadata: {{name: sum-model}}
spec:
  inputType: doubles
  replicas: {replicas}
  source: {{python: {{function: models/sum_model.py:predict}}}}
"""
    if with_app:
        docs += """\
---
apiVersion: clipper.ai/v1
kind: Application
metadata: {name: hello}
spec: {inputType: doubles, defaultOutput: "-1", latencySloMicros: 2000000, model: sum-model}
"""
    return docs


def clipper(*args, env, timeout=180, check=None):
    proc = subprocess.run([sys.executable, "-m", "reconciler", "--no-color", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip
    if check is not None:
        assert proc.returncode == check, proc.stdout + proc.stderr
    return proc


@pytest.fixture
def workspace(tmp_path):
    home = tmp_path / "home"
    work = tmp_path / "manifests"
    (work / "models").mkdir(parents=True)
    (work / "models" / "sum_model.py").write_text(MODEL_SRC.format(factor=1))
    env = {**os.environ, "CLIPPER_HOME": str(home)}
    ports = (free_port(), free_port(), free_port())
    (work / "all.yaml").write_text(manifests(ports))
    yield work, env, ports
    # a test may have left an invalid manifest behind (watch's "last good state" check): restore the
    # valid one so the delete validates, and stop the cluster directly if the delete still fails
    (work / "all.yaml").write_text(manifests(ports))
    clipper("delete", "-f", str(work / "all.yaml"), "--cluster", env=env)
    try:
        conn_for(env, ports).stop_all()
    except Exception:  # already stopped: nothing left of it
        pass


def conn_for(env, ports, name="rt"):
    from clipper_admin import ClipperConnection, LocalContainerManager

    c = ClipperConnection(LocalContainerManager(cluster_name=name, state_dir=env["CLIPPER_HOME"]))
    c.connect()
    return c


def predict(port, x=(1.0, 2.0)):
    r = requests.post(f"http://127.0.0.1:{port}/hello/predict", json={"input": list(x)}, timeout=10)
    return r.status_code, r.json()


def test_lifecycle(workspace):
    work, env, ports = workspace
    f = str(work / "all.yaml")
    # from nothing
    assert clipper("diff", "-f", f, env=env).returncode == 1
    clipper("apply", "-f", f, env=env, check=0)
    code, body = predict(ports[0])
    assert (code, body["output"], body["default"]) == (200, 3.0, False)
    conn = conn_for(env, ports)
    before = (conn.get_all_models(verbose=True), sorted(conn.get_all_model_replicas()))

    # second apply: no-op that touches nothing
    assert clipper("diff", "-f", f, env=env).returncode == 0
    out = clipper("apply", "-f", f, env=env, check=0).stdout
    assert "No changes" in out
    assert (conn.get_all_models(verbose=True), sorted(conn.get_all_model_replicas())) == before

    # edit the model -> new version rolled out; predictions never fail meanwhile
    (work / "models" / "sum_model.py").write_text(MODEL_SRC.format(factor=10))
    plan = json.loads(clipper("diff", "-f", f, "--output", "json", env=env).stdout)
    assert [(a["op"], a["kind"]) for a in plan["actions"] if a["op"] != "noop"] == [("replace", "Model")]
    failures, outputs, stop = [], set(), threading.Event()

    def hammer():
        while not stop.is_set():
            code, body = predict(ports[0])
            if code != 200 or body.get("default"):
                failures.append((code, body))
            outputs.add(body.get("output"))

    t = threading.Thread(target=hammer)
    t.start()
    try:
        clipper("apply", "-f", f, env=env, check=0)
        deadline = time.monotonic() + 10
        while 30.0 not in outputs and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        t.join(timeout=30)
    assert failures == []
    assert 30.0 in outputs
    versions = {m["model_version"]: m["is_current_version"] for m in conn.get_all_models(verbose=True)}
    assert len(versions) == 2 and sum(versions.values()) == 1  # previous version stays registered
    new_version = next(v for v, cur in versions.items() if cur)
    assert [r for r in conn.get_all_model_replicas(verbose=True) if r["model_version"] != new_version] == []

    # change replicas -> scaled in place, same version
    (work / "all.yaml").write_text(manifests(ports, replicas=2))
    plan = json.loads(clipper("diff", "-f", f, "--output", "json", env=env).stdout)
    assert [(a["op"], a["kind"]) for a in plan["actions"] if a["op"] != "noop"] == [("update", "Model")]
    clipper("apply", "-f", f, env=env, check=0)
    assert (
        conn.get_num_replicas("sum-model") == 2 and conn.get_current_model_version("sum-model") == new_version
    )

    # an app created by other means is never touched
    conn.register_application("manual", "doubles", "x", 100000)

    # remove the app: without --prune it stays ("would prune"), with --prune it goes
    (work / "all.yaml").write_text(manifests(ports, replicas=2, with_app=False))
    out = clipper("apply", "-f", f, env=env, check=0).stdout
    assert "would be pruned" in out and "hello" in conn.get_all_apps()
    clipper("apply", "-f", f, "--prune", env=env, check=0)
    assert sorted(conn.get_all_apps()) == ["manual"]
    assert clipper("diff", "-f", f, "--prune", env=env).returncode == 0


def test_invalid_manifests_change_nothing(workspace):
    work, env, ports = workspace
    bad = work / "bad.yaml"
    bad.write_text(
        manifests(ports)
        .replace("replicas: 1", "replicas: -1")
        .replace("inputType: doubles, default", "inputType: ints, default")
    )
    for cmd in ("apply", "diff"):
        proc = clipper(cmd, "-f", str(bad), env=env, check=2)
        assert (
            f"{bad}:11:3 Model/sum-model spec.replicas: Input should be greater than or equal to 0"
            in proc.stderr
        )
    assert not (
        Path(env["CLIPPER_HOME"]) / "rt" / "cluster.json"
    ).exists()  # the cluster was not even started


def test_concurrent_applies_are_serialised(workspace):
    work, env, ports = workspace
    f = str(work / "all.yaml")
    procs = [subprocess.Popen([sys.executable, "-m", "reconciler", "--no-color", "apply", "-f", f], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]  # fmt: skip
    results = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    assert sum("Applied" in out for out, _ in results) == 1  # the loser waited, then found nothing to do
    assert sum("No changes" in out for out, _ in results) == 1
    # and with --lock-timeout 0 a loser fails clearly
    from reconciler.lock import apply_lock

    with apply_lock(Path(env["CLIPPER_HOME"]) / "rt", 1):
        proc = clipper("apply", "-f", f, "--lock-timeout", "0", env=env, check=2)
    assert "another apply holds the lock" in proc.stderr


def test_watch_repairs_drift(workspace):
    work, env, ports = workspace
    f = str(work / "all.yaml")
    clipper("apply", "-f", f, env=env, check=0)
    watcher = subprocess.Popen([sys.executable, "-m", "reconciler", "--no-color", "watch", "-f", str(work), "--interval", "1"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    lines: list[str] = []  # read by a thread: a non-blocking read of a text pipe fails when it is empty
    reader = threading.Thread(target=lambda: lines.extend(watcher.stdout), daemon=True)  # type: ignore[arg-type]
    reader.start()
    try:
        conn = conn_for(env, ports)
        conn.unregister_application("hello")  # drift: a deleted app
        deadline = time.monotonic() + 60
        while "hello" not in conn.get_all_apps() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "hello" in conn.get_all_apps()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if predict(ports[0])[1].get("output") == 3.0:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.2)
        assert predict(ports[0])[1]["output"] == 3.0
        # an invalid edit is reported and the last good state kept
        (work / "all.yaml").write_text(manifests(ports).replace("replicas: 1", "replicas: -1"))
        deadline = time.monotonic() + 30
        while "invalid manifests" not in "".join(lines) and time.monotonic() < deadline:
            time.sleep(0.2)
        out = "".join(lines)
        assert "invalid manifests" in out
        assert predict(ports[0])[1]["output"] == 3.0
        # one line per event (the repair), nothing for the idle checks, not even empty lines
        assert re.search(r"^\d\d:\d\d:\d\d Application/hello created", out, re.M), out
        assert [line for line in out.splitlines() if not line.strip()] == [], out
    finally:
        watcher.send_signal(signal.SIGINT)
        try:
            assert watcher.wait(timeout=30) == 0, "".join(lines)
        finally:
            watcher.kill()
    reader.join(timeout=30)
    rest = "".join(lines)[len(out) :]
    assert rest.rstrip().endswith("watch stopped") and "WARNING" not in rest, rest


MARKUP_NAMES = ["a[/]b", "[bold]x", "[link=https://example.com]app", "[/]"]


def test_markup_in_cluster_names_prints_verbatim_and_watch_survives(workspace, tmp_path):
    """Names registered through the management API are user text: ``get``/``status`` print them
    verbatim, and an apply error quoting one does not end ``watch``."""
    work, env, ports = workspace
    env = {**env, "COLUMNS": "300"}  # one table row per line
    solo = tmp_path / "solo"
    solo.mkdir()
    (solo / "cluster.yaml").write_text(manifests(ports).split("---")[0])
    clipper("apply", "-f", str(solo), env=env, check=0)
    conn = conn_for(env, ports)
    for name in MARKUP_NAMES:
        conn.register_application(name, "doubles", "[red]-1", 100000)
    models = ["m[/]", "[bold]y", "[link=/x]z"]
    for name in models:
        conn.register_model(name, "v[/]1", "doubles", labels=["team=[/]ops"])
    # the manifests' model, registered by someone else who wrote a markup owner label
    conn.register_model("sum-model", "[/]", "doubles", labels=["clipper.ai/managed-by=[/]x"])

    apps = clipper("get", "apps", "--cluster", "rt", env=env, check=0).stdout
    assert all(f" {n} " in apps for n in MARKUP_NAMES), apps
    assert "[red]-1" in apps
    got = clipper("get", "models", env=env, check=0).stdout  # no -f, no --cluster: the only local cluster
    assert all(f" {n} " in got for n in models) and " v[/]1 " in got and "team=[/]ops" in got, got
    # without -f, status lists every object of the cluster (with -f only the manifests' own); the
    # models have no replicas: Degraded, exit 1
    status = clipper("status", "--cluster", "rt", env=env, check=1).stdout
    assert all(f"/{n} " in status for n in [*MARKUP_NAMES, *models]), status
    diff = clipper("diff", "-f", str(work), env=env)  # a conflict on Model/sum-model, quoting its label
    assert "'[/]x'" in diff.stdout + diff.stderr, diff

    log = tmp_path / "watch.log"
    with open(log, "w") as sink:
        watcher = subprocess.Popen([sys.executable, "-m", "reconciler", "--no-color", "watch", "-f", str(work),
                                    "--interval", "0.5"], env=env, stdout=sink, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while (
            log.read_text().count("apply failed") < 2
            and time.monotonic() < deadline
            and watcher.poll() is None
        ):
            time.sleep(0.2)
        out = log.read_text()
        assert watcher.poll() is None, out  # still watching after the errors
        assert out.count("apply failed") >= 2 and "'[/]x'" in out, out
    finally:
        watcher.send_signal(signal.SIGINT)
        try:
            assert watcher.wait(timeout=30) == 0, log.read_text()
        finally:
            watcher.kill()


def test_delete_cluster_does_not_depend_on_observing_it(workspace):
    """A corrupt store breaks the management API (and crash-loops the frontends): ``delete
    --cluster`` still stops every process of the cluster and says what it could not delete."""
    from clipper_admin import ClipperException
    from clipper_admin.local.state import pid_alive

    work, env, ports = workspace
    f = str(work / "all.yaml")
    clipper("apply", "-f", f, env=env, check=0)
    conn = conn_for(env, ports)
    status = conn.cm.dir.read_status()
    assert len(status) >= 3  # management, query frontend, a replica
    store = conn.cm.dir.store_path
    for path in store.parent.glob(store.name + "*"):  # the database and its WAL
        path.unlink()
    store.write_bytes(b"\x00garbage, not a database\xff" * 4096)
    for proc_id in ("management", "query-0"):  # restarted on the garbage: they crash-loop
        os.kill(status[proc_id]["pid"], signal.SIGKILL)
    with pytest.raises(ClipperException):
        conn.get_all_apps()
    pids = [p["pid"] for p in status.values()] + [conn.cm.dir.supervisor_pid()]
    pids += [p["pid"] for p in conn.cm.dir.read_status().values() if p.get("pid")]
    proc = clipper("delete", "-f", f, "--cluster", env=env, check=0)
    assert "stopped cluster rt" in proc.stdout, proc.stdout + proc.stderr
    assert "cannot observe cluster rt" in proc.stderr
    assert "objects not deleted one by one (Application/hello, Model/sum-model)" in proc.stderr
    deadline = time.monotonic() + 30
    while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [p for p in pids if pid_alive(p)]
    assert not (Path(env["CLIPPER_HOME"]) / "rt" / "cluster.json").exists()
