"""The one HTTP/1.1 server both frontends run on: asyncio protocol + httptools parser (+ uvloop).

Why not a framework: the prediction path is where Python serving systems lose. A raw
protocol keeps per-request work to parsing, one handler call and one ``transport.write``:

* a handler returns a :class:`Response` directly (no task, no future) or an awaitable of one;
* responses leave in request order (HTTP/1.1 pipelining), later requests queue behind a pending one;
* oversized bodies get 413 as soon as ``Content-Length`` (or the running chunked total) says so,
  unparseable requests 400; a URL over ``max_url_bytes`` gets 414 and a head over ``max_header_bytes``
  431 while it is still arriving (checked per received chunk, so memory stays bounded); each of these
  errors ends the connection with a lingering close (see :meth:`_Connection._fail`);
* slow-loris clients (headers or body trickling in) and idle keep-alive connections are closed by one
  sweep timer per server, not by a timer per request;
* at most ``max_connections`` connections are open (default: derived from ``RLIMIT_NOFILE``, whose soft
  limit :func:`serve` raises to the hard limit); a client beyond the cap makes the server close the
  longest-idle keep-alive connection, or, when none is idle, is answered 503 and closed;
* ``HEAD`` is answered with the headers of the handler's response (its ``Content-Length`` included)
  and no body; handlers see ``method == "HEAD"`` and treat it like ``GET``;
* ``Upgrade`` (WebSocket, h2c) is ignored, as RFC 9110 §7.8 allows: the request is answered normally
  in HTTP/1.1 and the connection goes on in HTTP/1.1 (``CONNECT`` is answered and the connection closed).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import resource
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import httptools

log = logging.getLogger(__name__)

_REASONS = {
    100: "Continue",
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Payload Too Large",
    414: "URI Too Long",
    415: "Unsupported Media Type",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}

#: A response owed on a connection, in request order: ``[Response | None, close_after, head_only]``
#: (None until the handler's answer arrives).
_Slot = list[Any]

JSON = "application/json"
TEXT = "text/plain; charset=utf-8"


class Request:
    """One parsed request. ``path`` is percent-decoded and excludes the query string.

    ``headers`` (lower-case names) is built on first access: the prediction path never reads it.
    """

    __slots__ = ("method", "path", "query", "_raw_headers", "_headers", "body", "keep_alive")

    def __init__(
        self,
        method: str,
        path: str,
        query: str,
        raw_headers: list[tuple[bytes, bytes]] | dict[str, str],
        body: bytes,
        keep_alive: bool,
    ) -> None:
        self.method = method
        self.path = path
        self.query = query
        if isinstance(raw_headers, dict):
            self._headers: dict[str, str] | None = raw_headers
            self._raw_headers: Sequence[tuple[bytes, bytes]] = ()
        else:
            self._headers = None
            self._raw_headers = raw_headers
        self.body = body
        self.keep_alive = keep_alive

    @property
    def headers(self) -> dict[str, str]:
        if self._headers is None:
            headers: dict[str, str] = {}
            for name, value in self._raw_headers:
                key = name.decode("latin-1").lower()
                text = value.decode("latin-1")
                headers[key] = headers[key] + ", " + text if key in headers else text
            self._headers = headers
        return self._headers

    def __repr__(self) -> str:
        return f"Request({self.method} {self.path!r}, {len(self.body)} bytes)"


class Response:
    __slots__ = ("status", "body", "content_type", "headers")

    def __init__(
        self,
        status: int,
        body: bytes = b"",
        content_type: str = JSON,
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = headers

    def encode(self, close: bool, head_only: bool = False) -> bytes:
        """The response bytes; ``head_only`` (a HEAD request) keeps the Content-Length, drops the body."""
        if not (close or head_only or self.headers):  # the common case: one format of bytes
            body = self.body
            return b"%b%d\r\n\r\n%b" % (_HEADS[self.status, self.content_type], len(body), body)
        head = _HEADS[self.status, self.content_type] + b"%d\r\n" % len(self.body)
        for name, value in self.headers:
            head += f"{name}: {value}\r\n".encode("latin-1")
        if close:
            head += b"Connection: close\r\n"
        return head + b"\r\n" if head_only else head + b"\r\n" + self.body


class _Heads(dict[tuple[int, str], bytes]):
    """(status, content type) -> status line and Content-Type, up to the Content-Length value.

    Made on first use (``__missing__``), so a response reads its head with one subscript, no call.
    """

    def __missing__(self, key: tuple[int, str]) -> bytes:
        status, content_type = key
        reason = _REASONS.get(status, "Unknown")
        head = self[key] = (
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: ".encode()
        )
        return head


_HEADS = _Heads()
_METHODS = {m.encode(): m for m in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")}


class Deferred:
    """A response a handler delivers later by calling :meth:`resolve` (on the event loop thread).

    The prediction path's alternative to an ``asyncio.Future``: no future, no done-callback
    scheduling, no extra loop iteration between the model's answer and the socket write.
    Subclasses (one object per request) may carry their own state.
    """

    __slots__ = ("_conn", "_slot", "_early")

    def __init__(self) -> None:
        self._conn: _Connection | None = None
        self._slot: _Slot | None = None
        self._early: Response | None = None

    def resolve(self, response: Response) -> None:
        conn = self._conn
        if conn is None:
            self._early = response  # resolved before the server attached to it
            return
        self._conn = None
        slot = self._slot
        pending = conn._pending
        if len(pending) == 1 and pending[0] is slot:  # alone (no pipelining): out now, no queue walk
            pending.clear()
            conn._write(response, slot[1], slot[2])
            if conn._reading_paused:
                conn._resume_reading()
            return
        slot[0] = response  # type: ignore[index]
        conn._flush()


def error_response(status: int, error: str, cause: str) -> Response:
    """The JSON error shape both frontends use for HTTP-level errors: ``{"error": ..., "cause": ...}``."""
    import orjson

    return Response(status, orjson.dumps({"error": error, "cause": cause}))


#: A handler answers at once, later (a Deferred it resolves), or with an awaitable of either.
Handler = Callable[[Request], "Response | Deferred | Awaitable[Response | Deferred]"]


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 16 * 1024 * 1024
    max_header_bytes: int = 64 * 1024  # request line + header fields, all together
    max_url_bytes: int = 8 * 1024
    max_connections: int = 0  # 0: derived from RLIMIT_NOFILE (default_max_connections)
    linger_timeout: float = 1.0  # after an error response: how long unread input is still drained
    header_timeout: float = 5.0  # from the first byte of a request to the end of its headers
    body_timeout: float = 300.0  # from the end of the headers to the end of the body
    keep_alive_timeout: float = 75.0  # idle time between requests on a kept-alive connection
    max_pipelined: int = 128  # requests queued on one connection before we stop reading it


# (read from an instance: a compiled dataclass has no class attributes for its fields)
_DEFAULT_LIMITS = Limits()


_URLS: dict[bytes, tuple[str, str]] = {}  # recent short request targets, split and decoded
_URLS_MAX = 1024
_URL_MEMO_BYTES = 256  # longer targets are split every time (the memo stays small)


def _split_url(url: bytes) -> tuple[str, str]:
    """A request target -> (percent-decoded path, query string); memoized, since clients repeat them."""
    split = _URLS.get(url)
    if split is not None:
        return split
    query = ""
    raw = url
    q = url.find(b"?")
    if q >= 0:
        query = url[q + 1 :].decode("latin-1")
        raw = url[:q]
    path = raw.decode("utf-8", "replace")
    if "%" in path:
        path = unquote(path)
    split = (path, query)
    if len(url) <= _URL_MEMO_BYTES:
        if len(_URLS) >= _URLS_MAX:
            _URLS.clear()
        _URLS[url] = split
    return split


_IDLE, _HEADERS, _BODY, _HANDLING = range(4)
_LINGER_BYTES = 1024 * 1024  # input read and dropped after an error response before closing anyway
_DISCARD = -1  # _Connection._raw_left: ignore all further input (CONNECT was answered, closing)


def raise_open_file_limit() -> int:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit; returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):  # e.g. a platform cap below the hard limit
            log.warning("could not raise the open-file limit from %d to %d", soft, target)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def default_max_connections(open_files: int) -> int:
    """Connections an HTTP server may hold: the file limit less headroom for RPC, store and logs."""
    return max(16, open_files - max(64, open_files // 4))


class _Connection(asyncio.Protocol):
    __slots__ = (
        "_server",
        "_handler",
        "_limits",
        "_loop",
        "_idle",
        "_transport",
        "_parser",
        "_url",
        "_headers",
        "_header_bytes",
        "_headers_counted",
        "_chunk_len",
        "_head_fed",
        "_in_head",
        "_announced",
        "_swallowed",
        "_body",
        "_body_len",
        "_raw_left",
        "_raw_request",
        "_drained",
        "_pending",
        "_state",
        "deadline",
        "_closing",
        "_reading_paused",
    )

    def __init__(self, server: HttpServer) -> None:
        self._server = server
        self._handler = server.handler
        self._limits = server.limits
        self._loop = server.loop
        self._idle = server.idle
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        # The head's size is counted lazily (_count_head): bytes of the header fields counted so far
        # and how many fields that was. The chunks fed while a head arrives bound its size (_head_fed,
        # with the whole chunk it began in): below the limit, nothing needs counting.
        self._header_bytes = 0
        self._headers_counted = 0
        self._chunk_len = 0
        self._head_fed = 0
        self._in_head = False  # between a message's first byte and the end of its headers
        self._announced = False  # the head's Content-Length and Expect were looked at
        self._swallowed = 0  # head bytes httptools buffered without a callback (one long field)
        self._body: list[bytes] = []
        self._body_len = 0
        # the body of an Upgrade request, read here (httptools leaves it to the upgraded protocol)
        self._raw_left = 0
        self._raw_request: Request | None = None
        self._drained = 0  # input dropped while lingering after an error
        # responses not yet written, in request order: each is [Response | None, close_after, head_only]
        self._pending: deque[_Slot] = deque()
        self._state = _IDLE
        # When the connection's current phase times out (sweep): 0.0 none; > 0 a time.monotonic()
        # instant; < 0 minus a timeout not yet started. The per-request phases are armed that way
        # and stamped with the clock only where they outlive the moment: after a received chunk that
        # leaves a request incomplete (data_received), else at the next sweep (an idle keep-alive
        # connection's timeout then starts up to one sweep interval late). A request that arrives
        # whole in one chunk and is answered reads no clock for its timeouts.
        self.deadline = 0.0
        self._closing = False
        self._reading_paused = False

    # -- asyncio.Protocol ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self.deadline = time.monotonic() + self._limits.keep_alive_timeout
        self._server.admit(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.connections.discard(self)
        self._idle.pop(self, None)
        self._closing = True
        self._pending.clear()

    def data_received(self, data: bytes) -> None:
        if self._closing:  # closed, or lingering after an error: input is dropped, up to a bound
            self._drained += len(data)
            if self._drained > _LINGER_BYTES and self._transport is not None:
                self._transport.close()
            return
        if self._raw_left:
            data = self._raw_body(data)
            if not data:
                return
        if self._state == _IDLE:
            self._state = _HEADERS
            self._idle.pop(self, None)
            self.deadline = -self._limits.header_timeout
        while True:
            self._chunk_len = len(data)
            if self._in_head:  # a head still arriving: what it held, to tell whether this chunk adds
                self._head_fed += len(data)
                held: tuple[list[tuple[bytes, bytes]], int, bytes] | None = (
                    self._headers,
                    len(self._headers),
                    self._url,
                )
            else:  # a head that begins in this chunk and does not end in it grew in it (on_url)
                held = None
            try:
                self._parser.feed_data(data)
                break
            except httptools.HttpParserUpgrade as upgrade:
                data = self._after_upgrade(data[upgrade.args[0] :])
                if not data:
                    return
            except httptools.HttpParserError as malformed:
                if not self._closing:
                    self._fail(400, "Bad Request", f"malformed HTTP request: {malformed}")
                return
        if self._in_head:
            grew = (
                held is None
                or held[0] is not self._headers
                or len(held[0]) != held[1]
                or held[2] is not self._url
            )
            self._check_head_size(len(data), grew)
        elif self._state == _BODY and not self._announced:  # the body is still to come
            self._check_announced_body()
        if self.deadline < 0.0:  # a request still arriving after this chunk: its timer starts now
            self.deadline = time.monotonic() - self.deadline

    def pause_writing(self) -> None:
        self._pause_reading()

    def resume_writing(self) -> None:
        self._resume_reading()

    # -- httptools callbacks ---------------------------------------------------------------------
    # Each callback is a call from C into Python (~1,000 instructions before its body runs), so the
    # parser gets the five a request needs: httptools' on_message_begin is folded into a message's
    # first on_url, and on_header only collects the field. What used to be checked per header is
    # checked once: the head's size where it could exceed the limit (_count_head), the announced body
    # (a Content-Length over the limit: 413; Expect: 100-continue) only when the body is still to
    # come after a chunk (_check_announced_body). When head and body arrive together, neither runs.
    def on_url(self, url: bytes) -> None:
        # A request line starts with its method and target: a message's first on_url is its
        # beginning (httptools' on_message_begin, folded in: one call less per request). Called once
        # per received chunk of a long URL: checked before it is appended, so a huge URL costs one
        # chunk of memory and no quadratic copying.
        if not self._in_head:  # a new message
            self._url = b""
            self._headers = []
            self._header_bytes = 0
            self._headers_counted = 0
            self._head_fed = self._chunk_len
            self._announced = False
            self._in_head = True
            self._body = []
            self._body_len = 0
            if self._state == _IDLE:
                self._state = _HEADERS
                self._idle.pop(self, None)
                self.deadline = -self._limits.header_timeout
        if len(self._url) + len(url) > self._limits.max_url_bytes:
            self._fail(
                414, "URI Too Long", f"the URL exceeds the limit of {self._limits.max_url_bytes} bytes"
            )
            raise httptools.HttpParserError("URL too long")
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._in_head = False
        limit = self._limits.max_header_bytes
        if self._head_fed > limit and self._count_head() > limit:
            self._reject_head()
            raise httptools.HttpParserError("headers too large")
        self._state = _BODY
        self.deadline = -self._limits.body_timeout

    def on_body(self, body: bytes) -> None:
        self._body_len += len(body)
        if self._body_len > self._limits.max_body_bytes:
            self._reject_too_large()
            raise httptools.HttpParserError("body too large")
        self._body.append(body)

    def on_message_complete(self) -> None:
        parser = self._parser
        url = self._url
        path, query = _URLS.get(url) or _split_url(url)  # the memo's hit inline: no call
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        keep_alive = parser.should_keep_alive()
        method = parser.get_method()
        request = Request(
            _METHODS.get(method) or method.decode(), path, query, self._headers, body, keep_alive
        )
        self._state = _HANDLING
        self.deadline = 0.0  # the handler bounds its own time (e.g. the application's SLO)
        if parser.should_upgrade():
            self._upgrade_request(request)
            return
        self._dispatch(request)

    # -- Upgrade and CONNECT ---------------------------------------------------------------------
    def _upgrade_request(self, request: Request) -> None:
        """An ``Upgrade``/``CONNECT`` request is complete as far as httptools goes.

        The upgrade is not performed (RFC 9110 §7.8 lets a server ignore ``Upgrade``): the request
        is answered in HTTP/1.1 and later bytes are parsed as HTTP/1.1 again. httptools stops at the
        end of the headers (it hands the rest to the "new protocol"), so a ``Content-Length`` body
        is read here (:meth:`_raw_body`) before the request is dispatched; a chunked body cannot be
        framed that way and gets 400. ``CONNECT`` is answered and the connection then closed: what
        follows it is tunnel data, not HTTP.
        """
        if request.method == "CONNECT":
            request.keep_alive = False
            self._raw_left = _DISCARD
            self._dispatch(request)
        elif any(name.lower() == b"transfer-encoding" for name, _ in self._headers):
            self._fail(400, "Bad Request", "a chunked body cannot come with Upgrade: send it without Upgrade")
        elif (length := self._announced_length()) > self._limits.max_body_bytes:
            self._reject_too_large()
        elif length > 0:
            self._raw_request = request
            self._raw_left = length
            self._state = _BODY
            self.deadline = time.monotonic() + self._limits.body_timeout
        else:
            self._dispatch(request)

    def _after_upgrade(self, rest: bytes) -> bytes:
        """httptools stopped where it would switch protocols: the bytes to parse on as HTTP/1.1."""
        if self._closing:
            return b""
        if self._raw_left:
            rest = self._raw_body(rest)
        return rest

    def _raw_body(self, data: bytes) -> bytes:
        """Take the body of an Upgrade request from ``data``; returns the bytes after it."""
        if self._raw_left == _DISCARD:
            return b""
        take = min(self._raw_left, len(data))
        self._body.append(data[:take])
        self._raw_left -= take
        if self._raw_left == 0:
            request = self._raw_request
            assert request is not None
            self._raw_request = None
            request.body = b"".join(self._body)
            self._body = []
            self._dispatch(request)
        return data[take:]

    # -- dispatch and ordered writes -------------------------------------------------------------
    def _dispatch(self, request: Request) -> None:
        close = not request.keep_alive
        head_only = request.method == "HEAD"
        result: object  # whatever the handler returned: anything else than promised is a 500
        try:
            result = self._handler(request)
        except Exception:
            log.exception("unhandled error in HTTP handler for %s %s", request.method, request.path)
            result = Response(500, b"An unexpected error occurred!", TEXT)
        if isinstance(result, Response):
            if not self._pending:
                self._write(result, close, head_only)
                return
            self._pending.append([result, close, head_only])
            return
        slot: _Slot = [None, close, head_only]
        self._pending.append(slot)
        if len(self._pending) >= self._limits.max_pipelined:
            self._pause_reading()
        if isinstance(result, Deferred):
            self._attach(result, slot)
            return
        fut = asyncio.ensure_future(result) if inspect.isawaitable(result) else None
        if fut is None:
            log.error("HTTP handler returned %r, not a Response", type(result))
            slot[0] = Response(500, b"An unexpected error occurred!", TEXT)
            self._flush()
            return
        fut.add_done_callback(lambda f: self._resolved(slot, f))

    def _attach(self, deferred: Deferred, slot: _Slot) -> None:
        if deferred._early is not None:
            slot[0] = deferred._early
            self._flush()
        else:
            deferred._conn = self
            deferred._slot = slot

    def _resolved(self, slot: _Slot, fut: asyncio.Future[Any]) -> None:
        if fut.cancelled():
            slot[0] = Response(503, b'{"error":"Service Unavailable","cause":"request cancelled"}')
        elif fut.exception() is not None:
            exc = fut.exception()
            log.error("unhandled error in HTTP handler", exc_info=exc)
            slot[0] = Response(500, b"An unexpected error occurred!", TEXT)
        else:
            result = fut.result()
            if isinstance(result, Deferred):  # an awaitable may hand over to a Deferred
                self._attach(result, slot)
                return
            slot[0] = result
        self._flush()

    def _flush(self) -> None:
        pending = self._pending
        while pending and pending[0][0] is not None:
            response, close, head_only = pending.popleft()
            self._write(response, close, head_only)
            if self._closing:
                pending.clear()
                return
        if self._reading_paused and len(pending) < self._limits.max_pipelined:
            self._resume_reading()

    def _write(self, response: Response, close: bool, head_only: bool = False) -> None:
        transport = self._transport
        if transport is None or self._closing:
            return
        transport.write(response.encode(close, head_only))
        if close:
            self._closing = True
            transport.close()
        elif not self._pending and self._state == _HANDLING:
            if self._in_head:  # the next (pipelined) request has begun to arrive
                self._state = _HEADERS
                self.deadline = -self._limits.header_timeout
            else:
                self._state = _IDLE
                self._idle[self] = None
                self.deadline = -self._limits.keep_alive_timeout

    # -- errors and flow control -----------------------------------------------------------------
    def _count_head(self) -> int:
        """The head's bytes so far (target and header fields); fields are counted once each."""
        headers = self._headers
        for i in range(self._headers_counted, len(headers)):
            name, value = headers[i]
            self._header_bytes += len(name) + len(value)
        self._headers_counted = len(headers)
        return self._header_bytes + len(self._url)

    def _check_head_size(self, received: int, grew: bool) -> None:
        """After a chunk that ended inside a request head: 431 once the head passes the limit.

        httptools buffers a header field internally and reports it only when complete, so a chunk
        that added nothing to the head went whole into one field (``_swallowed``).
        """
        if grew:
            self._swallowed = 0
        else:
            self._swallowed += received
        if self._count_head() + self._swallowed > self._limits.max_header_bytes:
            self._reject_head()

    def _announced_length(self) -> int:
        """The head's Content-Length (-1 without one; llhttp has checked that it is well-formed)."""
        for name, value in self._headers:
            if len(name) == 14 and name.lower() == b"content-length" and value.isdigit():
                return int(value)
        return -1

    def _check_announced_body(self) -> None:
        """A head has arrived without all of its body: 413 at once for a Content-Length over the
        limit (no need to receive it), ``100 Continue`` for a client that waits for it."""
        self._announced = True
        if self._announced_length() > self._limits.max_body_bytes:
            self._reject_too_large()
            return
        for name, value in self._headers:
            if len(name) == 6 and name.lower() == b"expect" and value.lower() == b"100-continue":
                self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # type: ignore[union-attr]
                return

    def _reject_head(self) -> None:
        self._fail(
            431,
            "Request Header Fields Too Large",
            f"request headers are too large (limit {self._limits.max_header_bytes} bytes)",
        )

    def _reject_too_large(self) -> None:
        self._fail(
            413,
            "Payload Too Large",
            f"request body exceeds the limit of {self._limits.max_body_bytes} bytes",
        )

    def _fail(self, status: int, error: str, cause: str) -> None:
        """Answer an HTTP-level error after any responses still owed, then close.

        The close lingers: our side is shut down for writing at once (the client sees the response
        and EOF) while input still arriving is read and dropped for up to ``linger_timeout`` (and at
        most ``_LINGER_BYTES``), so the
        client's kernel is not sent a reset that would discard the error response before it is read.
        Responses still pending from a handler are abandoned: the client broke the protocol.
        """
        if self._closing:
            return
        self._flush()  # responses already made go out first (one of them may close)
        if self._closing:
            return
        self._closing = True
        self._idle.pop(self, None)
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if not self._pending:
            transport.write(error_response(status, error, cause).encode(True))
        self._pending.clear()
        self._resume_reading()
        if transport.can_write_eof():
            transport.write_eof()
            self.deadline = time.monotonic() + self._limits.linger_timeout
        else:  # pragma: no cover - TCP transports can half-close
            transport.close()

    def timed_out(self) -> None:
        if not self._closing and self._state in (_HEADERS, _BODY) and not self._pending:
            self._fail(408, "Request Timeout", "the request was not received in time")
        elif self._transport is not None:
            self._closing = True
            self.deadline = 0.0
            self._transport.close()

    def _pause_reading(self) -> None:
        if not self._reading_paused and self._transport is not None and not self._transport.is_closing():
            self._reading_paused = True
            self._transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._reading_paused and self._transport is not None and not self._transport.is_closing():
            self._reading_paused = False
            self._transport.resume_reading()


