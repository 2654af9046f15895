"""MLServer target: ``mlserver`` pinned, in its own venv, the sum runtime with adaptive batching.

MLServer speaks the Open Inference Protocol, so its body carries the same four doubles as a V2
tensor (``{"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP64", "data": [...]}]}``)
posted to ``/v2/models/sum/infer``. Everything else is MLServer's defaults (one parallel worker).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
from models import SUM_INPUT, sum_one

from clipper.net import free_port
from peers.procs import BENCH_DIR, Endpoint, post, start, stop, wait_until
from peers.venv import ensure_venv

REQUIREMENT = "mlserver==1.7.1"
# mlserver 1.7.1 calls asyncio.get_event_loop() in its worker processes, which uvloop >= 0.22 turns
# into "RuntimeError: There is no current event loop": pin the last uvloop it works with.
REQUIREMENTS = [REQUIREMENT, "uvloop==0.21.0"]
MODEL_DIR = Path(__file__).with_name("mlserver_model")


def v2_body(values: list[float] | str) -> str:
    data = values if isinstance(values, str) else json.dumps(values)
    head = '{"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP64", "data": '
    return head + data + "}]}"


@contextlib.contextmanager
def mlserver_target(workdir: Path, log=print) -> Iterator[Endpoint]:
    python = ensure_venv("mlserver-1.7.1", REQUIREMENTS, log)
    http_port, grpc_port, metrics_port = free_port(), free_port(), free_port()
    serve_dir = workdir / "mlserver"
    shutil.rmtree(serve_dir, ignore_errors=True)
    shutil.copytree(MODEL_DIR, serve_dir, ignore=shutil.ignore_patterns("__pycache__"))
    settings = {
        "host": "127.0.0.1",
        "http_port": http_port,
        "grpc_port": grpc_port,
        "metrics_port": metrics_port,
    }
    (serve_dir / "settings.json").write_text(json.dumps(settings, indent=2))
    model_settings = json.loads((serve_dir / "model-settings.json").read_text())
    logf = workdir / "logs" / "mlserver.log"
    mlserver_bin = python.parent / "mlserver"
    env = {"PYTHONPATH": str(BENCH_DIR)}
    t0 = time.perf_counter()
    proc = start([str(mlserver_bin), "start", str(serve_dir)], logf, env, cwd=serve_dir)
    try:
        url = f"http://127.0.0.1:{http_port}/v2/models/sum/infer"
        body = v2_body(SUM_INPUT)
        want = sum_one(SUM_INPUT)

        def ok() -> bool:
            status, out = post(url, body)
            return status == 200 and abs(orjson.loads(out)["outputs"][0]["data"][0] - want) < 1e-9

        wait_until(ok, 180, "MLServer", proc, logf)
        yield Endpoint(
            name="mlserver",
            url=url,
            body=body,
            template=v2_body("[%d.5, 2.2, 3.3, 4.4]"),
            version=" ".join(REQUIREMENTS),
            notes=f"adaptive batching max_batch_size={model_settings['max_batch_size']}, "
            f"max_batch_time={model_settings['max_batch_time']} s; V2 inference body",
            setup_s=time.perf_counter() - t0,
        )
    finally:
        stop(proc, grace_s=20)
