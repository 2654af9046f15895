"""Progressive delivery on a real local cluster: canary rollouts that advance or roll back by
themselves, `clipper rollout status/promote/abort` against a running apply, and A/B and shadow
applications from manifests."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading

import pytest
import requests

from reconciler.clipper_cluster import ClipperCluster
from reconciler.lock import LEASE_NAME
from tests.integration.cluster_fixtures import wait_for
from tests.integration.test_reconciler import clipper, conn_for, manifests, workspace  # noqa: F401

pytestmark = pytest.mark.slow

#: sum * factor; the good new version
GOOD_SRC = "def predict(xs):\n    return [str(sum(x) * 10) for x in xs]\n"
#: raises on 30 % of the inputs: those whose first element's last digit is 0, 1 or 2
BAD_SRC = (
    "def predict(xs):\n"
    "    for x in xs:\n"
    "        if int(x[0]) % 10 < 3:\n"
    "            raise ValueError('bad input for this version')\n"
    "    return [str(sum(x)) for x in xs]\n"
)


def canary(ports, steps: str, analysis: str = "{maxErrorRate: 0.05, minRequests: 15}") -> str:
    docs = manifests(ports)
    rollout = f"  rollout:\n    strategy: canary\n    steps: {steps}\n    analysis: {analysis}\n"
    return docs.replace("  replicas: 1\n", "  replicas: 1\n" + rollout, 1)


class Hammer:
    """One client sending requests in a loop (batches of one input), counting the answers."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/hello/predict"
        self.total = self.defaults = self.failed = 0
        self.outputs: set[object] = set()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        i = 0
        with requests.Session() as s:
            while not self.stop.is_set():
                i += 1
                try:
                    r = s.post(self.url, json={"input": [float(i % 10), 2.0]}, timeout=10)
                    body = r.json()
                except (requests.RequestException, ValueError):
                    self.failed += 1
                    continue
                self.total += 1
                if r.status_code != 200:
                    self.failed += 1
                elif body.get("default"):
                    self.defaults += 1
                else:
                    self.outputs.add(body["output"])

    def __enter__(self) -> Hammer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)


def apply_rolled_back_under_load(
    port: int, f: str, env, timeout: float = 400
) -> tuple[subprocess.CompletedProcess[str], tuple[int, int], Hammer]:
    """`clipper apply` of a version that raises on 30 % of its inputs while a :class:`Hammer` posts
    requests; asserts that it rolled back within its first step (20 %). Returns the process, the
    (requests, defaults) counted during the apply, and the hammer."""
    with Hammer(port) as h:
        wait_for(lambda: h.total > 20, 120, "the first answers")
        start = (h.total, h.defaults)
        proc = clipper("apply", "-f", f, env=env, timeout=timeout)
        during = (h.total - start[0], h.defaults - start[1])
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "rolled back: step 1 (20%): error rate" in out and "maxErrorRate 0.05" in out, out
    return proc, during, h


def background_apply(f: str, env) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "reconciler", "--no-color", "apply", "-f", f], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip


def rollout_status(f: str, env) -> dict | None:
    proc = clipper("rollout", "status", "sum-model", "-f", f, "--output", "json", env=env)
    return json.loads(proc.stdout) if proc.returncode == 0 else None


def deployed(workspace, steps: str, new_src: str):  # noqa: F811
    """The cluster with the first version of sum-model (a canary rollout of ``steps``) and a new
    version's source written (the next apply rolls it out). Returns (env, ports, file, conn, old version)."""
    work, env, ports = workspace
    f = str(work / "all.yaml")
    (work / "all.yaml").write_text(canary(ports, steps))
    clipper("apply", "-f", f, env=env, check=0)
    conn = conn_for(env, ports)
    old = conn.get_current_model_version("sum-model")
    (work / "models" / "sum_model.py").write_text(new_src)
    return env, ports, f, conn, old


