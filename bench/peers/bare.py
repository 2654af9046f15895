"""The reference ceiling: ``bench/bare_handler.py``, the sum computed in the HTTP process."""

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


@contextlib.contextmanager
def bare_target(workdir: Path) -> Iterator[Endpoint]:
    port = free_port()
    log = workdir / "logs" / "bare.log"
    t0 = time.perf_counter()
    proc = start([sys.executable, str(BENCH_DIR / "bare_handler.py"), str(port)], log)
    try:
        url = f"http://127.0.0.1:{port}/"
        body = orjson.dumps({"input": SUM_INPUT}).decode()
        want = sum_one(SUM_INPUT)
        wait_until(lambda: orjson.loads(post(url, body)[1])["output"] == want, 30, "bare handler", proc, log)
        yield Endpoint(
            name="bare",
            url=url,
            body=body,
            template='{"input": [%d.5, 2.2, 3.3, 4.4]}',
            version="uvloop+httptools+orjson, in-process sum",
            setup_s=time.perf_counter() - t0,
        )
    finally:
        stop(proc)