class HttpServer:
    """Owns the listening socket, the open connections and the timeout sweep."""

    def __init__(self, handler: Handler, limits: Limits, loop: asyncio.AbstractEventLoop) -> None:
        self.handler = handler
        self.limits = limits
        self.loop = loop
        self.connections: set[_Connection] = set()
        # idle keep-alive connections, longest idle first (the first closed when at the cap)
        self.idle: OrderedDict[_Connection, None] = OrderedDict()
        self.max_connections = limits.max_connections or default_max_connections(raise_open_file_limit())
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.TimerHandle | None = None

    def admit(self, conn: _Connection) -> None:
        """A new connection: at the cap, close the longest-idle one, or else answer 503 and close."""
        connections = self.connections
        if len(connections) >= self.max_connections:
            if self.idle:
                oldest, _ = self.idle.popitem(last=False)
                connections.discard(oldest)
                oldest.timed_out()  # idle: nothing owed, so this just closes it
            else:  # no lingering close here: under a flood that would hold ever more files
                conn._closing = True
                response = error_response(
                    503, "Service Unavailable", "too many open connections; retry later"
                )
                conn._transport.write(response.encode(True))  # type: ignore[union-attr]
                conn._transport.close()  # type: ignore[union-attr]
                return
        connections.add(conn)
        self.idle[conn] = None

    async def start(self, host: str, port: int, *, reuse_port: bool = False, backlog: int = 2048) -> None:
        self._server = await self.loop.create_server(
            lambda: _Connection(self), host, port, reuse_port=reuse_port, backlog=backlog
        )
        self._schedule_sweep()

    @property
    def port(self) -> int:
        assert self._server is not None
        # Any: uvloop's sockets and addresses are lists where typeshed says tuples, which compiled
        # code (mypyc) would check
        server: Any = self._server
        port: int = server.sockets[0].getsockname()[1]
        return port

    def _schedule_sweep(self) -> None:
        self._sweeper = self.loop.call_later(0.5, self._sweep)

    def _sweep(self) -> None:
        now = time.monotonic()
        expired = []
        for conn in self.connections:
            deadline = conn.deadline
            if deadline < 0.0:  # armed since the last sweep (see _Connection.deadline): starts now
                conn.deadline = now - deadline
            elif deadline and deadline < now:
                expired.append(conn)
        for conn in expired:
            conn.timed_out()
        self._schedule_sweep()

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            if conn._transport is not None:
                conn._transport.close()
        if self._server is not None:
            await self._server.wait_closed()


