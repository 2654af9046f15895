"""The Unix-socket framing of RPC messages and the replica's end of it (clipper.rpc.stream)."""

from __future__ import annotations

import socket
import struct
import sys
import threading
import time

import pytest

from clipper.rpc.protocol import ProtocolError
from clipper.rpc.stream import MAX_FRAMES, SPIN_PROBE_EVERY, MessageReader, StreamChannel, encode_message

MESSAGES = [[b""], [b"", b"\x01\x00\x00\x00", b"x" * 300], [b"a", b"", b"bc"]]


def test_messages_survive_any_cut_of_the_stream():
    wire = b"".join(encode_message(m) for m in MESSAGES)
    for cut in range(len(wire) + 1):
        reader = MessageReader(1024)
        got = reader.feed(wire[:cut]) + reader.feed(wire[cut:])
        assert got == MESSAGES, cut
        assert reader.pending == 0
    reader = MessageReader(1024)
    assert [m for i in range(len(wire)) for m in reader.feed(wire[i : i + 1])] == MESSAGES


@pytest.mark.parametrize(
    "head, limit",
    [
        (struct.pack("<I", 0), 1024),
        (struct.pack("<I", MAX_FRAMES + 1), 1024),
        (struct.pack("<3I", 2, 10, 1025), 1024),
    ],
    ids=["no-frames", "too-many-frames", "frame-over-the-limit"],
)
def test_an_announcement_over_the_limits_is_refused_before_its_body(head, limit):
    with pytest.raises(ProtocolError):
        MessageReader(limit).feed(head)  # no body sent: refused on the announcement alone


@pytest.fixture
def listener(tmp_path):
    path = str(tmp_path / "s.sock")
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen()
    yield path, srv
    srv.close()


def test_the_channel_reports_an_absent_frontend_instead_of_raising(tmp_path):
    chan = StreamChannel(str(tmp_path / "nobody.sock"))
    assert chan.send([b"", b"hb"]) is False and not chan.connected
    t0 = time.monotonic()
    assert chan.recv(0.2) is None  # waits (a caller's loop must not spin), then nothing
    assert time.monotonic() - t0 >= 0.15


def test_the_channel_reconnects_after_the_frontend_closed_the_connection(listener):
    path, srv = listener
    chan = StreamChannel(path)
    assert chan.send([b"", b"first"])
    conn, _ = srv.accept()
    assert MessageReader(1024).feed(conn.recv(1024)) == [[b"", b"first"]]
    conn.sendall(encode_message([b"m1"]) + encode_message([b"m2"]))  # two in one write
    assert chan.recv(5) == [b"m1"] and chan.recv(5) == [b"m2"]
    assert chan.recv(0.05) is None and chan.connected  # a timeout is not a disconnect
    conn.close()
    assert chan.recv(5) is None and not chan.connected  # the close is noticed
    assert chan.send([b"", b"again"]) and chan.connections == 2
    conn2, _ = srv.accept()
    assert MessageReader(1024).feed(conn2.recv(1024)) == [[b"", b"again"]]
    conn2.close()


def test_a_message_arriving_in_pieces_is_waited_for_whole(listener):
    path, srv = listener
    chan = StreamChannel(path)
    assert chan.send([b"hello"])
    conn, _ = srv.accept()
    wire = encode_message([b"", b"y" * 5000])

    def trickle() -> None:
        for i in range(0, len(wire), 1000):
            conn.sendall(wire[i : i + 1000])
            time.sleep(0.02)

    t = threading.Thread(target=trickle)
    t.start()
    assert chan.recv(5) == [b"", b"y" * 5000]
    t.join()
    conn.close()


