"""Waiting for a freshly started cluster to answer (``start_clipper``'s health check)."""

from __future__ import annotations

import time

import requests

from .exceptions import ClipperStartupError

#: Poll often: the local backend's target is a first prediction within seconds of start_clipper.
POLL_INTERVAL = 0.05


def wait_for_frontends(query_addr: str, admin_addr: str, headers: dict[str, str], timeout: float) -> None:
    """Poll ``GET /metrics`` on the query frontend and ``GET /admin/ping`` until both answer 200.

    Raises ``ClipperStartupError`` (a ``ClipperException`` and a ``requests.RequestException``, the
    type the original raised) after ``timeout`` seconds, with the last failure in the message.
    """
    deadline = time.monotonic() + timeout
    no_headers: dict[str, str] = {}
    checks = (
        ("Query frontend", f"http://{query_addr}/metrics", no_headers),
        ("Management frontend", f"http://{admin_addr}/admin/ping", headers),
    )
    last_error = "no attempt made"
    while True:
        try:
            for name, url, hdrs in checks:
                r = requests.get(url, headers=hdrs, timeout=5)
                if r.status_code != requests.codes.ok:
                    raise requests.RequestException(
                        f"{name} end point {url} health check failed (status {r.status_code})"
                    )
            return
        except requests.RequestException as e:
            last_error = str(e)
        if time.monotonic() >= deadline:
            raise ClipperStartupError(f"Clipper still initializing after {timeout:.0f} s: \n {last_error}")
        time.sleep(POLL_INTERVAL)
