"""Real serving-plane processes for integration tests: config store (SQLite file or a real
redis-server), management frontend, query frontend and model containers, all on free ports, all
killed at teardown. Nothing is mocked."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cloudpickle
import requests

from clipper.net import free_port
from clipper.rpc.auth import RPC_KEYS_FILE_ENV, RpcKeys

REPO = Path(__file__).resolve().parents[2]
SPEC_CONTAINER = REPO / "tests" / "spec_container" / "spec_container.py"


def wait_for(predicate: Callable[[], object], timeout: float = 30.0, what: str = "condition", step=0.05):
    end = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < end:
        try:
            v = predicate()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - retried until the timeout
            last_exc = e
        time.sleep(step)
    raise TimeoutError(f"timed out after {timeout} s waiting for {what} (last error: {last_exc!r})")


def make_model_dir(root: Path, name: str, func: Callable) -> Path:
    """A model directory as ``docs/internals.md`` describes it: func.pkl (cloudpickle)."""
    d = root / "models" / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "func.pkl").write_bytes(cloudpickle.dumps(func))
    return d


@contextlib.contextmanager
def redis_server(tmp: Path) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        import redis

        r = redis.Redis(port=port)
        wait_for(r.ping, 10, "redis-server")
        r.close()
        yield f"redis://127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait()


class Cluster:
    """Processes of one serving plane sharing ``store_url``.

    ``rpc_auth="curve"`` (the default, as the container managers run it): the query frontend admits
    only replicas holding the keys in ``rpc_keys_file``, which :meth:`start_container` hands on
    (``rpc_keys`` for in-test peers). ``"none"``: the cluster opted in to unauthenticated replicas,
    e.g. the original-protocol spec container."""

    def __init__(self, root: Path, store_url: str, rpc_auth: str = "curve") -> None:
        self.root = root
        self.store_url = store_url
        self.logs = root / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.env = dict(os.environ, CLIPPER_HOME=str(root), PYTHONPATH=str(REPO))
        self.procs: list[subprocess.Popen] = []
        self.mgmt_port = free_port()
        self.http_port = free_port()
        self.rpc_port = free_port()
        self.qf: subprocess.Popen | None = None
        self._qf_started = False
        self.http = requests.Session()
        self.rpc_keys: RpcKeys | None = None
        self.rpc_keys_file = root / "rpc_keys.json"
        if rpc_auth == "curve":
            self.rpc_keys = RpcKeys.generate()
            self.rpc_keys.write(self.rpc_keys_file)
        elif rpc_auth != "none":
            raise ValueError(rpc_auth)

    # -- processes -----------------------------------------------------------------------------
    def spawn(self, args: list[str], log: str, env: dict | None = None) -> subprocess.Popen:
        out = open(self.logs / log, "ab")  # noqa: SIM115 - closed with the process
        p = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env or self.env)
        out.close()
        self.procs.append(p)
        return p

    def start_mgmt(self) -> None:
        self.spawn(
            [
                sys.executable,
                "-m",
                "clipper.management_frontend",
                "--store",
                self.store_url,
                "--port",
                str(self.mgmt_port),
            ],
            "mgmt.log",
        )
        wait_for(lambda: self.http.get(f"{self.admin}/ping", timeout=1).ok, 20, "management frontend")

    def start_query_frontend(self, *extra: str) -> None:
        """Start it and wait until *it* listens (its start-up line names both ports: a server of
        another test that took the port meanwhile would answer /health too). On its first start a
        port taken between ``free_port()`` and the bind (the other lane's servers pick ports as
        well) is picked again, up to three times; a restart keeps the ports its replicas know."""
        first = not self._qf_started
        self._qf_started = True
        for attempt in range(3):
            qf, output = self._spawn_query_frontend(
                self.http_port, self.rpc_port, extra, "query_frontend.log"
            )
            self.qf = qf
            if qf.poll() is None:
                wait_for(lambda: self.http.get(f"{self.url}/health", timeout=1).ok, 20, "query frontend")
                return
            if not first or attempt == 2 or "address already in use" not in output:
                raise AssertionError(f"the query frontend exited with {qf.returncode}:\n{output[-3000:]}")
            self.http_port, self.rpc_port = free_port(), free_port()

    def start_another_query_frontend(self, *extra: str) -> tuple[subprocess.Popen, int, int]:
        """A second query frontend on the same store, on ports of its own: the process and its HTTP
        and RPC ports once it listens on both (ports taken meanwhile are picked again, up to three
        times, as on the first frontend's first start)."""
        for attempt in range(3):
            http_port, rpc_port = free_port(), free_port()
            qf, output = self._spawn_query_frontend(http_port, rpc_port, extra, "qf2.log")
            if qf.poll() is None:
                return qf, http_port, rpc_port
            if attempt == 2 or "address already in use" not in output:
                raise AssertionError(
                    f"the second query frontend exited with {qf.returncode}:\n{output[-3000:]}"
                )
        raise AssertionError("unreachable")

    def _spawn_query_frontend(
        self, http_port: int, rpc_port: int, extra: tuple[str, ...], log_name: str
    ) -> tuple[subprocess.Popen, str]:
        """The started process once it listens on both ports or has exited, and what it logged (a
        start-up under the other lanes' load can take seconds: waited for up to a minute)."""
        log = self.logs / log_name
        offset = log.stat().st_size if log.exists() else 0
        args = ["--store", self.store_url, "--port", str(http_port), "--rpc-port", str(rpc_port)]
        qf = self.spawn(
            [sys.executable, "-m", "clipper.query_frontend", *args, *self.rpc_auth_args(), *extra],
            log_name,
        )
        listening = (f":{http_port}, RPC ", f":{rpc_port}, hot path")

        def output() -> str:
            return log.read_bytes()[offset:].decode(errors="replace") if log.exists() else ""

        wait_for(lambda: qf.poll() is not None or all(t in output() for t in listening), 60, "query frontend")
        return qf, output()

    def rpc_auth_args(self) -> list[str]:
        if self.rpc_keys is None:
            return ["--rpc-auth", "none"]
        return ["--rpc-auth", "curve", "--rpc-keys-file", str(self.rpc_keys_file)]

    def stop_query_frontend(self) -> None:
        assert self.qf is not None
        self.qf.send_signal(signal.SIGTERM)
        try:
            self.qf.wait(10)
        except subprocess.TimeoutExpired:
            self.qf.kill()
            self.qf.wait()
        self.qf = None

    def start_container(
        self, model_dir: Path, name: str, version: str, input_type: str, rpc_port: int | None = None
    ) -> subprocess.Popen:
        env = dict(
            self.env,
            CLIPPER_MODEL_NAME=name,
            CLIPPER_MODEL_VERSION=version,
            CLIPPER_IP="127.0.0.1",
            CLIPPER_PORT=str(rpc_port or self.rpc_port),
            CLIPPER_INPUT_TYPE=input_type,
            CLIPPER_MODEL_PATH=str(model_dir),
        )
        if self.rpc_keys is not None:
            env[RPC_KEYS_FILE_ENV] = str(self.rpc_keys_file)
        return self.spawn([sys.executable, "-m", "clipper.container"], f"container-{name}-{version}.log", env)

    def start_spec_container(self, name: str, version: str, type_code: int) -> subprocess.Popen:
        return self.spawn(
            [
                sys.executable,
                str(SPEC_CONTAINER),
                "127.0.0.1",
                str(self.rpc_port),
                name,
                version,
                str(type_code),
                "0.5",
            ],
            f"spec-{name}-{version}.log",
        )

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.http.close()

    def log_tail(self, name: str = "query_frontend.log", n: int = 4000) -> str:
        p = self.logs / name
        return p.read_text(errors="replace")[-n:] if p.exists() else ""

    # -- HTTP ----------------------------------------------------------------------------------
    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.mgmt_port}/admin"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def admin_call(self, route: str, body: dict) -> requests.Response:
        r = self.http.post(f"{self.admin}/{route}", json=body, timeout=10)
        assert r.status_code == 200, f"{route}: {r.status_code} {r.text}"
        return r

    def add_app(self, name: str, input_type: str, slo_micros: int, default_output: str = "-1.0") -> None:
        self.admin_call(
            "add_app",
            {
                "name": name,
                "input_type": input_type,
                "default_output": default_output,
                "latency_slo_micros": slo_micros,
            },
        )

    def add_model(self, name: str, version: str, input_type: str, batch_size: int = -1) -> None:
        self.admin_call(
            "add_model",
            {
                "model_name": name,
                "model_version": version,
                "labels": [],
                "input_type": input_type,
                "container_name": "local",
                "model_data_path": "DEPRECATED",
                "batch_size": batch_size,
            },
        )

    def link(self, app: str, model: str) -> None:
        self.admin_call("add_model_links", {"app_name": app, "model_names": [model]})

    def predict(self, app: str, body: dict | bytes, timeout: float = 30.0) -> requests.Response:
        if isinstance(body, bytes):
            return self.http.post(f"{self.url}/{app}/predict", data=body, timeout=timeout)
        return self.http.post(f"{self.url}/{app}/predict", json=body, timeout=timeout)

    def wait_serving(self, app: str, body: dict, timeout: float = 30.0) -> dict:
        """Until the app answers with a model output (not a default)."""

        def ok():
            r = self.predict(app, body, timeout=5)
            return r.status_code == 200 and not r.json().get("default") and r.json()

        return wait_for(ok, timeout, f"{app} serving model outputs")

    def containers(self) -> list[str]:
        return self.admin_call("get_all_containers", {"verbose": False}).json()

    def metrics(self) -> dict:
        """The /metrics JSON flattened to {name: {field: value}}."""
        doc = self.http.get(f"{self.url}/metrics", timeout=5).json()
        return {k: v for cat in doc.values() for entry in cat for k, v in entry.items()}
