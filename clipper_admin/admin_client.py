"""HTTP to the management frontend: one place for URLs, headers, timeouts and error mapping."""

from __future__ import annotations

import json
import logging
import threading
from typing import TYPE_CHECKING, Any

import requests

from .exceptions import ClipperConnectionError, ClipperException, http_error

if TYPE_CHECKING:
    from .container_manager import ContainerManager

logger = logging.getLogger(__name__)

#: Seconds to wait for the management frontend (the original waited forever).
DEFAULT_TIMEOUT = 60.0


class AdminClient:
    """POSTs JSON to ``http://<admin addr>/admin/<endpoint>``.

    Non-200 answers become ``ClipperException("Received error status code: <code> and message: <text>")``
    as in the original (a :class:`~clipper_admin.exceptions.ClipperHTTPError` with ``status`` set); an unreachable server becomes ``ClipperConnectionError`` (also a
    ``requests.ConnectionError``); a body that cannot be JSON-encoded becomes a ``ClipperException``.
    """

    def __init__(self, container_manager: ContainerManager, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.cm = container_manager
        self.timeout = timeout
        # one keep-alive session per thread (a reconciler renews its lease from a second thread):
        # a call then costs one request on an open connection, not a new session and connection
        self._local = threading.local()

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def headers(self) -> dict[str, str]:
        headers = {"Content-type": "application/json"}
        token = getattr(self.cm, "admin_token", None)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def url(self, endpoint: str) -> str:
        return f"http://{self.cm.get_admin_addr()}/admin/{endpoint}"

    def post(self, endpoint: str, body: dict[str, Any]) -> requests.Response:
        try:
            data = json.dumps(body)
        except (TypeError, ValueError) as e:
            raise ClipperException(f"Invalid argument for /admin/{endpoint}: {e}") from None
        url = self.url(endpoint)
        try:
            r = self._session().post(url, headers=self.headers(), data=data, timeout=self.timeout)
        except requests.exceptions.RequestException as e:
            raise ClipperConnectionError(
                f"Could not reach the Clipper management frontend at {url}: {e}. "
                "Is the cluster running? (ClipperConnection.start_clipper or connect)"
            ) from e
        if r.status_code != requests.codes.ok:
            msg = f"Received error status code: {r.status_code} and message: {r.text}"
            logger.error(msg)
            raise http_error(msg, r.status_code)
        return r

    def post_json(self, endpoint: str, body: dict[str, Any]) -> Any:
        r = self.post(endpoint, body)
        try:
            return r.json()
        except ValueError:
            raise ClipperException(
                f"The management frontend answered /admin/{endpoint} with invalid JSON: {r.text[:200]}"
            ) from None
