"""Structured admin errors: ``status``/``kind`` attributes on ``ClipperException`` subclasses, with the
original's messages, and no decision taken on message text."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any

import pytest

from clipper.net import free_port
from clipper_admin import ClipperConnection
from clipper_admin.admin_client import AdminClient
from clipper_admin.exceptions import (
    AlreadyExists,
    ClipperException,
    ClipperHTTPError,
    ErrorKind,
    InvalidState,
    NotFound,
    Unauthorized,
    UnconnectedException,
)

ANSWERS = {  # endpoint -> (status, body), as the management frontend answers
    "delete_app": (400, "Application 'x' does not exist"),
    "add_app": (401, '{"error": "Unauthorized", "cause": "token"}'),
    "get_all_models": (500, "Error reading the config store: disk I/O error"),
}


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        status, body = ANSWERS.get(self.path.rsplit("/", 1)[-1], (404, "no route"))
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def admin() -> Iterator[AdminClient]:
    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    cm = SimpleNamespace(get_admin_addr=lambda: f"127.0.0.1:{port}", admin_token=None)
    try:
        yield AdminClient(cm, timeout=10)
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("endpoint", "cls", "status", "kind"),
    [
        ("delete_app", ClipperHTTPError, 400, ErrorKind.REJECTED),
        ("add_app", Unauthorized, 401, ErrorKind.UNAUTHORIZED),
        ("get_all_models", ClipperHTTPError, 500, ErrorKind.SERVER_ERROR),
        ("nowhere", ClipperHTTPError, 404, ErrorKind.NOT_FOUND),
    ],
)
def test_an_error_answer_carries_its_status_and_kind(admin, endpoint, cls, status, kind):
    with pytest.raises(ClipperException) as info:
        admin.post(endpoint, {})
    e = info.value
    assert type(e) is cls and e.status == status and e.kind is kind
    body = ANSWERS.get(endpoint, (404, "no route"))[1]
    assert str(e) == e.msg == f"Received error status code: {status} and message: {body}"  # the original's


def test_an_unreachable_frontend_is_unavailable():
    cm = SimpleNamespace(get_admin_addr=lambda: f"127.0.0.1:{free_port()}", admin_token=None)
    with pytest.raises(ClipperException) as info:
        AdminClient(cm, timeout=5).post("get_all_models", {})
    assert info.value.kind is ErrorKind.UNAVAILABLE and info.value.status is None


class FakeAdmin:
    """The management frontend's answers the connection's decisions depend on."""

    def __init__(self, registered: dict[tuple[str, str], dict[str, Any]], refuse_with: int = 400) -> None:
        self.registered = registered
        self.refuse_with = refuse_with

    def post(self, endpoint: str, body: dict[str, Any]) -> None:
        assert endpoint == "delete_versioned_model"
        # refused whatever the state: the text says nothing the connection may rely on
        raise ClipperHTTPError(
            f"Received error status code: {self.refuse_with} and message: ?", self.refuse_with
        )

    def post_json(self, endpoint: str, body: dict[str, Any]) -> Any:
        assert endpoint == "get_model"
        return self.registered.get((body["model_name"], str(body["model_version"])), {})


def connection(admin: FakeAdmin) -> ClipperConnection:
    conn = ClipperConnection(SimpleNamespace(cluster_identifier="c", admin_token=None))
    conn._admin = admin
    conn.connected = True
    return conn


def test_a_version_deleted_meanwhile_is_skipped_by_its_state_not_its_message():
    conn = connection(FakeAdmin({}))
    conn._unregister_versioned_models({"m": ["1"]}, ignore_gone=True)  # gone: skipped


def test_a_refused_delete_of_a_version_still_registered_is_raised():
    conn = connection(FakeAdmin({("m", "1"): {"model_name": "m"}}))
    with pytest.raises(ClipperHTTPError):
        conn._unregister_versioned_models({"m": ["1"]}, ignore_gone=True)


def test_a_server_failure_is_raised_even_for_a_version_gone():
    conn = connection(FakeAdmin({}, refuse_with=500))
    with pytest.raises(ClipperHTTPError) as info:
        conn._unregister_versioned_models({"m": ["1"]}, ignore_gone=True)
    assert info.value.kind is ErrorKind.SERVER_ERROR


def test_without_ignore_gone_every_refusal_is_raised():
    with pytest.raises(ClipperHTTPError):
        connection(FakeAdmin({}))._unregister_versioned_models({"m": ["1"]})


def test_client_side_refusals_have_kinds_and_the_original_messages():
    conn = connection(FakeAdmin({("m", "1"): {"model_name": "m", "container_name": "img"}}))
    with pytest.raises(AlreadyExists, match=r"^Model m:1 is already deployed"):
        conn.deploy_model("m", "1", "doubles", "img")
    conn.get_all_models = lambda verbose=False: []
    with pytest.raises(NotFound, match="^No versions of model m registered with Clipper$"):
        conn.get_current_model_version("m")
    with pytest.raises(NotFound, match="^Cannot add container for non-registered model m:2$"):
        conn.set_num_replicas("m", 2, version="2")
    from clipper_admin.container_manager import CONTAINERLESS_MODEL_IMAGE

    conn._admin.registered[("m", "3")] = {
        "container_name": CONTAINERLESS_MODEL_IMAGE,
        "input_type": "doubles",
    }
    with pytest.raises(InvalidState, match="^Cannot resize the replica set for containerless model m:3$"):
        conn.set_num_replicas("m", 2, version="3")
    conn.connected = False
    with pytest.raises(UnconnectedException) as info:
        conn.get_all_apps()
    assert info.value.kind is ErrorKind.INVALID_STATE
