"""RpcServer over real sockets: against the independent spec container and raw (rogue) DEALER peers."""

from __future__ import annotations

import os
import random
import shutil
import socket
import stat
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterator

import pytest
import zmq

from clipper.datatypes import InputType
from clipper.rpc import protocol
from clipper.rpc.stream import MessageReader, encode_message
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


class StreamPeer(RawPeer):
    """A raw connection to the Unix-socket endpoint, speaking its framing (clipper.rpc.stream)."""

    def __init__(self, path) -> None:  # noqa: D107 - no ZeroMQ socket here
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(str(path))
        self.reader = MessageReader(1 << 30)
        self.ready: list[list[bytes]] = []

    def send(self, frames: list[bytes]) -> None:
        self.sock.sendall(encode_message(frames))

    def recv(self, timeout: float = 10) -> list[bytes]:
        end = time.monotonic() + timeout
        while not self.ready:
            self.sock.settimeout(max(0.01, end - time.monotonic()))
            data = self.sock.recv(65536)
            assert data, "the server closed the connection"
            self.ready = self.reader.feed(data)
        return self.ready.pop(0)


def private_socket(tmp_path):
    private = tmp_path / "cluster"
    private.mkdir(mode=0o700)
    return private / "rpc.sock"


def test_the_unix_socket_serves_without_keys_while_tcp_still_demands_them(tmp_path, ctx):
    """With CURVE keys on TCP and a Unix socket beside it: a peer without keys registers and
    predicts over the socket (owner-only file in an owner-only directory) and is refused on TCP;
    a keyed peer on TCP is another session, each answered where it came from."""
    from clipper.rpc.auth import RpcKeys

    path = private_socket(tmp_path)
    keys = RpcKeys.generate()
    h = RpcHarness(keys=keys.for_frontend(), ipc_path=str(path))
    try:
        assert path.stat().st_mode & 0o777 == 0o600
        local = StreamPeer(path)
        local.register("m", "1")
        conn = h.wait_registered()
        assert conn.identity[:1] == b"i"
        keyed = ctx.socket(zmq.DEALER)
        keyed.setsockopt(zmq.LINGER, 0)
        keyed.curve_serverkey = keys.server_public.encode()
        keyed.curve_publickey = keys.client_public.encode()
        keyed.curve_secretkey = keys.client_secret.encode()
        keyed.connect(f"tcp://127.0.0.1:{h.port}")
        remote = RawPeer.__new__(RawPeer)
        remote.sock = keyed
        remote.register("m", "1")
        conn_tcp = h.wait_registered()
        assert conn_tcp.identity[:1] == b"t" and set(h.connections()) == {conn.identity, conn_tcp.identity}
        for peer, c, value in ((local, conn, 1.5), (remote, conn_tcp, 2.5)):
            msg_id = h.send_batch(c, InputType.DOUBLES, [doubles(value)])
            request = protocol.decode_frontend_message(peer.recv())
            assert isinstance(request, protocol.PredictionRequest) and request.inputs == [doubles(value)]
            peer.send(protocol.encode_prediction_response(request.msg_id_frame, [repr(value).encode()]))
            assert h.wait_response(msg_id) == (c, [repr(value).encode()])
        # a peer without keys on TCP never registers
        RawPeer(ctx, h.port).send(HEARTBEAT)
        time.sleep(0.5)
        assert set(h.connections()) == {conn.identity, conn_tcp.identity}
    finally:
        h.close()
    assert not path.exists()  # removed on close


def two_registered_peers(h: RpcHarness, path) -> tuple[StreamPeer, object, StreamPeer, object]:
    first = StreamPeer(path)
    first.register("m", "1")
    first_conn = h.wait_registered()
    second = StreamPeer(path)
    second.register("x", "1")
    return first, first_conn, second, h.wait_registered()


