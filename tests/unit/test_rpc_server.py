"""RpcServer over real sockets: against the independent spec container and raw (rogue) DEALER peers."""

from __future__ import annotations

import os
import random
import shutil
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterator

import pytest
import zmq

from clipper.datatypes import InputType
from clipper.rpc import protocol
from tests.spec_container.harness import RpcHarness, kill, start_spec_container


def u32(x: int) -> bytes:
    return struct.pack("<I", x)


HEARTBEAT = [b"", u32(2)]
ANNOUNCE = [b"", u32(3), u32(2), u32(2)]  # "this frontend reads the error frame"
METADATA_REQUEST = [b"", u32(3), u32(2), u32(1)]


def new_container(name: str = "raw", version: str = "1", code: bytes = b"3", rpc: bytes | None = u32(3)):
    frames = [b"", u32(0), name.encode(), version.encode(), code]
    return frames + ([rpc] if rpc is not None else [])


class RawPeer:
    """A DEALER that speaks (or breaks) the protocol frame by frame."""

    def __init__(self, ctx: zmq.Context, port: int) -> None:
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(f"tcp://127.0.0.1:{port}")

    def send(self, frames: list[bytes]) -> None:
        self.sock.send_multipart(frames)

    def recv(self, timeout: float = 10) -> list[bytes]:
        assert self.sock.poll(int(timeout * 1000)), "no message from the server"
        return self.sock.recv_multipart()

    def register(self, name: str = "raw", version: str = "1") -> None:
        self.send(HEARTBEAT)
        assert [self.recv(), self.recv()] == [ANNOUNCE, METADATA_REQUEST]
        self.send(new_container(name, version))


@pytest.fixture
def harness() -> Iterator[RpcHarness]:
    h = RpcHarness(liveness_timeout=1.0)
    yield h
    h.close()


@pytest.fixture
def ctx() -> Iterator[zmq.Context]:
    c = zmq.Context()
    yield c
    c.destroy(linger=0)


@pytest.fixture
def procs() -> Iterator[list]:
    started: list = []
    yield started
    for p in started:
        kill(p)


def doubles(*values: float) -> bytes:
    return struct.pack(f"<{len(values)}d", *values)


def test_spec_container_registers_and_predicts(harness, procs):
    procs.append(start_spec_container(harness.port, "sum", "7", heartbeat_s=0.2))
    conn = harness.wait_registered()
    assert (conn.model_name, conn.model_version, conn.replica_id, conn.conn_id) == ("sum", "7", 0, 0)
    assert conn.input_type is InputType.DOUBLES
    outputs = harness.predict(conn, InputType.DOUBLES, [doubles(1.0, 2.0), doubles(0.5), doubles()])
    assert outputs == [b"3.0", b"0.5", b"0"]
    batch = [doubles(float(i), 1.0) for i in range(500)]
    assert harness.predict(conn, InputType.DOUBLES, batch) == [repr(i + 1.0).encode() for i in range(500)]


def test_msg_ids_count_up_and_responses_match(harness, procs):
    procs.append(start_spec_container(harness.port, heartbeat_s=0.2))
    conn = harness.wait_registered()
    ids = [harness.send_batch(conn, InputType.DOUBLES, [doubles(float(i))]) for i in range(20)]
    assert ids == list(range(ids[0], ids[0] + 20))
    got = {}
    for _ in ids:
        _, msg_id, outputs, _ = harness.responses.get(timeout=15)
        got[msg_id] = outputs
    assert got == {msg_id: [repr(float(i)).encode()] for i, msg_id in enumerate(ids)}


def test_replica_ids_are_per_model_version_and_never_reused(harness, procs):
    procs.append(start_spec_container(harness.port, "a", "1", heartbeat_s=0.2))
    first = harness.wait_registered()
    procs.append(start_spec_container(harness.port, "a", "1", heartbeat_s=0.2))
    second = harness.wait_registered()
    procs.append(start_spec_container(harness.port, "a", "2", input_type=4, heartbeat_s=0.2))
    other = harness.wait_registered()
    assert sorted([first.replica_id, second.replica_id]) == [0, 1]
    assert (other.model_version, other.replica_id, other.input_type) == ("2", 0, InputType.STRINGS)
    assert sorted(c.conn_id for c in (first, second, other)) == [0, 1, 2]
    assert harness.predict(other, InputType.STRINGS, [b"hello", b""]) == [b"4:5", b"4:0"]
    # A dropped session that talks again registers as a new replica.
    harness.on_loop(harness.server.drop, first, "test drop")
    conn, reason = harness.disconnected.get(timeout=5)
    assert conn is first and reason == "test drop"
    again = harness.wait_registered()
    assert (again.model_name, again.model_version, again.replica_id) == ("a", "1", 2)
    assert again.identity == first.identity  # same socket, new session
    assert harness.connections()[first.identity] is again


