"""The admin API's exceptions, with the original's constructors and messages.

``ClipperConnectionError`` and ``ClipperStartupError`` fix a sharp edge of the original (transport
errors reached users as bare ``requests`` exceptions): they are ``ClipperException``s *and* the
``requests`` exception the original raised, so old ``except`` clauses keep working.
"""

from __future__ import annotations

import requests


class ClipperException(Exception):
    """A Clipper-related error; ``str(e)`` and ``e.msg`` are the message."""

    def __init__(self, msg, *args):
        self.msg = msg
        super().__init__(msg, *args)

    def __str__(self) -> str:
        return str(self.msg)


class UnconnectedException(ClipperException):
    def __init__(self, *args):
        message = (
            "No connection to Clipper cluster. Call ClipperConnection.connect to "
            "connect to an existing cluster or ClipperConnnection.start_clipper to "
            "create a new one"
        )
        self.message = message
        super().__init__(message, *args)


class ClipperConnectionError(ClipperException, requests.exceptions.ConnectionError):
    """The management or query frontend could not be reached."""


class ClipperStartupError(ClipperException, requests.exceptions.RequestException):
    """``start_clipper``'s health check gave up (the original raised ``RequestException``)."""
