"""``python -m clipper.container`` as a real process against a real RpcServer."""

from __future__ import annotations

import itertools
import json
import os
import signal
import struct
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import cloudpickle
import pytest
import requests

from clipper.datatypes import InputType
from clipper.net import free_port
from tests.spec_container.harness import RpcHarness

REPO = Path(__file__).resolve().parents[2]
_counter = itertools.count()


def make_model_dir(root: Path, source: str, meta: dict | None = None, modules: dict | None = None) -> Path:
    """A model directory whose func.pkl is the function ``f`` defined by ``source`` (pickled by value)."""
    d = root / f"model-{next(_counter)}"
    d.mkdir()
    ns: dict = {"__name__": "user_model_source"}  # not importable: cloudpickle pickles by value
    exec(textwrap.dedent(source), ns)
    (d / "func.pkl").write_bytes(cloudpickle.dumps(ns["f"]))
    if meta is not None:
        (d / "clipper_model.json").write_text(json.dumps(meta))
    for name, text in (modules or {}).items():
        (d / "modules").mkdir(exist_ok=True)
        (d / "modules" / name).write_text(textwrap.dedent(text))
    return d


class Container:
    def __init__(
        self, tmp: Path, port: int, model_dir: Path, input_type: str = "doubles", **env: str
    ) -> None:
        self.log_path = tmp / f"container-{next(_counter)}.log"
        full_env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "CLIPPER_HOME": str(tmp),
            "CLIPPER_MODEL_NAME": "m",
            "CLIPPER_MODEL_VERSION": "1",
            "CLIPPER_IP": "127.0.0.1",
            "CLIPPER_PORT": str(port),
            "CLIPPER_INPUT_TYPE": input_type,
            "CLIPPER_MODEL_PATH": str(model_dir),
            **env,
        }
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "clipper.container"], env=full_env, stderr=log
            )

    def log(self) -> str:
        return self.log_path.read_text()

    def wait(self, timeout: float = 20) -> int:
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def harness() -> Iterator[RpcHarness]:
    h = RpcHarness(liveness_timeout=1.0)
    yield h
    h.close()


def private_socket(tmp_path: Path) -> Path:
    d = tmp_path / "cluster"
    d.mkdir(mode=0o700, exist_ok=True)
    return d / "rpc.sock"


@pytest.fixture(params=["tcp", "socket"])
def endpoint(request, tmp_path) -> Iterator[tuple[RpcHarness, dict[str, str]]]:
    """A frontend's RPC server and the environment that points a container at it: its TCP port
    (ZeroMQ), or its Unix socket (the local backend's, clipper.rpc.stream)."""
    if request.param == "tcp":
        h = RpcHarness(liveness_timeout=1.0)
        env: dict[str, str] = {}
    else:
        path = private_socket(tmp_path)
        h = RpcHarness(liveness_timeout=1.0, ipc_path=str(path))
        env = {"CLIPPER_RPC_SOCKET": str(path)}
    yield h, env
    h.close()


@pytest.fixture
def start(tmp_path) -> Iterator:
    started: list[Container] = []

    def run(port: int, model_dir: Path, input_type: str = "doubles", **env: str) -> Container:
        c = Container(tmp_path, port, model_dir, input_type, **env)
        started.append(c)
        return c

    yield run
    for c in started:
        c.kill()


DESCRIBE = """
def f(xs):
    head = f"{type(xs).__name__} {xs.dtype} {xs.shape}"
    return [head + " | " + (repr(x.tolist()) if hasattr(x, "tolist") else repr(x)) for x in xs]
"""