def test_dead_container_is_detected(harness, procs):
    proc = start_spec_container(harness.port, heartbeat_s=0.2)
    procs.append(proc)
    conn = harness.wait_registered()
    time.sleep(0.5)  # let a heartbeat interval be observed
    kill(proc)
    gone, reason = harness.disconnected.get(timeout=20)
    assert gone is conn and "no message" in reason
    assert harness.connections() == {}
    # Sending to it afterwards is silently dropped.
    harness.send_batch(conn, InputType.DOUBLES, [doubles(1.0)])


def test_heartbeat_replies(harness, ctx):
    peer = RawPeer(ctx, harness.port)
    peer.send(HEARTBEAT)
    # unknown: announce the error frame (original containers ignore type 2), then request metadata
    assert [peer.recv(), peer.recv()] == [ANNOUNCE, METADATA_REQUEST]
    peer.send(new_container())
    harness.wait_registered()
    peer.send(HEARTBEAT)
    assert peer.recv() == [b"", u32(3), u32(2), u32(0)]  # registered: keepalive


@pytest.mark.parametrize("rpc", [None, u32(2)], ids=["missing", "v2"])
def test_wrong_or_missing_rpc_version_is_not_registered(harness, ctx, rpc):
    peer = RawPeer(ctx, harness.port)
    peer.send(new_container(rpc=rpc))
    peer.send(new_container(code=b"9"))
    peer.send(HEARTBEAT)
    assert [peer.recv(), peer.recv()] == [ANNOUNCE, METADATA_REQUEST]  # still unknown
    assert harness.connections() == {}


def test_slow_heartbeats_get_a_longer_allowance(ctx):
    """Original rpc.py containers heartbeat only after 5 s idle: 2.5x their observed gap, capped."""
    h = RpcHarness(liveness_timeout=0.3)
    try:
        peer = RawPeer(ctx, h.port)
        peer.register()
        conn = h.wait_registered()
        for _ in range(4):
            time.sleep(0.6)
            peer.send(HEARTBEAT)
            peer.recv()
        assert conn.identity in h.connections()
        assert conn.max_gap >= 0.6
        gone, _ = h.disconnected.get(timeout=20)  # silent now: allowance about 1.5 s
        assert gone is conn
    finally:
        h.close()


def test_rogue_peers_never_break_the_server(harness, ctx, procs):
    rng = random.Random(1234)
    procs.append(start_spec_container(harness.port, heartbeat_s=0.2))
    good = harness.wait_registered()

    rogue = RawPeer(ctx, harness.port)
    garbage = [
        [b""],
        [b"not empty", u32(2)],
        [b"", b"\x01"],
        [b"", u32(99)],
        [
            b"",
            u32(1),
            u32(0),
            struct.pack("<Q", 16),
            struct.pack("<2Q", 1, 3),
            b"abc",
        ],  # unregistered content
        [b"", u32(0), b"\xff\xfe", b"1", b"3", u32(3)],
    ]
    for frames in garbage:
        rogue.send(frames)
    for _ in range(300):
        rogue.send([rng.randbytes(rng.randrange(0, 12)) for _ in range(rng.randrange(1, 9))])

    # A registered peer sending broken responses does not disturb anything either.
    registered = RawPeer(ctx, harness.port)
    registered.register("rogue", "1")
    rogue_conn = harness.wait_registered()
    msg_id = harness.send_batch(rogue_conn, InputType.DOUBLES, [doubles(1.0), doubles(2.0)])
    frames = registered.recv()
    assert frames[:3] == [b"", u32(3), u32(1)] and struct.unpack("<I", frames[3])[0] == msg_id
    header = struct.pack("<3Q", 2, 1, 1)
    registered.send([b"", u32(1), frames[3], struct.pack("<Q", 24), header, b"a"])  # one frame short
    registered.send([b"", u32(1), frames[3], struct.pack("<Q", 24), header, b"a", b"bb"])  # wrong length
    registered.send([b"", u32(1), frames[3], struct.pack("<Q", 24), header, b"a", b"b"])  # finally right

    assert harness.wait_response(msg_id)[1] == [b"a", b"b"]
    assert harness.predict(good, InputType.DOUBLES, [doubles(2.0, 2.0)]) == [b"4.0"]
    stats = harness.stats()
    assert stats["malformed"] >= 300
    assert stats["unregistered_content"] >= 1
    assert {c.model_name for c in harness.connections().values()} == {"m", "rogue"}


def test_callback_errors_do_not_stop_the_reader(ctx):
    h = RpcHarness(liveness_timeout=1.0)
    calls: list[int] = []

    def failing(conn, msg_id, outputs, errors):
        calls.append(msg_id)
        raise RuntimeError("callback bug")

    try:
        h.server._on_response = failing  # the callback under test
        peer = RawPeer(ctx, h.port)
        peer.register()
        conn = h.wait_registered()
        for _ in range(2):
            msg_id = h.send_batch(conn, InputType.DOUBLES, [])
            frames = peer.recv()
            peer.send([b"", u32(1), frames[3], struct.pack("<Q", 8), struct.pack("<Q", 0)])
        peer.send(HEARTBEAT)
        assert peer.recv() == [b"", u32(3), u32(2), u32(0)]
        assert calls == [msg_id - 1, msg_id]
        assert h.stats()["callback_errors"] == 2
    finally:
        h.close()


