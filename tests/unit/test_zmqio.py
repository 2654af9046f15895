"""The RPC hot path's multipart helpers (``clipper.rpc.zmqio``) on real inproc sockets."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import zmq

from clipper.rpc.zmqio import recv_frames, recv_frames_wait, send_frames


@pytest.fixture
def pair() -> Iterator[tuple[zmq.Socket[bytes], zmq.Socket[bytes]]]:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    a, b = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
    a.bind("inproc://zmqio")
    b.connect("inproc://zmqio")
    yield a, b
    a.close(0)
    b.close(0)
    ctx.term()


def test_a_multipart_message_arrives_whole_and_in_order(pair):
    a, b = pair
    send_frames(a, [b"one", b"", b"three" * 1000])
    b.setsockopt(zmq.RCVTIMEO, 5000)
    assert recv_frames_wait(b) == [b"one", b"", b"three" * 1000]
    with pytest.raises(zmq.Again):
        recv_frames(b)


def test_the_wait_ends_with_again_after_the_receive_timeout(pair):
    _, b = pair
    b.setsockopt(zmq.RCVTIMEO, 50)
    t0 = time.monotonic()
    with pytest.raises(zmq.Again):
        recv_frames_wait(b)
    assert time.monotonic() - t0 >= 0.04


def test_the_wait_returns_a_message_sent_while_it_waits_and_lets_other_threads_run(pair):
    a, b = pair
    b.setsockopt(zmq.RCVTIMEO, 10_000)
    got: list[list[bytes]] = []
    reader = threading.Thread(target=lambda: got.append(recv_frames_wait(b)))
    reader.start()
    time.sleep(0.05)  # the reader is blocked in the receive, without the GIL: this thread runs
    send_frames(a, [b"late", b"frames"])
    reader.join(5)
    assert got == [[b"late", b"frames"]]
