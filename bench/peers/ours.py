"""Our stack on the local backend, set up the way a user does it: ``clipper_admin`` with a
``LocalContainerManager``, an application, a Python closure deployed and linked to it."""

from __future__ import annotations

import contextlib
import logging
import re
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import cloudpickle
import models
import orjson

from clipper.compiled import frontend_hot_path
from clipper.net import free_port
from peers.procs import REPO_DIR, BenchError, Endpoint, post, wait_until

# bench/models.py is not installed anywhere: ship the functions' code, not a reference to the module.
cloudpickle.register_pickle_by_value(models)

#: ``docker_cluster(publish_host=GATEWAY)``: publish on the cluster network's gateway address
GATEWAY = "<gateway>"
SUM_BODY = orjson.dumps({"input": models.SUM_INPUT}).decode()
TEMPLATE = '{"input": [%d.5, 2.2, 3.3, 4.4]}'


@contextlib.contextmanager
def local_cluster(workdir: Path, name: str = "bench", cache_size: int | None = None) -> Iterator:
    """A started local cluster (``ClipperConnection``) under ``workdir``; stopped on exit.
    ``cache_size``: the prediction cache's bytes (None: the default)."""
    from clipper_admin import LocalContainerManager

    cm = LocalContainerManager(
        cluster_name=name,
        clipper_query_port=free_port(),
        clipper_management_port=free_port(),
        clipper_rpc_port=free_port(),
        state_dir=str(workdir / "clipper-home"),
    )
    with _started(cm, cache_size) as conn:
        yield conn


@contextlib.contextmanager
def docker_cluster(name: str, cache_size: int | None = None, **manager_kwargs) -> Iterator:
    """A started Docker-backend cluster on free host ports and a network of its own; its containers,
    network and model images are removed on exit. ``manager_kwargs`` go to ``DockerContainerManager``;
    ``publish_host=GATEWAY`` publishes the ports on the network's gateway address (connections from
    this host to it are forwarded by the engine's iptables rules, not by its userland proxy)."""
    import docker

    from clipper_admin import DockerContainerManager
    from clipper_admin.container_manager import CLIPPER_DOCKER_LABEL

    client = docker.from_env()
    network = client.networks.create(f"{name}-net", driver="bridge")
    if manager_kwargs.get("publish_host") == GATEWAY:
        network.reload()
        gateway = network.attrs["IPAM"]["Config"][0]["Gateway"]
        manager_kwargs.update(publish_host=gateway, docker_ip_address=gateway)
    cm = DockerContainerManager(
        cluster_name=name,
        clipper_query_port=free_port(),
        clipper_management_port=free_port(),
        clipper_rpc_port=free_port(),
        redis_port=free_port(),
        prometheus_port=free_port(),
        docker_network=network.name,
        docker_client=client,
        **manager_kwargs,
    )
    try:
        with _started(cm, cache_size) as conn:
            yield conn
    finally:
        for image in client.images.list(filters={"label": f"{CLIPPER_DOCKER_LABEL}={name}"}):
            with contextlib.suppress(docker.errors.DockerException):
                client.images.remove(image.id, force=True)
        with contextlib.suppress(docker.errors.DockerException):
            network.remove()


@contextlib.contextmanager
def kubernetes_cluster(
    name: str, kubeconfig: str, image_loader: str | None, cache_size: int | None = None
) -> Iterator:
    """A started Kubernetes-backend cluster in a namespace of its own, set up as the end-to-end tests
    set up theirs on the test cluster (small CPU requests, node ports on the node's address); the
    namespace is deleted on exit."""
    import os
    import sys

    import pytest

    os.environ["CLIPPER_K8S_E2E_KUBECONFIG"] = kubeconfig
    if image_loader:
        os.environ["CLIPPER_K8S_E2E_IMAGE_LOADER"] = image_loader
    sys.path.insert(0, str(REPO_DIR))
    from tests.kubernetes import e2e

    try:
        api = e2e.api_client()
    except pytest.skip.Exception as e:
        raise BenchError(f"the kubernetes target: {e}") from None
    namespace = e2e.unique(f"{name}-k8s")
    try:
        with _started(e2e.manager(api, name, namespace), cache_size) as conn:
            yield conn
    finally:
        e2e.delete_namespace(api, namespace)


@contextlib.contextmanager
def _started(cm, cache_size: int | None) -> Iterator:
    from clipper_admin import ClipperConnection

    logging.getLogger("clipper_admin").setLevel(logging.WARNING)
    conn = ClipperConnection(cm)
    try:
        conn.start_clipper(**({} if cache_size is None else {"cache_size": cache_size}))
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
    backend: str = "local backend",
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
    query_addr = conn.get_query_addr()
    # a local frontend imports what this process imports (the images' frontends: interpreted)
    hot = f", hot path {frontend_hot_path()}" if backend == "local backend" else ""
    return Endpoint(
        name="ours",
        url=url,
        body=SUM_BODY,
        template=TEMPLATE,
        version=f"clipper {getattr(clipper_admin, '__version__', '?')} (this repo), {backend}" + hot,
        notes=f"{func.__name__}, batch_size={batch_size}, slo {slo_micros} us, one replica",
        setup_s=time.perf_counter() - t0,
        extra={"defaults_total": lambda: defaults_total(query_addr, app)},
    )


def defaults_total(query_addr: str, app: str) -> int:
    """Default answers the query frontend has given ``app`` so far (its Prometheus counter), for load
    runs without wrk's response hook, where wrk never sees a body."""
    url = f"http://{query_addr}/metrics?format=prometheus"
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            text = resp.read().decode()
    except OSError as e:
        raise BenchError(f"{url}: {e}") from None
    pattern = (
        r'^clipper_app_default_prediction_ratio_numerator_total\{[^}]*app="'
        + re.escape(app)
        + r'"[^}]*\} (\S+)$'
    )
    found = re.search(pattern, text, re.MULTILINE)
    if found is None:
        raise BenchError(f"{url} has no default counter of application {app!r}")
    return int(float(found.group(1)))