def test_inputs_arrive_as_the_original_container_gave_them(tmp_path, harness, start):
    model = make_model_dir(tmp_path, DESCRIBE)
    for name in ("bytes", "ints", "F", " Doubles ", "strings"):  # aliases, case-insensitive
        start(harness.port, model, name, CLIPPER_MODEL_NAME=name.strip().lower())
    conns = {}
    for _ in range(5):
        c = harness.wait_registered()
        conns[c.input_type] = c

    def predict(t: InputType, inputs: list[bytes]) -> list[str]:
        return [o.decode() for o in harness.predict(conns[t], t, inputs)]

    assert predict(InputType.DOUBLES, [struct.pack("<2d", 1.5, -2.0), struct.pack("<2d", 3.0, 4.0)]) == [
        "ndarray float64 (2, 2) | [1.5, -2.0]",
        "ndarray float64 (2, 2) | [3.0, 4.0]",
    ]
    assert predict(InputType.DOUBLES, [struct.pack("<2d", 1.0, 2.0), struct.pack("<1d", 3.0)]) == [
        "ndarray object (2,) | [1.0, 2.0]",
        "ndarray object (2,) | [3.0]",
    ]
    assert predict(InputType.FLOATS, [struct.pack("<3f", 0.5, 1, 2)]) == [
        "ndarray float32 (1, 3) | [0.5, 1.0, 2.0]"
    ]
    assert (
        predict(InputType.INTEGERS, [struct.pack("<2i", -7, 2**31 - 1)] * 2)
        == ["ndarray int32 (2, 2) | [-7, 2147483647]"] * 2
    )
    assert predict(InputType.BYTES, [b"\x01\xff", b"\x80\x7f"]) == [
        "ndarray int8 (2, 2) | [1, -1]",
        "ndarray int8 (2, 2) | [-128, 127]",
    ]
    assert predict(InputType.STRINGS, ["héllo".encode(), b""]) == [
        "ndarray object (2,) | b'h\\xc3\\xa9llo'",
        "ndarray object (2,) | b''",
    ]
    assert predict(InputType.DOUBLES, [b"", b""]) == ["ndarray float64 (2, 0) | []"] * 2


ERRORS = """
def f(xs):
    cmd = xs[0].decode()
    if cmd == "raise":
        raise ValueError("bad input")
    if cmd == "exit":
        raise SystemExit(3)
    if cmd == "short":
        return ["x"] * (len(xs) - 1)
    if cmd == "none":
        return None
    if cmd == "numbers":
        import numpy as np

        return [1, 2.5, True, np.float64(6.6), b"raw"][: len(xs)]
    if cmd == "nones":
        return ["a", None][: len(xs)]
    return [x.decode().upper() for x in xs]
"""


def test_model_errors_become_error_outputs_and_the_container_lives_on(tmp_path, harness, start):
    container = start(harness.port, make_model_dir(tmp_path, ERRORS), "strings")
    conn = harness.wait_registered()

    def errors(inputs: list[bytes], t: InputType = InputType.STRINGS) -> list[str | None]:
        outputs, errs = harness.predict_with_errors(conn, t, inputs)
        assert errs is not None and outputs == [b""] * len(inputs)  # reasons only in the error frame
        return [errs.get(i) for i in range(len(inputs))]

    assert errors([b"raise", b"b"]) == ["Model error: ValueError: bad input"] * 2
    assert errors([b"exit"]) == ["Model error: SystemExit: 3"]
    assert errors([b"short", b"b", b"c", b"d"]) == ["Model returned 3 outputs for a batch of 4"] * 4
    assert errors([b"none", b"b"]) == ["Model returned a non-list output (NoneType)"] * 2
    assert errors([struct.pack("<d", 1.0)], InputType.DOUBLES) == [
        "Input type mismatch: the model takes strings, the request has doubles"
    ]
    # Non-string outputs are str()-ed as the original closure container did; bytes pass through.
    assert harness.predict(conn, InputType.STRINGS, [b"numbers", b"b", b"c", b"d", b"e"]) == [
        b"1",
        b"2.5",
        b"True",
        b"6.6",
        b"raw",
    ]
    assert errors([b"nones", b"b"]) == ["Model returned None at position 1: return one value per input"] * 2
    assert harness.predict(conn, InputType.STRINGS, [b"ok", b"fine"]) == [b"OK", b"FINE"]
    assert container.proc.poll() is None
    assert harness.disconnected.empty()
    log = container.log()
    assert "ValueError: bad input" in log and "Traceback" in log


SLOW = """
import time

def f(xs):
    time.sleep(float(xs[0][0]))
    return [str(x[0]) for x in xs]
"""


def test_heartbeats_continue_while_the_function_runs(tmp_path, endpoint, start):
    harness, env = endpoint
    container = start(harness.port, make_model_dir(tmp_path, SLOW), **env)
    conn = harness.wait_registered()
    time.sleep(1.0)  # a few heartbeats: the server now expects them every ~0.5 s
    slow = harness.send_batch(conn, InputType.DOUBLES, [struct.pack("<d", 2.5)])
    quick = harness.send_batch(conn, InputType.DOUBLES, [struct.pack("<d", 0.0)])
    assert harness.wait_response(slow)[1] == [b"2.5"]
    assert harness.wait_response(quick)[1] == [b"0.0"]
    assert harness.disconnected.empty(), "the container was declared dead while predicting"
    assert conn.max_gap < 1.0
    assert container.proc.poll() is None


