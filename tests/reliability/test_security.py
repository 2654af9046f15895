"""Security properties, verified on live processes: loopback-only listeners on the local backend, the
admin token on every /admin/* route (compared in constant time), and pickles never loaded from HTTP
or RPC input. docs/security.md holds the threat model these tests check."""

from __future__ import annotations

import base64
import hmac
import json
import os
import pickle
import struct
from pathlib import Path

import pytest
import requests
import zmq

from clipper.config_store import open_store
from clipper.http.server import Request
from clipper.management_frontend.app import ManagementApp
from tests.integration.admin_local_fixtures import predict, start_cluster
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
    sock.connect(f"tcp://127.0.0.1:{c.rpc_port}")
    try:
        sock.send_multipart([b"", u32(2)])
        sock.send_multipart([b"", u32(0), payload, payload, b"3", u32(3)])
        sock.send_multipart(new_container("mb", "1", 0)[:-1] + [payload])
        header = struct.pack("<2Q", 1, len(payload))
        sock.send_multipart([b"", u32(1), u32(0), struct.pack("<Q", 16), header, payload])
        sock.send_multipart([payload])
    finally:
        sock.close(0)
        ctx.term()
    fake = FakeReplica(c.rpc_port, "mb", "1", "hang")
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
