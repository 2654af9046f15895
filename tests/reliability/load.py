"""Closed-loop client threads that count every request and every answer (nothing may be lost)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import NamedTuple

import requests


class Answer(NamedTuple):
    status: int  # -1: no HTTP answer at all (connection error, timeout)
    body: object  # parsed JSON, or the text
    seconds: float
    request: dict


class Load:
    """``n`` threads POSTing distinct inputs (the prediction cache never answers) to ``url`` until
    :meth:`stop`; each answer is kept as ``(status, json or text, seconds)``."""

    def __init__(self, url: str, n: int = 4, body: Callable[[int, int], dict] | None = None) -> None:
        self.url = url
        self.body = body or (lambda k, i: {"input": [float(k), float(i), 0.25]})
        self.sent = 0
        self.results: list[Answer] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, args=(k,), daemon=True) for k in range(n)]

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _client(self, k: int) -> None:
        session = requests.Session()
        i = 0
        while not self._stop.is_set():
            i += 1
            with self._lock:
                self.sent += 1
            body = self.body(k, i)
            t0 = time.monotonic()
            try:
                r = session.post(self.url, json=body, timeout=30)
                is_json = r.headers.get("content-type", "").startswith("application/json")
                answer = Answer(r.status_code, r.json() if is_json else r.text, time.monotonic() - t0, body)
            except requests.RequestException as e:
                answer = Answer(-1, repr(e), time.monotonic() - t0, body)
            with self._lock:
                self.results.append(answer)
        session.close()

    def stop(self, timeout: float = 40.0) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout)
        assert not any(t.is_alive() for t in self._threads), "a client never got its answer"

    # -- what the tests assert ---------------------------------------------------------------------
    def non_200(self) -> list:
        return [r for r in self.results if r.status != 200]

    def defaults(self) -> list[dict]:
        return [
            a.body
            for a in self.results
            if a.status == 200 and isinstance(a.body, dict) and a.body.get("default")
        ]
