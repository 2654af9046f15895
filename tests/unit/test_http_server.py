"""The shared HTTP server, exercised over real sockets."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import requests

from clipper.http.server import Deferred, Request, Response, serve


class ServerThread:
    def __init__(self, **limits: float) -> None:
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.limits = limits
        self.port = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.ready.wait(5)

    async def _handler_async(self, req: Request) -> Response:
        await asyncio.sleep(float(req.query.split("=")[1]))
        return Response(200, req.path.encode())

    def handler(self, req: Request):
        if req.path == "/echo":
            return Response(200, req.body, "application/octet-stream")
        if req.path.startswith("/sleep"):
            return self._handler_async(req)
        if req.path == "/deferred":
            d = Deferred()
            self.loop.call_later(float(req.query or 0), d.resolve, Response(200, b"later"))
            return d
        if req.path == "/deferred-early":
            d = Deferred()
            d.resolve(Response(200, b"early"))
            return d
        if req.path == "/boom":
            raise RuntimeError("boom")
        if req.path == "/headers":
            return Response(200, repr(sorted(req.headers.items())).encode())
        return Response(200, f"{req.method} {req.path} {req.query}".encode())

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def main() -> None:
            self.server = await serve(self.handler, "127.0.0.1", 0, **self.limits)
            self.port = self.server.port
            self.ready.set()

        self.loop.run_until_complete(main())
        self.loop.run_forever()

    def stop(self) -> None:
        async def close() -> None:
            await self.server.close()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def server() -> Iterator[ServerThread]:
    s = ServerThread(max_body_bytes=1000, header_timeout=0.6, keep_alive_timeout=1.0)
    yield s
    s.stop()


def raw(port: int, payload: bytes, read_until_close: bool = True, timeout: float = 5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(payload)
        chunks = []
        while True:
            try:
                data = s.recv(65536)
            except TimeoutError:
                break
            if not data:
                break
            chunks.append(data)
            if not read_until_close:
                break
        return b"".join(chunks)


def test_simple_get_and_query(server: ServerThread) -> None:
    r = requests.get(f"http://127.0.0.1:{server.port}/a%20b/c?x=1", timeout=5)
    assert r.status_code == 200
    assert r.text == "GET /a b/c x=1"
    assert r.headers["Content-Type"] == "application/json"


def test_post_body_echo(server: ServerThread) -> None:
    r = requests.post(f"http://127.0.0.1:{server.port}/echo", data=b"x" * 900, timeout=5)
    assert r.content == b"x" * 900


def test_body_over_limit_is_413_by_content_length(server: ServerThread) -> None:
    r = requests.post(f"http://127.0.0.1:{server.port}/echo", data=b"x" * 1001, timeout=5)
    assert r.status_code == 413
    assert r.json()["error"] == "Payload Too Large"


def test_a_content_length_over_the_limit_is_413_before_the_body_is_sent(server: ServerThread) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n")  # no body yet
        reply = _recv_response(s)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:80]


def test_a_content_length_over_the_limit_with_expect_gets_413_not_100(server: ServerThread) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n")
        reply = _recv_response(s)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:80]


def test_the_body_checks_apply_to_the_second_pipelined_request(server: ServerThread) -> None:
    """A chunk holding a whole request and the head of another: the second head's announcement
    (Expect, Content-Length) is honoured although the first request was complete."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(
            b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n"
        )
        got = b""
        while b"100 Continue" not in got:
            got += s.recv(1000)
        s.sendall(b"xyz")
        while not got.endswith(b"\r\n\r\nxyz"):
            got += s.recv(1000)
    assert got.startswith(b"HTTP/1.1 200 OK") and b"GET /a" in got


def test_chunked_body_over_limit_is_413(server: ServerThread) -> None:
    def gen():
        for _ in range(5):
            yield b"y" * 300

    r = requests.post(f"http://127.0.0.1:{server.port}/echo", data=gen(), timeout=5)
    assert r.status_code == 413


def test_expect_100_continue(server: ServerThread) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 100 Continue")
        s.sendall(b"abc")
        assert s.recv(1000).endswith(b"\r\n\r\nabc")


def test_malformed_request_is_400_and_closed(server: ServerThread) -> None:
    out = raw(server.port, b"NOT HTTP AT ALL\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 Bad Request")
    assert b"Connection: close" in out