def test_send_after_close_is_dropped():
    h = RpcHarness()
    h.call(h.server.close())
    from clipper.rpc.server import ReplicaConnection

    conn = ReplicaConnection(b"x", 0, "m", "1", 0, InputType.DOUBLES, 0.0)
    h.send_batch(conn, InputType.DOUBLES, [doubles(1.0)])
    h.close()


# -- the Unix-socket endpoint (local backend) ---------------------------------------------------


def ipc_peer(ctx: zmq.Context, path, routing_id: bytes | None = None) -> RawPeer:
    peer = RawPeer.__new__(RawPeer)
    peer.sock = ctx.socket(zmq.DEALER)
    peer.sock.setsockopt(zmq.LINGER, 0)
    if routing_id is not None:
        peer.sock.setsockopt(zmq.ROUTING_ID, routing_id)
    peer.sock.connect(f"ipc://{path}")
    return peer


def test_the_unix_socket_serves_without_keys_while_tcp_still_demands_them(tmp_path, ctx):
    """With CURVE keys on TCP and a Unix socket beside it: a peer without keys registers and
    predicts over the socket (owner-only file in an owner-only directory) and is refused on TCP.
    The same routing id on both endpoints names two sessions, each answered where it came from."""
    from clipper.rpc.auth import RpcKeys

    private = tmp_path / "cluster"
    private.mkdir(mode=0o700)
    path = private / "rpc.sock"
    keys = RpcKeys.generate()
    h = RpcHarness(keys=keys.for_frontend(), ipc_path=str(path))
    try:
        assert path.stat().st_mode & 0o777 == 0o600
        local = ipc_peer(ctx, path, routing_id=b"same")
        local.register("m", "1")
        conn = h.wait_registered()
        assert conn.identity == b"i" + b"same"
        # a keyed replica over TCP with the same routing id is another session
        keyed = ctx.socket(zmq.DEALER)
        keyed.setsockopt(zmq.LINGER, 0)
        keyed.setsockopt(zmq.ROUTING_ID, b"same")
        keyed.curve_serverkey = keys.server_public.encode()
        keyed.curve_publickey = keys.client_public.encode()
        keyed.curve_secretkey = keys.client_secret.encode()
        keyed.connect(f"tcp://127.0.0.1:{h.port}")
        remote = RawPeer.__new__(RawPeer)
        remote.sock = keyed
        remote.register("m", "1")
        conn_tcp = h.wait_registered()
        assert conn_tcp.identity == b"t" + b"same" and set(h.connections()) == {b"isame", b"tsame"}
        for peer, c, value in ((local, conn, 1.5), (remote, conn_tcp, 2.5)):
            msg_id = h.send_batch(c, InputType.DOUBLES, [doubles(value)])
            request = protocol.decode_frontend_message(peer.recv())
            assert isinstance(request, protocol.PredictionRequest) and request.inputs == [doubles(value)]
            peer.send(protocol.encode_prediction_response(request.msg_id_frame, [repr(value).encode()]))
            assert h.wait_response(msg_id) == (c, [repr(value).encode()])
        # a peer without keys on TCP never registers
        RawPeer(ctx, h.port).send(HEARTBEAT)
        time.sleep(0.5)
        assert set(h.connections()) == {b"isame", b"tsame"}
    finally:
        h.close()


def test_a_unix_socket_in_a_directory_others_can_enter_is_refused(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    with pytest.raises(OSError, match="must belong to this user with mode 0700"):
        RpcHarness(ipc_path=str(shared / "rpc.sock"))


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a process as another user")
def test_another_user_cannot_connect_to_the_unix_socket():
    """What stands in for CURVE on the Unix socket: another local user's connect(2) is refused
    (the directory is 0700 and the socket file 0600), in a directory anyone may look for."""
    base = tempfile.mkdtemp(prefix="clipper-rpc-test-")  # 0700, under the world-traversable /tmp
    path = os.path.join(base, "rpc.sock")
    h = RpcHarness(ipc_path=path)
    try:
        probe = (
            "import socket, sys\n"
            "s = socket.socket(socket.AF_UNIX)\n"
            "try:\n"
            "    s.connect(sys.argv[1]); print('connected')\n"
            "except PermissionError:\n"
            "    print('denied')\n"
        )
        nobody = subprocess.run(
            ["/usr/bin/python3", "-c", probe, path],
            capture_output=True, text=True, timeout=30, user=65534, group=65534,
        )  # fmt: skip
        assert nobody.stdout.strip() == "denied", nobody.stdout + nobody.stderr
        # the owner can (the same probe, as root)
        me = subprocess.run(
            ["/usr/bin/python3", "-c", probe, path], capture_output=True, text=True, timeout=30
        )
        assert me.stdout.strip() == "connected", me.stdout + me.stderr
    finally:
        h.close()
        shutil.rmtree(base, ignore_errors=True)
