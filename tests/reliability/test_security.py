"""Security properties, verified on live processes: loopback-only listeners on the local backend, the
admin token on every /admin/* route (compared in constant time), and pickles never loaded from HTTP
or RPC input. docs/security.md holds the threat model these tests check."""

from __future__ import annotations

import base64
import contextlib
import hmac
import json
import os
import pickle
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import zmq

from clipper.config_store import open_store
from clipper.http.server import Request
from clipper.management_frontend.app import ManagementApp
from clipper.net import free_port
from clipper_admin import ClipperConnection, ClipperException, LocalContainerManager
from clipper_admin.local.build import model_dir_of
from reconciler.errors import ManifestErrors
from reconciler.loader import load_manifests
from tests.integration.admin_local_fixtures import new_manager, predict, start_cluster
from tests.integration.cluster_fixtures import Cluster, make_model_dir, wait_for

from .peers import FakeReplica, new_container, u32

pytestmark = pytest.mark.slow

TOKEN = "s3cret-token"
MGMT_SPEC = json.loads((Path(__file__).parents[2] / "clipper/management_frontend/openapi.json").read_text())


def listening_addresses() -> dict[int, set[str]]:
    """Port -> local addresses in LISTEN state, from /proc/net/tcp and tcp6."""
    out: dict[int, set[str]] = {}
    for name in ("tcp", "tcp6"):
        path = Path(f"/proc/net/{name}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            local, state = fields[1], fields[3]
            if state != "0A":  # LISTEN
                continue
            addr_hex, port_hex = local.split(":")
            if len(addr_hex) == 8:
                addr = ".".join(str(b) for b in reversed(bytes.fromhex(addr_hex)))
            else:
                addr = "::1" if addr_hex == "00000000000000000000000001000000" else addr_hex
            out.setdefault(int(port_hex, 16), set()).add(addr)
    return out


@pytest.fixture(scope="module")
def secure(tmp_path_factory):
    home = tmp_path_factory.mktemp("secure_home")
    old = os.environ.get("CLIPPER_HOME")
    os.environ["CLIPPER_HOME"] = str(home)
    conn = start_cluster("secure", home, admin_token=TOKEN)
    try:
        yield conn
    finally:
        conn.stop_all()
        if old is None:
            os.environ.pop("CLIPPER_HOME", None)
        else:
            os.environ["CLIPPER_HOME"] = old


def test_local_backend_listens_on_loopback_only(secure):
    cm = secure.cm
    listening = listening_addresses()
    for port in (cm.clipper_query_port, cm.clipper_management_port, cm.clipper_rpc_port):
        assert listening.get(port) == {"127.0.0.1"}, (port, listening.get(port))


def admin_routes() -> list[str]:
    return sorted(p for p in MGMT_SPEC["paths"] if p.startswith("/admin/"))


def test_every_admin_route_requires_the_token(secure):
    base = f"http://{secure.cm.get_admin_addr()}"
    routes = admin_routes()
    assert len(routes) >= 15
    for path in routes:
        method = next(iter(MGMT_SPEC["paths"][path])).upper()
        wrong = (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": f"Basic {TOKEN}"},
            {"Authorization": f"Bearer {TOKEN}x"},
            {"Authorization": "Bearer s3cret-tokén"},  # non-ASCII: still a plain 401
        )
        for headers in wrong:
            r = requests.request(method, base + path, json={}, headers=headers, timeout=10)
            if path == "/admin/ping":  # the readiness probe, as in the original
                assert r.status_code == 200
                continue
            assert r.status_code == 401, (path, headers, r.status_code, r.text)
            assert r.headers["WWW-Authenticate"] == "Bearer"
            assert r.json()["error"] == "Unauthorized"
        r = requests.request(
            method, base + path, json={}, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
        )
        assert r.status_code != 401, path
    # The admin API itself works with the token (ClipperConnection reads it from the cluster dir).
    secure.register_application("app", "doubles", "0", 100_000)
    assert "app" in secure.get_all_apps()


def test_token_is_compared_in_constant_time(tmp_path, monkeypatch):
    """Every authorization goes through ``hmac.compare_digest`` (no early-exit ``==``)."""
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def recording(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", recording)
    store = open_store(f"sqlite:///{tmp_path}/config.db")
    try:
        app = ManagementApp(store, admin_token=TOKEN)
        for header, expected in ((f"Bearer {TOKEN}", 200), ("Bearer nope", 401), (f"bearer {TOKEN}", 200)):
            req = Request(
                "POST",
                "/admin/get_all_applications",
                "",
                {"authorization": header},
                b'{"verbose": false}',
                True,
            )
            assert app(req).status == expected
        assert [b for _, b in calls] == [TOKEN.encode()] * 3
    finally:
        store.close()


# -- pickles are never loaded from the network -------------------------------------------------------


class Booby:
    """Unpickling this creates a directory: proof that someone called pickle.loads on our bytes."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@pytest.fixture
def plain_cluster(tmp_path):
    c = Cluster(tmp_path, f"sqlite:///{tmp_path}/config.db")
    try:
        c.start_mgmt()
        c.start_query_frontend()
        c.add_app("b", "bytes", 2_000_000)
        c.add_model("mb", "1", "bytes")
        c.link("b", "mb")
        c.start_container(
            make_model_dir(tmp_path, "mb", lambda xs: [str(len(x)) for x in xs]), "mb", "1", "bytes"
        )
        c.wait_serving("b", {"input": base64.b64encode(b"hi").decode()})
        yield c
    finally:
        c.close()


def test_pickles_sent_over_http_or_rpc_are_never_loaded(plain_cluster, tmp_path):
    c = plain_cluster
    marker = tmp_path / "unpickled"
    payload = pickle.dumps(Booby(marker))
    assert not marker.exists()
    # HTTP: as the raw body of every admin and query route, as a bytes input, in add_model's fields.
    for path in admin_routes():
        c.http.post(f"http://127.0.0.1:{c.mgmt_port}{path}", data=payload, timeout=10)
    for path in ("/b/predict", "/b/update", "/metrics", "/health"):
        c.http.post(f"{c.url}{path}", data=payload, timeout=10)
    b64 = base64.b64encode(payload).decode()
    out = c.predict("b", {"input": b64}).json()
    assert out["output"] == len(payload)  # the model got the bytes as bytes
    c.http.post(
        f"{c.admin}/add_model",
        json={"model_name": "evil", "model_version": "1", "labels": [], "input_type": "bytes",
              "container_name": b64, "model_data_path": b64, "batch_size": -1},
        timeout=10,
    )  # fmt: skip
    # RPC: as registration fields, as a response's outputs, as raw frames.
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    # the frontend refuses this unauthenticated peer's handshake: between its reconnects a DEALER has
    # no pipe to queue into and a send would block for ever, so each send gives up after 2 s
    sock.setsockopt(zmq.SNDTIMEO, 2000)
    sock.connect(f"tcp://127.0.0.1:{c.rpc_port}")
    header = struct.pack("<2Q", 1, len(payload))
    try:
        for frames in (
            [b"", u32(2)],
            [b"", u32(0), payload, payload, b"3", u32(3)],
            new_container("mb", "1", 0)[:-1] + [payload],
            [b"", u32(1), u32(0), struct.pack("<Q", 16), header, payload],
            [payload],
        ):
            with contextlib.suppress(zmq.Again):
                sock.send_multipart(frames)
    finally:
        sock.close(0)
        ctx.term()
    fake = FakeReplica(c.rpc_port, "mb", "1", "hang", keys=c.rpc_keys)
    fake.start()
    fake.stop()
    assert c.predict("b", {"input": b64}).json()["output"] == len(payload)
    assert not marker.exists()
    assert c.qf is not None and c.qf.poll() is None
    wait_for(lambda: c.http.get(f"{c.url}/health", timeout=5).ok, 10, "health")


def test_model_code_comes_only_from_the_model_directory(secure, tmp_path):
    """A deployed closure is loaded from the cluster's own model directory (built by the admin),
    owner-writable only; the RPC registration carries names, never code."""
    from clipper_admin.deployers import python as python_deployer

    def ident(xs):  # nested: pickled by value, with no reference to this test package
        return [str(sum(x)) for x in xs]

    python_deployer.deploy_python_closure(secure, name="idm", version=1, input_type="doubles", func=ident)
    secure.register_application("code-app", "doubles", "0", 1_000_000)
    secure.link_model_to_app(app_name="code-app", model_name="idm")
    assert float(predict(secure, "code-app", {"input": [1.0, 2.0]})["output"]) == 3.0
    model_dir = secure.cm.dir.models / "idm" / "1"
    assert (model_dir / "func.pkl").exists()
    assert not (model_dir.stat().st_mode & 0o022), oct(model_dir.stat().st_mode)


# -- the admin token by default, where it lives, and the opt-out ---------------------------------------


def _proc_texts(pid: int) -> bytes:
    """What other local users may read about a process: its command line (``ps``)."""
    return Path(f"/proc/{pid}/cmdline").read_bytes()


def test_a_cluster_requires_a_generated_token_by_default(tmp_path):
    """``ClipperConnection(LocalContainerManager()).start_clipper()`` with no token argument: the
    management API answers 401 without the generated token, which lives only in an owner-only file;
    ``connect()`` from another process finds it with no token argument."""
    conn = start_cluster("default-auth", tmp_path)
    try:
        cm = conn.cm
        token = cm.admin_token
        assert token and len(token) == 64
        admin = f"http://{cm.get_admin_addr()}/admin"
        r = requests.post(f"{admin}/get_all_applications", json={"verbose": False}, timeout=10)
        assert r.status_code == 401
        assert requests.get(f"{admin}/ping", timeout=10).status_code == 200
        conn.register_application("app", "doubles", "0", 1000)
        # owner-only: the token file, the cluster directory; the token is in no other file
        root = cm.dir.root
        assert (root / "admin_token").stat().st_mode & 0o777 == 0o600
        assert root.stat().st_mode & 0o777 == 0o700
        assert (root / "admin_token").read_text().strip() == token
        for path in root.rglob("*"):
            if path.is_file() and path.name != "admin_token":
                assert token.encode() not in path.read_bytes(), path
        # nowhere in a process environment or command line of the cluster
        pids = [p["pid"] for p in cm.dir.read_status().values() if p.get("pid")]
        assert pids
        for pid in [*pids, cm.dir.supervisor_pid()]:
            assert token.encode() not in _proc_texts(pid)
            assert token.encode() not in Path(f"/proc/{pid}/environ").read_bytes()
        script = (
            "import sys\n"
            "from clipper_admin import ClipperConnection, LocalContainerManager\n"
            "c = ClipperConnection(LocalContainerManager('default-auth', state_dir=sys.argv[1]))\n"
            "c.connect()\n"
            "print(c.get_all_apps())\n"
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLIPPER_ADMIN")}
        out = subprocess.run(
            [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=60, env=env
        )
        assert out.stdout.strip() == "['app']", out.stderr
        # an explicitly given token is honoured: a wrong one is refused by the server
        other = ClipperConnection(new_manager("default-auth", tmp_path, admin_token="not-the-token"))
        other.connect()
        with pytest.raises(ClipperException, match="401"):
            other.get_all_apps()
    finally:
        conn.stop_all()
    assert not (tmp_path / "default-auth" / "admin_token").exists()


def test_opting_out_of_the_token_is_explicit_and_warned_about(tmp_path, caplog):
    conn = start_cluster("open", tmp_path, admin_token=False)
    try:
        assert conn.cm.admin_token is None
        assert "requires no token (admin_token=False)" in caplog.text
        r = requests.post(
            f"http://{conn.cm.get_admin_addr()}/admin/get_all_applications",
            json={"verbose": False},
            timeout=10,
        )
        assert r.status_code == 200  # REST clients of the original keep working
        assert json.loads((tmp_path / "open" / "cluster.json").read_text())["admin_auth"] == "none"
        log = conn.cm.dir.log_file("management").read_text()
        assert "no admin token" in log
    finally:
        conn.stop_all()


def test_an_empty_token_is_an_error(tmp_path):
    with pytest.raises(ClipperException, match="admin_token is empty"):
        new_manager("empty", tmp_path, admin_token="")
    with pytest.raises(ClipperException, match="admin_token is empty"):
        new_manager("empty", tmp_path, admin_token="   ")
    manifest = tmp_path / "cluster.yaml"
    manifest.write_text(
        "apiVersion: clipper.ai/v1\nkind: Cluster\nmetadata: {name: c}\nspec:\n  adminToken: ${TOKEN}\n"
    )
    with pytest.raises(ManifestErrors) as e:
        load_manifests([str(manifest)], env={"TOKEN": ""})
    assert f"{manifest}:5:3" in str(e.value) and "spec.adminToken" in str(e.value)


# -- provenance: the local backend runs only model directories it built ------------------------------


def _model_dir(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "func.pkl").write_bytes(pickle.dumps(len))
    return path


def test_local_backend_runs_only_model_directories_it_built(tmp_path):
    models = tmp_path / "cluster" / "models"
    own = _model_dir(models / "m" / "1")
    assert model_dir_of(f"local:{own}", models) == own.resolve()
    outside = _model_dir(tmp_path / "elsewhere")
    (models / "evil").mkdir()
    (models / "evil" / "1").symlink_to(outside)
    for image in (
        f"local:{outside}",  # not under the cluster's models
        str(outside),
        f"local:{models / 'evil' / '1'}",  # a symlink out of it
        f"local:{models / 'm' / '1' / '..' / '..' / '..' / '..' / 'elsewhere'}",  # .. out of it
        f"local:{models}",
    ):
        with pytest.raises(ClipperException, match="runs only model directories it built"):
            model_dir_of(image, models)
    if os.getuid() == 0:  # another owner can be simulated only as root
        foreign = _model_dir(models / "foreign" / "1")
        os.chown(foreign / "func.pkl", 65534, 65534)
        with pytest.raises(ClipperException, match="belongs to another user"):
            model_dir_of(f"local:{foreign}", models)


# -- the attack of issue 12: forged add_model + labels, then clipper apply -----------------------------

APPLY_MODEL_SRC = "def predict(xs):\n    return [str(sum(x)) for x in xs]\n"


def _manifests(ports: tuple[int, int, int], version: str, auth: str) -> str:
    q, m, r = ports
    return f"""\
apiVersion: clipper.ai/v1
kind: Cluster
metadata: {{name: victim}}
spec: {{backend: local, queryPort: {q}, managementPort: {m}, rpcPort: {r}{auth}}}
---
apiVersion: clipper.ai/v1
kind: Model
metadata: {{name: sum-model}}
spec:
  inputType: doubles
  version: "{version}"
  source: {{python: {{function: models/sum_model.py:predict}}}}
"""


def _clipper(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "reconciler", "--no-color", *args],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.mark.parametrize("auth", ["", ", adminAuth: none"], ids=["token", "opt-out"])
def test_forged_model_version_never_runs_through_clipper_apply(tmp_path, auth):
    """A second local user registers the version the admin is about to roll out, with the
    reconciler's labels and a ``container_name`` naming their own directory. With the default token
    the request is refused (401); on a cluster that opted out of the token, ``clipper apply`` does
    not start that directory: the version is a conflict, and the backend refuses it anyway."""
    home, work = tmp_path / "home", tmp_path / "work"
    (work / "models").mkdir(parents=True)
    (work / "models" / "sum_model.py").write_text(APPLY_MODEL_SRC)
    env = {**os.environ, "CLIPPER_HOME": str(home)}
    env.pop("CLIPPER_ADMIN_TOKEN", None)
    ports = (free_port(), free_port(), free_port())
    f = work / "all.yaml"
    f.write_text(_manifests(ports, "1", auth))
    out = _clipper("apply", "-f", str(f), env=env)
    try:
        assert out.returncode == 0, out.stdout + out.stderr
        # the attacker: a model directory whose func.pkl runs their code when loaded
        marker = tmp_path / "attacker-code-ran"
        evil = tmp_path / "attacker" / "model"
        evil.mkdir(parents=True)
        (evil / "func.pkl").write_bytes(pickle.dumps(Booby(marker)))
        from reconciler.labels import CONTENT_HASH, MANAGED_BY

        r = requests.post(
            f"http://127.0.0.1:{ports[1]}/admin/add_model",
            json={"model_name": "sum-model", "model_version": "2", "input_type": "doubles",
                  "labels": [f"{MANAGED_BY}=victim", f"{CONTENT_HASH}=whatever"],
                  "container_name": f"local:{evil}", "model_data_path": "DEPRECATED", "batch_size": -1},
            timeout=10,
        )  # fmt: skip
        if not auth:
            assert r.status_code == 401
            return
        assert r.status_code == 200, r.text
        # the admin's next release is version 2, the attacker's registered one
        f.write_text(_manifests(ports, "2", auth))
        out = _clipper("apply", "-f", str(f), env=env)
        assert out.returncode != 0
        text = " ".join((out.stdout + out.stderr).split())
        want = "Model/sum-model version 2 is registered but was not deployed by this cluster's clipper apply"
        assert want in text, text
        # neither through the reconciler nor through the Python API does that directory start
        conn = ClipperConnection(LocalContainerManager("victim", state_dir=str(home), admin_token=False))
        conn.connect()
        with pytest.raises(ClipperException, match="runs only model directories it built"):
            conn.set_num_replicas("sum-model", 1, "2")
        assert not any("model/sum-model/2" in p for p in conn.cm.dir.read_desired())
        time.sleep(1)
        assert not marker.exists()
    finally:
        _clipper("delete", "-f", str(f), "--cluster", env=env)


def test_management_frontend_reads_the_token_from_a_file(tmp_path, monkeypatch, capsys):
    from clipper.management_frontend.__main__ import parse_args

    monkeypatch.delenv("CLIPPER_ADMIN_TOKEN", raising=False)
    token_file = tmp_path / "admin_token"
    token_file.write_text(TOKEN + "\n")
    monkeypatch.setenv("CLIPPER_ADMIN_TOKEN_FILE", str(token_file))
    assert parse_args(["--store", "sqlite:///x.db"]).admin_token == TOKEN
    for content in ("", "  \n"):
        token_file.write_text(content)
        with pytest.raises(SystemExit) as e:
            parse_args(["--store", "sqlite:///x.db"])
        assert e.value.code == 2 and "is empty" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args(["--store", "sqlite:///x.db", "--admin-token-file", str(tmp_path / "missing")])
    assert "cannot read the admin token file" in capsys.readouterr().err