def _task_field(tid: int, name: str) -> str:
    with open(f"/proc/self/task/{tid}/status") as f:
        return next(line.split()[1] for line in f if line.startswith(name + ":"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts a thread's wake-ups in /proc")
def test_a_waiting_replica_is_not_woken_when_the_frontend_reads_its_answer(listener):
    """Linux wakes a thread blocked in recv() on a Unix stream socket whenever the peer reads what
    that thread sent. A replica that blocked before the frontend read its answer (a canary's, whose
    next batch comes later) would be woken for nothing on every batch -- a context switch, and on a
    virtual machine an inter-processor interrupt charged to the frontend. The channel waits in
    poll() for input only, which that wake-up does not end."""
    path, srv = listener
    chan = StreamChannel(path)
    assert chan.send([b"", b"answer"])
    conn, _ = srv.accept()
    tid: list[int] = []
    got: list[list[bytes] | None] = []
    t = threading.Thread(target=lambda: (tid.append(threading.get_native_id()), got.append(chan.recv(10))))
    t.start()
    deadline = time.monotonic() + 5
    while not tid or _task_field(tid[0], "State") != "S":
        assert time.monotonic() < deadline
        time.sleep(0.001)
    time.sleep(0.05)  # well inside its wait
    before = _task_field(tid[0], "voluntary_ctxt_switches")
    assert MessageReader(1024).feed(conn.recv(1024)) == [[b"", b"answer"]]  # the frontend reads it
    time.sleep(0.1)
    assert _task_field(tid[0], "voluntary_ctxt_switches") == before  # still asleep, never woken
    conn.sendall(encode_message([b"next batch"]))
    t.join(10)
    assert got == [[b"next batch"]]
    conn.close()


def _reply_later(conn: socket.socket, frames: list[bytes], delay: float) -> threading.Thread:
    t = threading.Thread(target=lambda: (time.sleep(delay), conn.sendall(encode_message(frames))))
    t.start()
    return t


def test_after_an_answer_the_next_message_is_polled_for_before_blocking(listener):
    path, srv = listener
    chan = StreamChannel(path, spin=2.0)
    assert chan.send([b"", b"answer"])
    conn, _ = srv.accept()
    conn.recv(1024)
    _reply_later(conn, [b"next batch"], 0.02).join(0)
    assert chan.recv(5) == [b"next batch"] and chan.caught_spinning == 1
    # no send since: the receive blocks at once (an idle replica does not spin)
    _reply_later(conn, [b"later"], 0.02).join(0)
    assert chan.recv(5) == [b"later"] and chan.caught_spinning == 1
    conn.close()


def test_polling_for_the_next_message_ends_with_the_wait_and_notices_a_close(listener):
    path, srv = listener
    chan = StreamChannel(path, spin=5.0)
    assert chan.send([b"", b"answer"])
    conn, _ = srv.accept()
    t0 = time.monotonic()
    assert chan.recv(0.1) is None and chan.connected  # bounded by the caller's wait, not the spin
    assert time.monotonic() - t0 < 2.0
    assert chan.send([b"", b"answer"])
    conn.close()
    t0 = time.monotonic()
    assert chan.recv(5) is None and not chan.connected  # the close ends the poll
    assert time.monotonic() - t0 < 2.0 and chan.caught_spinning == 0


def test_a_spinning_channel_still_splits_and_keeps_messages(listener):
    path, srv = listener
    chan = StreamChannel(path, spin=2.0)
    assert chan.send([b"", b"answer"])
    conn, _ = srv.accept()
    conn.sendall(encode_message([b"m1"]) + encode_message([b"m2"]))
    assert chan.recv(5) == [b"m1"] and chan.recv(5) == [b"m2"]
    conn.close()


def test_a_replica_whose_polls_seldom_catch_the_next_message_polls_only_now_and_then(listener):
    """A rarely queried model (or a canary's small share, waiting for batch-mates) gets its next
    batch long after its answer: polling for it would burn CPU for nothing, so the channel stops
    after its recent polls mostly missed, probes once every SPIN_PROBE_EVERY answers, and polls
    again once a probe catches one."""
    path, srv = listener
    chan = StreamChannel(path, spin=0.002)

    def answer_and_wait() -> list[bytes] | None:
        assert chan.send([b"", b"answer"])
        return chan.recv(0.002)

    assert answer_and_wait() is None
    conn, _ = srv.accept()
    misses = 1
    while chan.spins == misses:  # every answer polls until the misses outweigh the hits
        assert answer_and_wait() is None
        misses += 1
    assert chan.spins == misses - 1 == 11  # 0.875 ** 11 < SPIN_MIN_HIT_RATE = 0.25
    for _ in range(SPIN_PROBE_EVERY - 1):
        assert answer_and_wait() is None
    assert chan.spins == 11  # no polls meanwhile
    conn.sendall(encode_message([b"next batch"]))  # already there when the probe polls
    assert answer_and_wait() == [b"next batch"]
    assert chan.spins == 12 and chan.caught_spinning == 1
    assert answer_and_wait() is None and chan.spins == 13  # a catch: polling again
    conn.close()
