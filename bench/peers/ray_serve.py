"""Ray Serve target: ``ray[serve]`` pinned, in its own venv, one batched replica of the sum model."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
from models import SUM_INPUT, sum_one

from clipper.net import free_port
from peers.procs import BENCH_DIR, Endpoint, post, start, stop, wait_until
from peers.venv import ensure_venv

REQUIREMENT = "ray[serve]==2.60.0"
MAX_BATCH = 32
BATCH_WAIT_S = 0.002


@contextlib.contextmanager
def ray_target(workdir: Path, log=print) -> Iterator[Endpoint]:
    python = ensure_venv("ray-2.60.0", [REQUIREMENT], log)
    port = free_port()
    logf = workdir / "logs" / "ray.log"
    # Ray's unix sockets need a short path (107 bytes), so not under workdir.
    temp_dir = tempfile.mkdtemp(prefix="cb-ray-")
    env = {
        "BENCH_MAX_BATCH": str(MAX_BATCH),
        "BENCH_BATCH_WAIT_S": str(BATCH_WAIT_S),
        "RAY_USAGE_STATS_ENABLED": "0",
        "PYTHONPATH": str(BENCH_DIR),  # the replicas import bench/models.py
    }
    t0 = time.perf_counter()
    proc = start([str(python), str(Path(__file__).with_name("ray_app.py")), str(port), temp_dir], logf, env)
    try:
        url = f"http://127.0.0.1:{port}/sum"
        body = orjson.dumps({"input": SUM_INPUT}).decode()
        want = sum_one(SUM_INPUT)

        def ok() -> bool:
            status, out = post(url, body)
            return status == 200 and orjson.loads(out)["output"] == want

        wait_until(ok, 240, "Ray Serve", proc, logf)
        yield Endpoint(
            name="ray",
            url=url,
            body=body,
            template='{"input": [%d.5, 2.2, 3.3, 4.4]}',
            version=REQUIREMENT,
            notes=f"@serve.batch(max_batch_size={MAX_BATCH}, batch_wait_timeout_s={BATCH_WAIT_S}), "
            f"max_ongoing_requests={2 * MAX_BATCH}",
            setup_s=time.perf_counter() - t0,
        )
    finally:
        stop(proc, grace_s=30)
        shutil.rmtree(temp_dir, ignore_errors=True)