def test_a_good_canary_advances_to_100_percent_and_status_shows_its_steps(workspace):  # noqa: F811
    env, ports, f, conn, old = deployed(
        workspace, "[{weight: 20, pause: 2}, {weight: 60, pause: 2}]", GOOD_SRC
    )
    with Hammer(ports[0]) as h:
        wait_for(lambda: h.total > 20, 60, "the first answers")
        proc = background_apply(f, env)
        progressing = wait_for(lambda: (s := rollout_status(f, env)) and s["phase"] == "Progressing" and s, 120,
                               "the rollout to start")  # fmt: skip
        assert progressing["strategy"] == "canary" and progressing["from_version"] == old
        assert progressing["apps"] == ["hello"]
        status = json.loads(clipper("status", "-f", f, "--output", "json", env=env).stdout)
        model = next(o for o in status["objects"] if o["kind"] == "Model")
        # between the rollout's start and its end the model is Progressing (or done, on a fast machine)
        assert model["health"]["status"] in ("Progressing", "Healthy"), model
        text = clipper("rollout", "status", "sum-model", "-f", f, env=env, check=0).stdout
        assert "canary" in text and "error rate" in text and "hello" in text, text
        out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    assert "step 1/2: 20%" in out and "step 2 passed" in out, out
    new = conn.get_current_model_version("sum-model")
    assert new != old and new == progressing["to_version"]
    final = rollout_status(f, env)
    assert final is not None and final["phase"] == "Succeeded" and final["weight"] == 100
    assert final["numbers"]["requests"] >= 15 and final["numbers"]["errors"] == 0
    assert conn.get_app_traffic("hello")["configured"] is False  # a plain app again
    assert {r["model_version"] for r in conn.get_all_model_replicas(verbose=True)} == {new}
    # every client got an answer, from both versions during the rollout, none a default
    assert h.failed == 0 and h.defaults == 0 and {3.0, 30.0} <= {float(o) for o in h.outputs}, vars(h)
    assert clipper("diff", "-f", f, env=env).returncode == 0


def test_a_canary_that_raises_on_30_percent_of_inputs_is_rolled_back_within_its_step(workspace):  # noqa: F811
    env, ports, f, conn, old = deployed(
        workspace, "[{weight: 20, pause: 30}, {weight: 100, pause: 30}]", BAD_SRC
    )
    proc, during, h = apply_rolled_back_under_load(ports[0], f, env)
    # the previous version serves alone again; the bad one stays registered, without replicas
    assert conn.get_current_model_version("sum-model") == old
    assert {r["model_version"] for r in conn.get_all_model_replicas(verbose=True)} == {old}
    assert conn.get_app_traffic("hello")["configured"] is False
    # no client saw more errors than 20 % of the requests allow (30 % of 20 %: 6 % expected)
    assert h.failed == 0 and during[0] > 0 and during[1] <= 0.2 * during[0], (during, vars(h))
    record = rollout_status(f, env)
    assert record is not None and record["phase"] == "RolledBack" and record["step"] == 0
    # not tried again: diff says so, status says why (Degraded, exit 1)
    diff = clipper("diff", "-f", f, env=env)
    assert (
        "was rolled back" in diff.stdout + diff.stderr
        and "clipper rollout retry sum-model" in diff.stdout + diff.stderr
    )
    proc = clipper("status", "-f", f, "--output", "json", env=env, check=1)
    model = next(o for o in json.loads(proc.stdout)["objects"] if o["kind"] == "Model")
    assert model["health"]["status"] == "Degraded" and "rolled back" in model["health"]["reason"], model
    history = json.loads(clipper("history", "-f", f, "--output", "json", env=env, check=0).stdout)
    assert "rolled back" in history[-1]["result"]


def test_rollout_abort_and_promote_act_on_a_running_apply(workspace):  # noqa: F811
    env, ports, f, conn, old = deployed(workspace, "[{weight: 30, pause: 600}]", GOOD_SRC)
    with Hammer(ports[0]):
        proc = background_apply(f, env)
        wait_for(lambda: (s := rollout_status(f, env)) and s["phase"] == "Progressing", 120, "the rollout")
        aborted = clipper("rollout", "abort", "sum-model", "-f", f, env=env, check=0).stdout
        assert "abort requested" in aborted and "Aborted" in aborted, aborted
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 2 and "was aborted: aborted by" in out, out
        assert conn.get_current_model_version("sum-model") == old
        # aborted: not tried again until `clipper rollout retry`
        assert "No changes" in clipper("apply", "-f", f, env=env, check=0).stdout
        clipper("rollout", "retry", "sum-model", "-f", f, env=env, check=0)
        proc = background_apply(f, env)
        wait_for(lambda: (s := rollout_status(f, env)) and s["phase"] == "Progressing", 120, "the rollout")
        promoted = clipper("rollout", "promote", "sum-model", "-f", f, env=env, check=0).stdout
        assert "Succeeded" in promoted, promoted
        out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert conn.get_current_model_version("sum-model") != old
    assert (
        clipper("rollout", "promote", "sum-model", "-f", f, env=env, check=2).stderr.count("no rollout") == 1
    )


AB = """\
---
apiVersion: clipper.ai/v1
kind: Model
metadata: {{name: times-ten}}
spec:
  inputType: doubles
  source: {{python: {{function: models/times_ten.py:predict}}}}
---
apiVersion: clipper.ai/v1
kind: Application
metadata: {{name: ab}}
spec:
  inputType: doubles
  defaultOutput: "-1"
  latencySloMicros: 2000000
  models: [{{name: sum-model, weight: 1}}, {{name: times-ten, weight: 1}}]
---
apiVersion: clipper.ai/v1
kind: Application
metadata: {{name: shadowed}}
spec:
  inputType: doubles
  defaultOutput: "-1"
  latencySloMicros: 2000000
  model: sum-model
  shadow: {{model: times-ten, percent: 100}}
"""