async def serve(
    handler: Handler,
    host: str,
    port: int,
    *,
    max_body_bytes: int = _DEFAULT_LIMITS.max_body_bytes,
    max_header_bytes: int = _DEFAULT_LIMITS.max_header_bytes,
    max_url_bytes: int = _DEFAULT_LIMITS.max_url_bytes,
    max_connections: int = _DEFAULT_LIMITS.max_connections,
    header_timeout: float = _DEFAULT_LIMITS.header_timeout,
    body_timeout: float = _DEFAULT_LIMITS.body_timeout,
    keep_alive_timeout: float = _DEFAULT_LIMITS.keep_alive_timeout,
    linger_timeout: float = _DEFAULT_LIMITS.linger_timeout,
    reuse_port: bool = False,
) -> HttpServer:
    """Start serving ``handler`` on ``host:port`` in the running loop; returns the server.

    ``max_connections=0`` derives the cap from the open-file limit, after raising its soft value to
    the hard limit (:func:`raise_open_file_limit`). Every timeout must be positive (ValueError).
    """
    timeouts = {
        "header_timeout": header_timeout,
        "body_timeout": body_timeout,
        "keep_alive_timeout": keep_alive_timeout,
        "linger_timeout": linger_timeout,
    }
    for name, seconds in timeouts.items():
        if not seconds > 0:  # 0 would switch a slow-loris defence off (see _Connection.deadline)
            raise ValueError(
                f"the HTTP server's {name} must be a positive number of seconds, not {seconds!r}"
            )
    limits = Limits(
        max_body_bytes=max_body_bytes,
        max_header_bytes=max_header_bytes,
        max_url_bytes=max_url_bytes,
        max_connections=max_connections,
        header_timeout=header_timeout,
        body_timeout=body_timeout,
        keep_alive_timeout=keep_alive_timeout,
        linger_timeout=linger_timeout,
    )
    server = HttpServer(handler, limits, asyncio.get_running_loop())
    await server.start(host, port, reuse_port=reuse_port)
    return server


def install_uvloop() -> None:
    """Use uvloop's event loop when it is installed (it is a dependency; this keeps tests flexible)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
