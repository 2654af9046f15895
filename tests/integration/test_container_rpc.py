"""The container's RPC client: CURVE keys, and compatibility with a frontend that speaks only the
original protocol (no error frame), as a real ``python -m clipper.container`` process."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from clipper.datatypes import InputType
from clipper.net import free_port
from clipper.rpc.auth import RPC_KEYS_ENV, RPC_KEYS_FILE_ENV, RpcKeys
from tests.integration.test_container_runtime import Container, make_model_dir
from tests.spec_container.harness import RpcHarness

MODEL = """
def f(xs):
    if xs[0] == b"raise":
        raise ValueError("bad input")
    return ["\\x00Eevil" if x == b"evil" else x.decode().upper() for x in xs]
"""


def u32(x: int) -> bytes:
    return struct.pack("<I", x)


@pytest.fixture
def started() -> Iterator[list[Container]]:
    procs: list[Container] = []
    yield procs
    for c in procs:
        c.kill()


def test_a_container_with_the_clusters_keys_registers_and_others_do_not(tmp_path: Path, started):
    keys = RpcKeys.generate()
    other = RpcKeys.generate()
    keys_file = tmp_path / "rpc_keys.json"
    keys.for_replica().write(keys_file)
    model = make_model_dir(tmp_path, MODEL)
    h = RpcHarness(liveness_timeout=1.0, keys=keys.for_frontend())
    try:
        # wrong keys, and no keys at all (an original-protocol container): never registered
        wrong = RpcKeys(keys.server_public, other.client_public, client_secret=other.client_secret)
        started.append(Container(tmp_path, h.port, model, "strings", **{RPC_KEYS_ENV: wrong.to_json()}))
        started.append(Container(tmp_path, h.port, model, "strings"))
        started.append(Container(tmp_path, h.port, model, "strings", **{RPC_KEYS_FILE_ENV: str(keys_file)}))
        conn = h.wait_registered()
        assert h.predict(conn, InputType.STRINGS, [b"a", b"evil"]) == [b"A", b"\x00Eevil"]
        outputs, errors = h.predict_with_errors(conn, InputType.STRINGS, [b"raise", b"b"])
        assert outputs == [b"", b""] and errors == {0: "Model error: ValueError: bad input"} | {
            1: "Model error: ValueError: bad input"
        }
        with pytest.raises(Exception):  # noqa: B017 - queue.Empty: nobody else registers
            h.wait_registered(timeout=3)
        assert len(h.connections()) == 1
        assert h.stats()["handshake_failures"] >= 2
    finally:
        h.close()


@pytest.mark.parametrize(
    "env, message",
    [
        ({RPC_KEYS_ENV: "{not json"}, "CLIPPER_RPC_KEYS: not a JSON document of RPC keys"),
        (
            {RPC_KEYS_FILE_ENV: "/nonexistent/keys.json"},
            "cannot read the RPC key file /nonexistent/keys.json",
        ),
        (
            {RPC_KEYS_ENV: RpcKeys.generate().for_frontend().to_json()},
            "the RPC keys given to the replica lack client_secret",
        ),
    ],
)
def test_unusable_keys_stop_the_container_with_the_reason(tmp_path: Path, env, message):
    c = Container(tmp_path, free_port(), make_model_dir(tmp_path, MODEL), "strings", **env)
    assert c.wait() == 1
    assert message in c.log()


def test_against_an_original_protocol_frontend(tmp_path: Path, started):
    """A ROUTER speaking RPC v3 as the original frontend did (never announces the error frame): our
    container answers with exactly one frame per input, a failed input's reason as its text."""
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    try:
        started.append(Container(tmp_path, port, make_model_dir(tmp_path, MODEL), "strings"))

        def recv() -> list[bytes]:
            assert router.poll(20_000), "nothing from the container"
            return router.recv_multipart()

        identity, *frames = recv()
        assert frames == [b"", u32(2)]  # heartbeat
        router.send_multipart([identity, b"", u32(3), u32(2), u32(1)])  # RequestContainerMetadata
        while frames[1] != u32(0):
            identity, *frames = recv()
        assert frames == [b"", u32(0), b"m", b"1", b"4", u32(3)]

        def predict(inputs: list[bytes], msg_id: int) -> list[bytes]:
            header = struct.pack(f"<{len(inputs) + 2}Q", 4, len(inputs), *map(len, inputs))
            router.send_multipart(
                [
                    identity,
                    b"",
                    u32(3),
                    u32(1),
                    u32(msg_id),
                    u32(0),
                    struct.pack("<Q", len(header)),
                    header,
                    *inputs,
                ]
            )
            while True:
                _, *frames = recv()
                if frames[1] == u32(1):
                    break
            n = struct.unpack_from("<Q", frames[4])[0]
            assert frames[2] == u32(msg_id) and len(frames) == 5 + n  # plain v3: no extra frame
            return frames[5:]

        assert predict([b"a", b"evil"], 1) == [b"A", b"\x00Eevil"]
        assert predict([b"raise", b"b"], 2) == [b"Model error: ValueError: bad input"] * 2
    finally:
        router.close(0)
        ctx.term()