def test_a_batch_longer_than_the_reconnect_timeout_keeps_the_session(tmp_path, harness, start):
    """The batch runs in the thread that reads the socket: the heartbeat replies that queue up
    meanwhile are read before the silence is judged, so a long batch is no reason to reconnect."""
    container = start(harness.port, make_model_dir(tmp_path, SLOW), CLIPPER_RECONNECT_TIMEOUT="1")
    conn = harness.wait_registered()
    assert harness.predict(conn, InputType.DOUBLES, [struct.pack("<d", 2.5)]) == [b"2.5"]
    assert harness.predict(conn, InputType.DOUBLES, [struct.pack("<d", 0.0)]) == [b"0.0"]
    assert harness.disconnected.empty()
    assert "reconnecting with a new session" not in container.log()
    assert container.proc.poll() is None


def test_a_hung_prediction_makes_the_container_exit_to_be_restarted(tmp_path, harness, start):
    """CLIPPER_PREDICT_TIMEOUT: a batch held longer ends the process (code 4) with the reason and the
    stuck stack, so the backend restarts it; until then the liveness file holds a future deadline."""
    alive = tmp_path / "alive"
    container = start(
        harness.port,
        make_model_dir(tmp_path, SLOW),
        CLIPPER_PREDICT_TIMEOUT="1",
        CLIPPER_LIVENESS_FILE=str(alive),
    )
    conn = harness.wait_registered()
    assert harness.predict(conn, InputType.DOUBLES, [struct.pack("<d", 0.2)]) == [b"0.2"]  # under the limit
    assert int(alive.read_text()) > time.time()
    harness.send_batch(conn, InputType.DOUBLES, [struct.pack("<d", 600.0)])
    assert container.wait(30) == 4
    log = container.log()
    assert "has been in the prediction function for 1." in log
    assert "longer than CLIPPER_PREDICT_TIMEOUT (1 s): the function is hung; exiting with code 4" in log
    assert " in f\n" in log  # faulthandler's stack of the worker thread, stuck in the model function


def test_predict_timeout_0_disables_the_watchdog(tmp_path, harness, start):
    container = start(harness.port, make_model_dir(tmp_path, SLOW), CLIPPER_PREDICT_TIMEOUT="0")
    conn = harness.wait_registered()
    assert harness.predict(conn, InputType.DOUBLES, [struct.pack("<d", 1.5)]) == [b"1.5"]
    assert container.proc.poll() is None
    assert "no prediction watchdog" in container.log()


def test_sigterm_exits_cleanly_even_while_predicting(tmp_path, endpoint, start):
    harness, env = endpoint
    container = start(harness.port, make_model_dir(tmp_path, SLOW), **env)
    conn = harness.wait_registered()
    time.sleep(1.0)  # heartbeats observed: the server detects the exit in about a second
    harness.send_batch(conn, InputType.DOUBLES, [struct.pack("<d", 60.0)])
    time.sleep(0.3)
    container.proc.send_signal(signal.SIGTERM)
    assert container.wait(10) == 0
    assert "received SIGTERM: stopping" in container.log()
    gone, _ = harness.disconnected.get(timeout=20)
    assert gone is conn


@pytest.mark.parametrize("transport", ["tcp", "socket"])
@pytest.mark.parametrize("downtime", [0.0, 2.0], ids=["immediate", "after-reconnect-timeout"])
def test_predictions_resume_after_a_frontend_restart(tmp_path, start, downtime, transport):
    path = str(private_socket(tmp_path)) if transport == "socket" else None
    env = {"CLIPPER_RPC_SOCKET": path} if path else {}
    first = RpcHarness(liveness_timeout=1.0, ipc_path=path)
    port = first.port
    try:
        container = start(port, make_model_dir(tmp_path, SLOW), CLIPPER_RECONNECT_TIMEOUT="1", **env)
        conn = first.wait_registered()
        assert first.predict(conn, InputType.DOUBLES, [struct.pack("<d", 0.0)]) == [b"0.0"]
    finally:
        first.close()
    time.sleep(downtime)
    t0 = time.monotonic()
    second = RpcHarness(liveness_timeout=1.0, port=port, ipc_path=path)
    try:
        conn = second.wait_registered(timeout=30)
        print(f"re-registered {time.monotonic() - t0:.2f} s after the frontend came back")
        assert (conn.model_name, conn.replica_id) == ("m", 0)
        assert second.predict(conn, InputType.DOUBLES, [struct.pack("<d", 0.0)]) == [b"0.0"]
        assert container.proc.poll() is None
    finally:
        second.close()


