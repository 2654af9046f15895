"""Our stack on the local backend, set up the way a user does it: ``clipper_admin`` with a
``LocalContainerManager``, an application, a Python closure deployed and linked to it."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cloudpickle
import models
import orjson

from clipper.net import free_port
from peers.procs import Endpoint, post, wait_until

# bench/models.py is not installed anywhere: ship the functions' code, not a reference to the module.
cloudpickle.register_pickle_by_value(models)

SUM_BODY = orjson.dumps({"input": models.SUM_INPUT}).decode()
TEMPLATE = '{"input": [%d.5, 2.2, 3.3, 4.4]}'


@contextlib.contextmanager
def local_cluster(workdir: Path, name: str = "bench") -> Iterator:
    """A started local cluster (``ClipperConnection``) under ``workdir``; stopped on exit."""
    from clipper_admin import ClipperConnection, LocalContainerManager

    logging.getLogger("clipper_admin").setLevel(logging.WARNING)
    cm = LocalContainerManager(
        cluster_name=name,
        clipper_query_port=free_port(),
        clipper_management_port=free_port(),
        clipper_rpc_port=free_port(),
        state_dir=str(workdir / "clipper-home"),
    )
    conn = ClipperConnection(cm)
    try:
        conn.start_clipper()
        yield conn
    finally:
        with contextlib.suppress(Exception):
            conn.stop_all()


def process_pids(home: Path, cluster: str) -> dict[str, int]:
    """pids of the query frontend and model replicas of a local cluster (its ``status.json``)."""
    status = orjson.loads((home / cluster / "status.json").read_bytes())
    return {
        ("query-frontend" if pid_id == "query-0" else pid_id.replace("/", "-")): p["pid"]
        for pid_id, p in status.get("processes", {}).items()
        if p.get("pid") and (pid_id == "query-0" or pid_id.startswith("model/"))
    }


def add_app(
    conn,
    app: str,
    func: Callable = models.sum_batch,
    batch_size: int = -1,
    slo_micros: int = 100_000,
    model: str | None = None,
    timeout_s: float = 120,
) -> Endpoint:
    """Register ``app``, deploy ``func`` as its model (one replica) and wait for a real prediction."""
    import clipper_admin
    from clipper_admin.deployers import python as python_deployer

    t0 = time.perf_counter()
    model = model or f"{app}-model"
    conn.register_application(name=app, input_type="doubles", default_output="-1.0", slo_micros=slo_micros)
    python_deployer.deploy_python_closure(
        conn, name=model, version="1", input_type="doubles", func=func, batch_size=batch_size
    )
    conn.link_model_to_app(app, model)
    url = f"http://{conn.get_query_addr()}/{app}/predict"
    want = models.sum_one(models.SUM_INPUT)

    def ok() -> bool:
        status, out = post(url, SUM_BODY)
        res = orjson.loads(out) if status == 200 else {}
        return res.get("default") is False and float(res["output"]) == want

    wait_until(ok, timeout_s, f"our frontend ({app})")
    return Endpoint(
        name="ours",
        url=url,
        body=SUM_BODY,
        template=TEMPLATE,
        version=f"clipper {getattr(clipper_admin, '__version__', '?')} (this repo), local backend",
        notes=f"{func.__name__}, batch_size={batch_size}, slo {slo_micros} us, one replica",
        setup_s=time.perf_counter() - t0,
    )