def test_handler_exception_is_500(server: ServerThread) -> None:
    r = requests.get(f"http://127.0.0.1:{server.port}/boom", timeout=5)
    assert r.status_code == 500
    assert r.text == "An unexpected error occurred!"


def test_pipelined_responses_keep_request_order(server: ServerThread) -> None:
    reqs = (
        b"GET /sleep1?t=0.3 HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /fast HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /sleep2?t=0.05 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    out = raw(server.port, reqs)
    bodies = [part.split(b"\r\n\r\n", 1)[1] for part in out.split(b"HTTP/1.1 200 OK")[1:]]
    assert [b[:7] for b in bodies] == [b"/sleep1", b"GET /fa", b"/sleep2"]


def test_keep_alive_serves_many_requests_on_one_connection(server: ServerThread) -> None:
    with requests.Session() as s:
        for i in range(20):
            assert s.get(f"http://127.0.0.1:{server.port}/k{i}", timeout=5).text.startswith("GET /k")


def test_slow_loris_is_cut_off_without_blocking_others(server: ServerThread) -> None:
    slow = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    slow.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n")  # never finishes its headers
    start = time.monotonic()
    assert requests.get(f"http://127.0.0.1:{server.port}/other", timeout=5).status_code == 200
    data = slow.recv(1000)  # the server answers 408 and closes after header_timeout (+ sweep)
    assert data.startswith(b"HTTP/1.1 408")
    assert time.monotonic() - start < 3
    slow.close()


def test_a_head_trickling_in_keeps_the_deadline_of_its_first_byte(server: ServerThread) -> None:
    """The header timeout runs from the request's first byte: later chunks of the same head do not
    restart it (else a client sending a byte now and then would hold the connection forever)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        start = time.monotonic()
        s.sendall(b"GET /slow HTTP/1.1\r\n")
        closed_after = None
        for i in range(30):  # a header field every 0.1 s, for up to 3 s (header_timeout 0.6 s)
            time.sleep(0.1)
            try:
                s.sendall(b"X-%d: y\r\n" % i)
            except OSError:  # reset: the server answered 408 and closed
                closed_after = time.monotonic() - start
                break
            s.settimeout(0.001)
            try:
                data = s.recv(1000)
            except (TimeoutError, BlockingIOError):
                continue
            finally:
                s.settimeout(5)
            assert data.startswith(b"HTTP/1.1 408"), data
            closed_after = time.monotonic() - start
            break
        assert closed_after is not None and closed_after < 2.0, closed_after


def test_a_body_that_stops_arriving_times_out() -> None:
    s = ServerThread(body_timeout=0.6)
    try:
        with socket.create_connection(("127.0.0.1", s.port), timeout=5) as c:
            start = time.monotonic()
            c.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
            assert c.recv(1000).startswith(b"HTTP/1.1 408")
            assert 0.5 < time.monotonic() - start < 3
    finally:
        s.stop()


def test_keep_alive_timeout_runs_after_a_deferred_answer(server: ServerThread) -> None:
    """An answer given later (the prediction path's Deferred) leaves the connection idle: it is
    closed after keep_alive_timeout (1 s here, + the sweep), and kept until then."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(b"GET /deferred?0.05 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert s.recv(1000).startswith(b"HTTP/1.1 200")
        answered = time.monotonic()
        assert s.recv(1000) == b""
        assert 0.9 < time.monotonic() - answered < 3


def test_idle_keep_alive_connection_is_closed(server: ServerThread) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
        assert s.recv(1000).startswith(b"HTTP/1.1 200")
        assert s.recv(1000) == b""  # closed after keep_alive_timeout


def test_http10_closes_after_response(server: ServerThread) -> None:
    out = raw(server.port, b"GET /x HTTP/1.0\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200 OK")
    assert b"Connection: close" in out


def test_deferred_responses_resolve_later_or_early_in_request_order(server: ServerThread) -> None:
    reqs = (
        b"GET /deferred?0.2 HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /deferred-early HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /deferred?0 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    out = raw(server.port, reqs)
    bodies = [part.split(b"\r\n\r\n", 1)[1] for part in out.split(b"HTTP/1.1 200 OK")[1:]]
    assert bodies == [b"later", b"early", b"later"]


def test_deferred_resolved_after_the_client_left_is_harmless(server: ServerThread) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(b"GET /deferred?0.2 HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.4)  # resolved on a closed connection: nothing raised, the server serves on
    assert requests.get(f"http://127.0.0.1:{server.port}/deferred?0", timeout=5).text == "later"


# -- limits checked while the request head arrives (414, 431), lingering close ---------------------


def _recv_response(s: socket.socket) -> bytes:
    """Everything up to EOF (or a reset after the response arrived)."""
    chunks = []
    while True:
        try:
            data = s.recv(65536)
        except ConnectionResetError:
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


def test_long_url_is_414_before_the_request_line_ends(server: ServerThread) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(b"GET /" + b"u" * 9000)  # over the 8 KiB default; the request line never ends
        reply = _recv_response(s)  # answered at once, not after the header timeout (408)
    assert reply.startswith(b"HTTP/1.1 414 URI Too Long"), reply[:80]
    assert b"the URL exceeds the limit of 8192 bytes" in reply
    assert b"Connection: close" in reply


def test_oversized_header_is_431_while_it_is_still_arriving(server: ServerThread) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"y" * 200_000)  # one unfinished header
        reply = _recv_response(s)
    assert reply.startswith(b"HTTP/1.1 431 Request Header Fields Too Large"), reply[:80]
    assert b"limit 65536 bytes" in reply


def test_many_small_headers_over_the_limit_are_431(server: ServerThread) -> None:
    head = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 100) for i in range(700))
    reply = raw(server.port, head + b"\r\n")
    assert reply.startswith(b"HTTP/1.1 431"), reply[:80]


def test_one_field_over_the_limit_completed_by_a_small_chunk_is_431(server: ServerThread) -> None:
    """httptools reports a field only when it is complete: a 70 KB field whose last 10 KB come in
    a chunk of their own is reported then, whole, although that chunk alone is small."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"y" * 60_000)
        time.sleep(0.2)
        s.sendall(b"y" * 10_000 + b"\r\n\r\n")
        reply = _recv_response(s)
    assert reply.startswith(b"HTTP/1.1 431"), reply[:80]


@pytest.mark.parametrize("split", [True, False], ids=["head-in-two-chunks", "head-in-one-chunk"])
def test_a_head_over_the_limit_is_431_when_it_completes(server: ServerThread, split: bool) -> None:
    """A head whose last chunk carries it over the limit, complete with its body in that chunk:
    counted when the head ends (the per-chunk check only sees heads that are still arriving)."""
    first = b"POST /echo HTTP/1.1\r\nHost: x\r\n" + b"".join(
        b"X-A%d: %s\r\n" % (i, b"a" * 90) for i in range(400)
    )
    second = b"".join(b"X-B%d: %s\r\n" % (i, b"b" * 90) for i in range(400)) + b"Content-Length: 2\r\n\r\nok"
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        if split:
            s.sendall(first)
            time.sleep(0.2)  # the first chunk (~38 KB, under the 64 KiB limit) is parsed alone
            s.sendall(second)
        else:
            s.sendall(first + second)
        reply = _recv_response(s)
    assert reply.startswith(b"HTTP/1.1 431"), reply[:80]


def test_a_head_just_under_the_limit_is_served(server: ServerThread) -> None:
    fields = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 90) for i in range(600))  # ~58 KB of fields
    head = b"POST /echo HTTP/1.1\r\nHost: x\r\n" + fields + b"Content-Length: 2\r\nConnection: close\r\n\r\n"
    out = raw(server.port, head + b"ok")
    assert out.startswith(b"HTTP/1.1 200 OK") and out.endswith(b"\r\n\r\nok"), out[:80]


def test_an_upgrade_announcing_a_body_over_the_limit_is_413(server: ServerThread) -> None:
    out = raw(
        server.port,
        b"POST /echo HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c\r\nContent-Length: 99999\r\n\r\n",
    )
    assert out.startswith(b"HTTP/1.1 413"), out[:80]


def test_huge_streamed_header_is_cut_off_and_others_are_served(server: ServerThread) -> None:
    """A client streaming a 40 MB header gets 431 early; the server keeps serving meanwhile."""
    s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sent = [0]

    def stream() -> None:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ")
        chunk = b"z" * 65536
        try:
            for _ in range(600):
                s.sendall(chunk)
                sent[0] += len(chunk)
        except OSError:  # the server closed after its lingering time
            pass

    t = threading.Thread(target=stream, daemon=True)
    t.start()
    try:
        reply = s.recv(1000)
        assert reply.startswith(b"HTTP/1.1 431"), reply[:80]
        assert requests.get(f"http://127.0.0.1:{server.port}/other", timeout=5).status_code == 200
        t.join(30)
        assert not t.is_alive()
        assert sent[0] < 600 * 65536  # the connection was closed long before 40 MB went through
    finally:
        s.close()


def test_error_response_survives_a_client_still_sending_its_body(server: ServerThread) -> None:
    """Lingering close: the 413 is readable although the client is still writing its body."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        s.sendall(b"800\r\n" + b"b" * 0x800 + b"\r\n")  # past the 1000-byte limit of the fixture
        try:
            s.sendall(b"800\r\n" + b"b" * 0x800 + b"\r\n")
        except OSError:
            pass
        assert _recv_response(s).startswith(b"HTTP/1.1 413")


# -- HEAD and Upgrade ----------------------------------------------------------------------------


def test_head_gets_the_get_headers_and_no_body(server: ServerThread) -> None:
    # The fixture's handler answers "<method> <path> <query>": HEAD /thing has a 12-byte body.
    # A HEAD, then a GET on the same connection: the GET's status line follows the HEAD's headers
    # directly (a body after the HEAD response would be read as part of the next response).
    out = raw(
        server.port,
        b"HEAD /thing HTTP/1.1\r\nHost: x\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    first, _, second = out.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 200 OK")
    assert b"Content-Length: %d" % len(b"HEAD /thing ") in first
    assert second.startswith(b"HTTP/1.1 200 OK")
    assert second.endswith(b"\r\n\r\nGET /next ")


def _responses(out: bytes) -> list[bytes]:
    return [b"HTTP/1.1 " + part for part in out.split(b"HTTP/1.1 ")[1:]]


def test_upgrade_is_ignored_and_the_connection_stays_http(server: ServerThread) -> None:
    out = raw(
        server.port,
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        b"GET /after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    statuses = [r.split(b"\r\n", 1)[0] for r in _responses(out)]
    assert statuses == [b"HTTP/1.1 200 OK", b"HTTP/1.1 200 OK"], out
    assert out.endswith(b"GET /after ")


def test_upgrade_alone_gets_exactly_one_response(server: ServerThread) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=0.5) as s:
        s.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
        chunks = []
        while True:  # until the fixture's keep-alive timeout closes the connection
            try:
                data = s.recv(65536)
            except TimeoutError:
                continue
            if not data:
                break
            chunks.append(data)
    assert _responses(b"".join(chunks)) == [b"".join(chunks)]
    assert b"".join(chunks).startswith(b"HTTP/1.1 200 OK")


def test_h2c_upgrade_with_a_body_is_answered_in_http1(server: ServerThread) -> None:
    out = raw(
        server.port,
        b"POST /echo HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
        b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nContent-Length: 5\r\n\r\nhello"
        b"GET /after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    responses = _responses(out)
    assert len(responses) == 2, out
    assert responses[0].startswith(b"HTTP/1.1 200 OK") and responses[0].endswith(b"\r\n\r\nhello")
    assert responses[1].endswith(b"GET /after ")


def test_upgrade_with_a_chunked_body_is_400(server: ServerThread) -> None:
    out = raw(
        server.port,
        b"POST /echo HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    assert len(_responses(out)) == 1 and out.startswith(b"HTTP/1.1 400"), out


def test_connect_is_answered_then_closed(server: ServerThread) -> None:
    out = raw(
        server.port, b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n\x16\x03\x01junk"
    )
    assert len(_responses(out)) == 1, out
    assert out.startswith(b"HTTP/1.1 200 OK") and b"Connection: close" in out


# -- connection cap ------------------------------------------------------------------------------


def test_at_the_connection_cap_the_longest_idle_connection_is_closed() -> None:
    s = ServerThread(max_connections=4, keep_alive_timeout=30.0)
    idle = [socket.create_connection(("127.0.0.1", s.port), timeout=5) for _ in range(4)]
    try:
        time.sleep(0.2)
        # a fifth client is served; the first (longest idle) connection is closed for it
        assert requests.get(f"http://127.0.0.1:{s.port}/new", timeout=5).text == "GET /new "
        assert idle[0].recv(100) == b""
        idle[1].sendall(b"GET /still HTTP/1.1\r\nHost: x\r\n\r\n")
        assert idle[1].recv(1000).startswith(b"HTTP/1.1 200 OK")
    finally:
        for c in idle:
            c.close()
        s.stop()


def test_at_the_connection_cap_with_none_idle_a_new_client_gets_503() -> None:
    s = ServerThread(max_connections=2, keep_alive_timeout=30.0)
    busy = [socket.create_connection(("127.0.0.1", s.port), timeout=5) for _ in range(2)]
    try:
        for c in busy:
            c.sendall(b"GET /sleep?t=3 HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.3)
        with socket.create_connection(("127.0.0.1", s.port), timeout=5) as extra:
            reply = _recv_response(extra)
        assert reply.startswith(b"HTTP/1.1 503 Service Unavailable"), reply[:80]
        assert b"too many open connections" in reply
        for c in busy:  # the busy clients are still answered
            assert c.recv(1000).startswith(b"HTTP/1.1 200 OK")
    finally:
        for c in busy:
            c.close()
        s.stop()


_LIMITED_SERVER = """
import asyncio, resource
from clipper.http.server import Response, install_uvloop, serve

async def main():
    def handler(req):
        return Response(200, b"%d" % resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    server = await serve(handler, "127.0.0.1", 0)
    print(server.port, server.max_connections, flush=True)
    await asyncio.Event().wait()

install_uvloop()
asyncio.run(main())
"""


def test_more_idle_clients_than_open_files_do_not_lock_out_a_new_client() -> None:
    """Under a soft/hard file limit of 64/128, 200 idle connections: the server raised its soft
    limit, keeps below it by closing the longest-idle connections, and answers a new client."""
    import resource
    import subprocess
    import sys

    def lower_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 128))

    proc = subprocess.Popen(
        [sys.executable, "-c", _LIMITED_SERVER], stdout=subprocess.PIPE, preexec_fn=lower_limit
    )
    idle: list[socket.socket] = []
    try:
        assert proc.stdout is not None
        port, cap = map(int, proc.stdout.readline().split())
        assert cap == 64  # 128 files less headroom
        for _ in range(200):
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        r = requests.get(f"http://127.0.0.1:{port}/", timeout=10)
        assert r.status_code == 200
        assert r.text == "128"  # the soft limit was raised to the hard limit
        assert proc.poll() is None
    finally:
        for s in idle:
            s.close()
        proc.kill()
        proc.wait()


def test_many_pipelined_upgrade_requests_in_one_chunk(server: ServerThread) -> None:
    one = b"GET /u HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    out = raw(server.port, one * 1500 + b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    statuses = {r.split(b"\r\n", 1)[0] for r in _responses(out)}
    assert len(_responses(out)) == 1501 and statuses == {b"HTTP/1.1 200 OK"}


def test_request_targets_are_split_alike_whether_memoized_or_not():
    """The memo of short request targets: same (path, query) as a fresh split; bounded in size."""
    from clipper.http import server as S

    S._URLS.clear()
    for _ in range(2):  # the second time from the memo
        assert S._split_url(b"/a%20b/predict?x=1&y=%41") == ("/a b/predict", "x=1&y=%41")
        assert S._split_url(b"/plain") == ("/plain", "")
    long = b"/" + b"p" * S._URL_MEMO_BYTES + b"?q"
    assert S._split_url(long) == (long[:-2].decode(), "q") and long not in S._URLS
    for i in range(S._URLS_MAX + 10):
        S._split_url(b"/u%d" % i)
    assert len(S._URLS) <= S._URLS_MAX


@pytest.mark.parametrize(
    "timeout", ["header_timeout", "body_timeout", "keep_alive_timeout", "linger_timeout"]
)
@pytest.mark.parametrize("seconds", [0, -1.0])
def test_a_timeout_that_is_not_positive_is_refused(timeout: str, seconds: float) -> None:
    """0 would disable the timeout (an armed deadline is stored as minus its timeout): a clear
    error instead of a server without slow-loris protection."""

    async def start() -> None:
        await serve(lambda req: Response(200), "127.0.0.1", 0, **{timeout: seconds})

    with pytest.raises(ValueError, match=f"{timeout} must be a positive number of seconds"):
        asyncio.run(start())