def test_ab_and_shadow_applications_from_manifests(workspace):  # noqa: F811
    work, env, ports = workspace
    f = str(work / "all.yaml")
    (work / "models" / "times_ten.py").write_text(GOOD_SRC)
    (work / "all.yaml").write_text(manifests(ports) + AB.format())
    clipper("apply", "-f", f, env=env, check=0)
    conn = conn_for(env, ports)

    def ask(app: str) -> dict:
        r = requests.post(
            f"http://127.0.0.1:{ports[0]}/{app}/predict", json={"input": [1.0, 2.0]}, timeout=10
        )
        assert r.status_code == 200
        return r.json()

    # A/B: both models answer, each about half of the time
    outputs = [ask("ab") for _ in range(200)]
    assert not any(o["default"] for o in outputs)
    counts = {v: sum(1 for o in outputs if float(o["output"]) == v) for v in (3.0, 30.0)}
    assert counts[3.0] + counts[30.0] == 200 and min(counts.values()) > 50, counts
    report = conn.get_app_traffic("ab")
    assert report["configured"] and [t["model_name"] for t in report["targets"]] == ["sum-model", "times-ten"]
    # shadow: every answer is the primary's; the shadow's are compared (and disagree)
    answers = {float(ask("shadowed")["output"]) for _ in range(50)}
    assert answers == {3.0}
    wait_for(lambda: (conn.get_app_traffic("shadowed")["shadow"]["stats"]["compared"] or 0) > 0, 60,
             "the shadow's comparisons")  # fmt: skip
    assert conn.get_app_traffic("shadowed")["shadow"]["stats"]["agreed"] == 0
    assert clipper("diff", "-f", f, env=env).returncode == 0
    # drift: weights changed by hand are put back by the next apply
    conn.set_app_traffic("ab", [("sum-model", conn.get_current_model_version("sum-model"), 1)])
    plan = json.loads(clipper("diff", "-f", f, "--output", "json", env=env, check=1).stdout)
    assert [(a["op"], a["kind"], a["name"]) for a in plan["actions"] if a["op"] != "noop"] == [
        ("update", "Traffic", "ab")
    ]
    clipper("apply", "-f", f, env=env, check=0)
    assert len(conn.get_app_traffic("ab")["targets"]) == 2
    # back to plain applications: the configurations are cleared
    plain = manifests(ports) + AB.format().replace(
        "models: [{name: sum-model, weight: 1}, {name: times-ten, weight: 1}]", "model: sum-model"
    ).replace("  shadow: {model: times-ten, percent: 100}\n", "")
    (work / "all.yaml").write_text(plain)
    clipper("apply", "-f", f, env=env, check=0)
    assert not conn.get_app_traffic("ab")["configured"] and not conn.get_app_traffic("shadowed")["configured"]
    assert {float(ask("ab")["output"]) for _ in range(20)} == {3.0}


def test_watch_resumes_a_rollout_whose_apply_was_killed(workspace):  # noqa: F811
    env, ports, f, conn, old = deployed(
        workspace, "[{weight: 30, pause: 4}, {weight: 60, pause: 4}]", GOOD_SRC
    )
    with Hammer(ports[0]) as h:
        proc = background_apply(f, env)
        wait_for(lambda: (s := rollout_status(f, env)) and s["phase"] == "Progressing", 120, "the rollout")
        proc.kill()  # SIGKILL: no cleanup at all
        proc.communicate(timeout=30)
        record = rollout_status(f, env)
        assert record is not None and record["phase"] == "Progressing"
        assert conn.get_app_traffic("hello")["configured"]  # the split stays; both versions serve
        # The dead apply's lease would expire LEASE_TTL_S (30 s) after its last renewal, and watch waited
        # that long; that the next apply waits for a dead holder's lease to expire is checked by
        # test_reconciler_cluster_state.py::test_two_machines_share_the_lease_and_the_records. Here the
        # lease is released as its expiry would release it, and watch starts at once.
        leases = ClipperCluster(conn)
        dead = leases.acquire_lease(LEASE_NAME, "tests: the killed apply's lease", 1.0)
        assert f" pid {proc.pid} " in dead and leases.release_lease(LEASE_NAME, dead), dead
        watch = subprocess.Popen(
            [sys.executable, "-m", "reconciler", "--no-color", "watch", "-f", f, "--interval", "5"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        try:
            wait_for(
                lambda: (s := rollout_status(f, env)) and s["phase"] == "Succeeded",
                240,
                "the resumed rollout",
            )
        finally:
            watch.send_signal(signal.SIGINT)
            out, _ = watch.communicate(timeout=60)
    assert "resuming the canary rollout" in out, out
    assert conn.get_current_model_version("sum-model") not in (old, None)
    assert h.failed == 0 and h.defaults == 0, vars(h)
