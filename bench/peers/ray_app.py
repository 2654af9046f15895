"""Ray Serve side of the comparison; runs inside the Ray venv (``ray[serve]``), not in ours.

``python ray_app.py PORT TEMP_DIR``: one replica of the sum model behind Ray Serve's HTTP proxy at ``/sum``, batched with ``@serve.batch``.
Prints ``READY`` when deployed and shuts Serve and Ray down on SIGTERM.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench/: the shared models

import ray  # noqa: E402
from models import sum_one  # noqa: E402
from ray import serve  # noqa: E402
from starlette.requests import Request  # noqa: E402

MAX_BATCH = int(os.environ.get("BENCH_MAX_BATCH", "32"))
BATCH_WAIT_S = float(os.environ.get("BENCH_BATCH_WAIT_S", "0.002"))


@serve.deployment(num_replicas=1, max_ongoing_requests=max(2 * MAX_BATCH, 8))
class SumModel:
    @serve.batch(max_batch_size=MAX_BATCH, batch_wait_timeout_s=BATCH_WAIT_S)
    async def predict(self, inputs: list[list[float]]) -> list[float]:
        return [sum_one(x) for x in inputs]

    async def __call__(self, request: Request) -> dict:
        body = await request.json()
        return {"output": await self.predict(body["input"])}


def main(port: int, temp_dir: str) -> None:
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=temp_dir, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(SumModel.bind(), name="bench", route_prefix="/sum")
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    print("READY", flush=True)
    stopped.wait()
    serve.shutdown()
    ray.shutdown()


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
