"""clipper.rpc.auth: the cluster's CURVE keys, their files and the roles' checks."""

from __future__ import annotations

import stat

import pytest
import zmq

from clipper.rpc.auth import RPC_KEYS_ENV, RPC_KEYS_FILE_ENV, RpcKeyError, RpcKeys, check_role, keys_from_env
from clipper.rpc.server import DEFAULT_MAX_MESSAGE_BYTES
from tests.spec_container.harness import RpcHarness


def test_roles_get_only_the_secret_they_need():
    keys = RpcKeys.generate()
    frontend, replica = keys.for_frontend(), keys.for_replica()
    assert (frontend.server_secret, frontend.client_secret) == (keys.server_secret, None)
    assert (replica.server_secret, replica.client_secret) == (None, keys.client_secret)
    check_role(frontend, "frontend")
    check_role(replica, "replica")
    with pytest.raises(RpcKeyError, match="the RPC keys given to the replica lack client_secret"):
        check_role(frontend, "replica")
    assert RpcKeys.from_json(replica.to_json()) == replica


def test_key_files_are_owner_only_and_read_back(tmp_path):
    keys = RpcKeys.generate()
    path = tmp_path / "rpc_keys.json"
    keys.write(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert RpcKeys.read(path) == keys
    assert keys_from_env({RPC_KEYS_FILE_ENV: str(path)}, role="frontend") == keys
    assert keys_from_env({RPC_KEYS_ENV: keys.to_json(), RPC_KEYS_FILE_ENV: "/missing"}) == keys
    assert keys_from_env({}) is None


@pytest.mark.parametrize(
    "text, message",
    [
        ("[]", "not a JSON object"),
        ('{"server_public": "x"}', "server_public is not a 40-character Z85 CURVE key"),
        ('{"server_public": "' + "a" * 40 + '"}', "client_public is missing"),
    ],
)
def test_malformed_keys_say_what_is_wrong(text, message):
    with pytest.raises(RpcKeyError, match=message):
        RpcKeys.from_json(text)


def test_the_rpc_socket_limits_inbound_frames_by_default():
    h = RpcHarness()
    try:
        assert h.server.max_message_bytes == DEFAULT_MAX_MESSAGE_BYTES == 64 << 20
        assert h.on_loop(lambda: h.server._sock.getsockopt(zmq.MAXMSGSIZE)) == DEFAULT_MAX_MESSAGE_BYTES
    finally:
        h.close()