def test_model_directory_modules_metrics_and_ready_file(tmp_path, harness, start):
    model = make_model_dir(
        tmp_path,
        """
        def f(xs):
            import helpermod
            import clipper_admin.metrics as metrics
            metrics.add_metric("user_batches", "Counter", "batches seen by the model")
            metrics.report_metric("user_batches", 1)
            return [helpermod.label(x) for x in xs]
        """,
        meta={"kind": "python", "python": "3.11"},
        modules={"helpermod.py": "def label(x):\n    return 'helped-' + x.decode()\n"},
    )
    metrics_port = free_port()
    ready = tmp_path / "ready.check"
    start(
        harness.port, model, "strings", CLIPPER_METRICS_PORT=str(metrics_port), CLIPPER_READY_FILE=str(ready)
    )
    conn = harness.wait_registered()
    assert ready.read_text() == "READY"
    assert harness.predict(conn, InputType.STRINGS, [b"a", b"b"]) == [b"helped-a", b"helped-b"]
    text = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
    assert "clipper_mc_pred_total 1.0" in text
    assert "clipper_mc_inputs_total 2.0" in text
    assert "user_batches_total 1.0" in text  # clipper_admin.metrics inside the model is exposed too
    for name in ("recv_time_ms", "parse_time_ms", "handle_time_ms", "end_to_end_latency_ms"):
        assert f"clipper_mc_{name}_count 1.0" in text


def _missing_module_pickle(tmp_path: Path) -> Path:
    """A func.pkl that refers to a module the container cannot import."""
    src = tmp_path / "gone_src"
    src.mkdir()
    (src / "vanished_pkg_for_test.py").write_text("def f(xs):\n    return xs\n")
    code = (
        "import sys, cloudpickle; sys.path.insert(0, sys.argv[1]); import vanished_pkg_for_test as m; "
        "open(sys.argv[2], 'wb').write(cloudpickle.dumps(m.f))"
    )
    d = tmp_path / "missing-dep"
    d.mkdir()
    subprocess.run([sys.executable, "-c", code, str(src), str(d / "func.pkl")], check=True)
    return d


@pytest.mark.parametrize(
    "case,code,message",
    [
        ("no-name", 1, "CLIPPER_MODEL_NAME environment variable must be set"),
        ("bad-type", 1, "CLIPPER_INPUT_TYPE: floaty is not a valid input string"),
        ("no-dir", 1, "does not exist (set CLIPPER_MODEL_PATH)"),
        ("no-pkl", 1, "func.pkl not found"),
        ("bad-kind", 1, "unknown model kind 'tensorflow'"),
        ("missing-dep", 3, "No module named 'vanished_pkg_for_test'"),
        ("bad-timeout", 1, "CLIPPER_PREDICT_TIMEOUT must be a number of seconds (0 disables), got '-1'"),
        ("relative-socket", 1, "CLIPPER_RPC_SOCKET must be an absolute path, got 'rpc.sock'"),
        (
            "bad-spin",
            1,
            "CLIPPER_RPC_SPIN_US must be a number of microseconds from 0 (off) to 10000, got '1e9'",
        ),
        ("bad-sched", 1, "CLIPPER_SCHED_BATCH must be 1 (on) or 0 (off), got 'yes'"),
    ],
)
def test_configuration_and_model_errors_exit_with_a_message(tmp_path, start, case, code, message):
    port = free_port()
    model = tmp_path / "empty-model"
    model.mkdir()
    env: dict[str, str] = {}
    input_type = "doubles"
    if case == "no-name":
        env["CLIPPER_MODEL_NAME"] = ""
    elif case == "bad-type":
        input_type = "floaty"
    elif case == "no-dir":
        model = tmp_path / "nowhere"
    elif case == "bad-kind":
        model = make_model_dir(tmp_path, "def f(xs):\n    return xs\n", meta={"kind": "tensorflow"})
    elif case == "missing-dep":
        model = _missing_module_pickle(tmp_path)
    elif case == "bad-timeout":
        env["CLIPPER_PREDICT_TIMEOUT"] = "-1"
    elif case == "relative-socket":
        env["CLIPPER_RPC_SOCKET"] = "rpc.sock"
    elif case == "bad-spin":
        env["CLIPPER_RPC_SPIN_US"] = "1e9"
    elif case == "bad-sched":
        env["CLIPPER_SCHED_BATCH"] = "yes"
    container = start(port, model, input_type, **env)
    assert container.wait() == code
    log = container.log()
    assert message in log
    assert "Traceback" not in log