def test_a_replica_closing_its_socket_connection_is_removed_at_once(tmp_path):
    """No liveness wait on the Unix socket: the connection's end is the session's (ZeroMQ's TCP
    sessions wait out their allowance). A batch in flight is the dispatcher's to retry."""
    path = private_socket(tmp_path)
    h = RpcHarness(liveness_timeout=60.0, ipc_path=str(path))
    try:
        peer, conn, other, _ = two_registered_peers(h, path)  # (other: kept open)
        t0 = time.monotonic()
        peer.sock.close()
        gone, reason = h.disconnected.get(timeout=5)
        assert gone is conn and "closed" in reason and time.monotonic() - t0 < 5
        assert len(h.connections()) == 1 and h.stats()["disconnects"] == 1
    finally:
        h.close()


@pytest.mark.parametrize(
    "garbage",
    [
        struct.pack("<I", 0),  # a message of no frames
        struct.pack("<I", (1 << 20) + 1),  # more frames than any message has
        struct.pack("<2I", 1, 4096),  # a frame over the limit, announced before it is sent
    ],
    ids=["no-frames", "too-many-frames", "frame-too-large"],
)
def test_a_socket_peer_breaking_the_framing_is_disconnected(tmp_path, garbage):
    """Announcements over the limits end the connection as soon as they are read (nothing of the
    announced size is buffered); the server goes on serving its other peers."""
    path = private_socket(tmp_path)
    h = RpcHarness(ipc_path=str(path), max_message_bytes=1024)
    try:
        good, conn, bad, bad_conn = two_registered_peers(h, path)
        bad.sock.sendall(garbage)
        bad.sock.settimeout(5)
        assert bad.sock.recv(1) == b""  # closed by the server
        assert h.disconnected.get(timeout=5)[0] is bad_conn
        assert h.stats()["malformed"] == 1
        msg_id = h.send_batch(conn, InputType.DOUBLES, [doubles(1.0)])
        request = protocol.decode_frontend_message(good.recv())
        good.send(protocol.encode_prediction_response(request.msg_id_frame, [b"1.0"]))
        assert h.wait_response(msg_id) == (conn, [b"1.0"])
    finally:
        h.close()


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])  # the query frontend runs on uvloop
def test_socket_messages_split_and_joined_anyhow_arrive_whole(tmp_path, loop):
    """The stream may cut a message anywhere or carry several in one read."""
    path = private_socket(tmp_path)
    h = RpcHarness(ipc_path=str(path), uvloop=loop == "uvloop")
    try:
        peer = StreamPeer(path)
        peer.register("m", "1")
        conn = h.wait_registered()
        ids = [h.send_batch(conn, InputType.DOUBLES, [doubles(float(i))]) for i in range(3)]
        requests = [protocol.decode_frontend_message(peer.recv()) for _ in ids]
        wire = b"".join(
            encode_message(protocol.encode_prediction_response(r.msg_id_frame, [b"%d" % i]))
            for i, r in enumerate(requests)
        )
        for i in range(len(wire)):  # byte by byte: every cut there is
            peer.sock.sendall(wire[i : i + 1])
        assert [h.wait_response(m)[1] for m in ids] == [[b"0"], [b"1"], [b"2"]]
        assert h.stats().get("malformed", 0) == 0
    finally:
        h.close()


def test_a_socket_file_left_by_a_frontend_that_is_gone_is_replaced(tmp_path):
    path = private_socket(tmp_path)
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))  # bound, never listening: what a killed frontend leaves
    stale.close()
    h = RpcHarness(ipc_path=str(path))
    try:
        StreamPeer(path).register("m", "1")
        assert h.wait_registered().model_name == "m"
    finally:
        h.close()


def test_a_unix_socket_in_a_directory_others_can_enter_is_refused(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    with pytest.raises(OSError, match="must belong to this user with mode 0700"):
        RpcHarness(ipc_path=str(shared / "rpc.sock"))


def test_a_missing_socket_directory_is_made_owner_only(tmp_path):
    """The Docker backend's frontend names a directory of its own in a shared (sticky, 1777)
    volume: it is made with mode 0700, so the check above then passes, and replicas connect."""
    shared = tmp_path / "volume"
    shared.mkdir()
    shared.chmod(0o1777)
    path = shared / "frontend" / "rpc.sock"
    h = RpcHarness(ipc_path=str(path))
    try:
        assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        StreamPeer(path).register("m", "1")
        assert h.wait_registered().model_name == "m"
    finally:
        h.close()


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
