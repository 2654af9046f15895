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