def test_stop_ends_an_idle_session_blocked_in_its_receive(endpoint):
    """The session thread waits for messages in a blocking receive: stop() must still end it at
    once, not at the next heartbeat (30 s here) or reconnect."""
    import threading

    from clipper.container.config import ContainerConfig
    from clipper.container.runtime import STOP_CHECK_S, ContainerRuntime

    harness, env = endpoint
    socket_path = env.get("CLIPPER_RPC_SOCKET")
    config = ContainerConfig(
        "m",
        "1",
        InputType.DOUBLES,
        port=harness.port,
        heartbeat_interval=30.0,
        reconnect_after=60.0,
        rpc_socket=Path(socket_path) if socket_path else None,
    )
    runtime = ContainerRuntime(lambda xs: ["ok"] * len(xs), config)
    runner = threading.Thread(target=runtime.run, daemon=True)
    runner.start()
    conn = harness.wait_registered()
    assert harness.predict(conn, InputType.DOUBLES, [struct.pack("<d", 2.5)]) == [b"ok"]
    time.sleep(0.2)  # idle: the session thread is blocked in the receive
    t0 = time.monotonic()
    runtime.stop()
    runner.join(10)
    assert not runner.is_alive()
    assert time.monotonic() - t0 < STOP_CHECK_S + 2.0  # the bound, with room for a loaded machine


def test_a_container_given_the_frontends_unix_socket_serves_there_without_curve(tmp_path, start):
    """CLIPPER_RPC_SOCKET (the local backend's replicas): the container connects to the Unix socket
    instead of CLIPPER_IP/CLIPPER_PORT, and does not use the CURVE keys it holds there (the
    socket's endpoint has none: its file is owner-only); the TCP endpoint still demands them."""
    from clipper.rpc.auth import RPC_KEYS_FILE_ENV, RpcKeys

    keys = RpcKeys.generate()
    keys_file = tmp_path / "rpc_keys.json"
    keys.write(keys_file)
    private = tmp_path / "cluster"
    private.mkdir(mode=0o700)
    socket_path = private / "rpc.sock"
    h = RpcHarness(keys=keys.for_frontend(), ipc_path=str(socket_path))
    try:
        model = make_model_dir(tmp_path, "def f(xs):\n    return [str(float(sum(x))) for x in xs]\n")
        port_nobody_listens_on = free_port()
        container = start(
            port_nobody_listens_on,
            model,
            CLIPPER_RPC_SOCKET=str(socket_path),
            **{RPC_KEYS_FILE_ENV: str(keys_file)},
        )
        conn = h.wait_registered()
        assert conn.identity.startswith(b"i")  # the Unix socket's session
        assert h.predict(conn, InputType.DOUBLES, [struct.pack("<2d", 1.0, 2.5)]) == [b"3.5"]
        assert f"serving for unix://{socket_path}" in container.log()
    finally:
        h.close()


def _policies(pid: int) -> set[int]:
    return {os.sched_getscheduler(int(tid)) for tid in os.listdir(f"/proc/{pid}/task")}


@pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="SCHED_BATCH is Linux's")
@pytest.mark.parametrize(("setting", "policy"), [(None, "SCHED_BATCH"), ("0", "SCHED_OTHER")])
def test_a_replica_runs_as_batch_work_unless_told_not_to(tmp_path, harness, start, setting, policy):
    """By default every thread of a replica is SCHED_BATCH (a batch's wake-up does not preempt
    the query frontend); CLIPPER_SCHED_BATCH=0 leaves the ordinary policy."""
    model = make_model_dir(tmp_path, "def f(xs):\n    return [str(float(sum(x))) for x in xs]\n")
    env = {} if setting is None else {"CLIPPER_SCHED_BATCH": setting}
    container = start(harness.port, model, **env)
    conn = harness.wait_registered()
    assert harness.predict(conn, InputType.DOUBLES, [struct.pack("<2d", 1.0, 2.5)]) == [b"3.5"]
    assert _policies(container.proc.pid) == {getattr(os, policy)}
