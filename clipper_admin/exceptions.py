"""The admin API's exceptions, with the original's constructors and messages.

``ClipperConnectionError`` and ``ClipperStartupError`` fix a sharp edge of the original (transport
errors reached users as bare ``requests`` exceptions): they are ``ClipperException``s *and* the
``requests`` exception the original raised, so old ``except`` clauses keep working.

Every error also carries structure, so that callers never match on message text: ``e.kind`` (an
:class:`ErrorKind`, or ``None`` when nothing more is known) and, for an answer of the management or
query frontend, ``e.status`` (its HTTP status). The subclasses below are all ``ClipperException``s
with the original's messages; ``except ClipperException`` still catches every one.
"""

from __future__ import annotations

import enum

import requests


class ErrorKind(enum.StrEnum):
    NOT_FOUND = "not_found"  # the named object does not exist
    ALREADY_EXISTS = "already_exists"  # creating an object that exists
    INVALID_STATE = "invalid_state"  # the object exists but cannot do that now (e.g. containerless)
    REJECTED = "rejected"  # the management frontend refused the request (HTTP 400)
    UNAUTHORIZED = "unauthorized"  # missing or wrong admin token (HTTP 401)
    SERVER_ERROR = "server_error"  # the frontend failed (HTTP 5xx, e.g. its store)
    UNAVAILABLE = "unavailable"  # the frontend could not be reached


class ClipperException(Exception):
    """A Clipper-related error; ``str(e)`` and ``e.msg`` are the message.

    ``kind`` and ``status`` (HTTP status, when a frontend answered) classify it; ``None`` when unknown.
    """

    kind: ErrorKind | None = None
    status: int | None = None

    def __init__(self, msg: object, *args: object) -> None:
        self.msg = msg
        super().__init__(msg, *args)

    def __str__(self) -> str:
        return str(self.msg)


class NotFound(ClipperException):
    kind = ErrorKind.NOT_FOUND


class AlreadyExists(ClipperException):
    kind = ErrorKind.ALREADY_EXISTS


class InvalidState(ClipperException):
    kind = ErrorKind.INVALID_STATE


class ClipperHTTPError(ClipperException):
    """A frontend answered with an error status; ``e.status`` is it, ``e.kind`` follows from it.

    The management frontend answers every refused operation with 400 and the original's bare
    message (the wire protocol has no finer code), so such an error is :attr:`ErrorKind.REJECTED`.
    """

    def __init__(self, msg: str, status: int, *args: object) -> None:
        super().__init__(msg, *args)
        self.status = status
        self.kind = status_kind(status)


class Unauthorized(ClipperHTTPError):
    """HTTP 401: the management frontend requires ``Authorization: Bearer <token>``."""


def status_kind(status: int) -> ErrorKind | None:
    if status == 400:
        return ErrorKind.REJECTED
    if status in (401, 403):
        return ErrorKind.UNAUTHORIZED
    if status == 404:
        return ErrorKind.NOT_FOUND
    if status >= 500:
        return ErrorKind.SERVER_ERROR
    return None


def http_error(msg: str, status: int) -> ClipperHTTPError:
    """The exception for an error answer: :class:`Unauthorized` for 401, else :class:`ClipperHTTPError`."""
    return Unauthorized(msg, status) if status == 401 else ClipperHTTPError(msg, status)


class UnconnectedException(ClipperException):
    kind = ErrorKind.INVALID_STATE

    def __init__(self, *args: object) -> None:
        message = (
            "No connection to Clipper cluster. Call ClipperConnection.connect to "
            "connect to an existing cluster or ClipperConnnection.start_clipper to "
            "create a new one"
        )
        self.message = message
        super().__init__(message, *args)


class ClipperConnectionError(ClipperException, requests.exceptions.ConnectionError):
    """The management or query frontend could not be reached."""

    kind = ErrorKind.UNAVAILABLE


class ClipperStartupError(ClipperException, requests.exceptions.RequestException):
    """``start_clipper``'s health check gave up (the original raised ``RequestException``)."""

    kind = ErrorKind.UNAVAILABLE
