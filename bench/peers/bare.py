"""The reference handlers: ``bench/bare_handler.py`` (the sum computed in the HTTP process: the ceiling)
and ``bench/floor_handler.py`` (the least a server of Clipper's design does: HTTP, a queue, batches to a
model process)."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
from models import SUM_INPUT, sum_one

from clipper.net import free_port
from peers.procs import BENCH_DIR, Endpoint, post, start, stop, wait_until

HANDLERS = {
    "bare": ("bare_handler.py", "uvloop+httptools+orjson, in-process sum"),
    "floor": (
        "floor_handler.py",
        "uvloop+httptools+orjson, adaptive batches to a forked model process over a Unix socket",
    ),
}


@contextlib.contextmanager
def handler_target(name: str, workdir: Path) -> Iterator[Endpoint]:
    """``name``: a key of :data:`HANDLERS`; the handler runs on a free port until the context ends."""
    script, version = HANDLERS[name]
    port = free_port()
    log = workdir / "logs" / f"{name}.log"
    t0 = time.perf_counter()
    proc = start([sys.executable, str(BENCH_DIR / script), str(port)], log)
    try:
        url = f"http://127.0.0.1:{port}/"
        body = orjson.dumps({"input": SUM_INPUT}).decode()
        want = str(sum_one(SUM_INPUT))
        wait_until(
            lambda: str(orjson.loads(post(url, body)[1])["output"]) == want, 30, f"{name} handler", proc, log
        )
        yield Endpoint(
            name=name,
            url=url,
            body=body,
            template='{"input": [%d.5, 2.2, 3.3, 4.4]}',
            version=version,
            setup_s=time.perf_counter() - t0,
        )
    finally:
        stop(proc)
