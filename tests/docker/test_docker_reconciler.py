"""`clipper apply` with the docker example manifest, twice: the second run changes nothing."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import uuid

from clipper.net import free_port

from .helpers import wait_for, wait_for_output

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = os.path.join(ROOT, "examples", "manifests", "docker.yaml")


def _clipper(*args, env):
    return subprocess.run(
        [sys.executable, "-m", "reconciler", "--no-color", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_apply_docker_example_twice(tmp_path, test_network):
    from clipper_admin.docker.docker_container_manager import DockerContainerManager

    cluster = f"t-apply-{uuid.uuid4().hex[:8]}"
    qport = free_port()
    text = open(EXAMPLE).read()
    text = text.replace("name: docker-quickstart", f"name: {cluster}")
    text = text.replace("queryPort: 1337", f"queryPort: {qport}")
    text = text.replace("managementPort: 1338", f"managementPort: {free_port()}")
    text = text.replace("rpcPort: 7000", f"rpcPort: {free_port()}")
    text = text.replace(
        "network: clipper_network", f"network: {test_network}\n    prometheusPort: {free_port()}"
    )
    (tmp_path / "docker.yaml").write_text(text)
    shutil.copytree(os.path.join(os.path.dirname(EXAMPLE), "models"), tmp_path / "models")
    env = {**os.environ, "PYTHONPATH": ROOT}
    try:
        first = _clipper("apply", "-f", str(tmp_path / "docker.yaml"), env=env)
        assert first.returncode == 0, first.stdout + first.stderr
        wait_for_output(f"localhost:{qport}", "hello-world", {"input": [1.0, 2.0, 3.0]}, "6.0")
        second = _clipper("apply", "-f", str(tmp_path / "docker.yaml"), env=env)
        assert second.returncode == 0, second.stdout + second.stderr
        diff = _clipper("diff", "-f", str(tmp_path / "docker.yaml"), env=env)
        assert diff.returncode == 0, diff.stdout + diff.stderr  # converged: nothing left to do
        # a Cluster setting the running Docker cluster cannot change in place: refused, with the reason
        (tmp_path / "changed.yaml").write_text(
            text.replace("backend: docker", "backend: docker\n  cacheSizeBytes: 1024")
        )
        refused = _clipper("diff", "-f", str(tmp_path / "changed.yaml"), env=env)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert (
            "cacheSizeBytes" in refused.stdout and "delete the cluster and apply again" in refused.stdout
        ), refused.stdout
        cm = DockerContainerManager(cluster_name=cluster, docker_network=test_network)
        cm.connect()
        version = _current_version(cm)
        assert cm.get_num_replicas("sum-model", version) == 1
        _killed_model_container_is_replaced_by_watch(tmp_path / "docker.yaml", cm, version, qport, env)
    finally:
        DockerContainerManager(cluster_name=cluster, docker_network=test_network).stop_all(graceful=False)


def _model_containers(cm):
    from clipper_admin.container_manager import CLIPPER_DOCKER_LABEL, CLIPPER_MODEL_CONTAINER_LABEL

    return [
        c
        for c in cm.docker_client.containers.list(
            filters={"label": f"{CLIPPER_DOCKER_LABEL}={cm.cluster_name}"}
        )
        if CLIPPER_MODEL_CONTAINER_LABEL in c.labels
    ]


def _killed_model_container_is_replaced_by_watch(manifest, cm, version, qport, env) -> None:
    """Issue 5: `docker kill` a model container; `clipper watch` notices the drift and replaces it."""
    (victim,) = _model_containers(cm)
    victim.kill()
    watcher = subprocess.Popen(
        [sys.executable, "-m", "reconciler", "--no-color", "watch", "-f", str(manifest), "--interval", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:

        def replaced():
            alive = [c for c in _model_containers(cm) if c.id != victim.id and c.status == "running"]
            return len(alive) == 1

        wait_for(replaced, 180, "a replacement model container started by clipper watch")
        wait_for_output(f"localhost:{qport}", "hello-world", {"input": [2.0, 2.0]}, "4.0")
    finally:
        watcher.send_signal(signal.SIGINT)
        try:
            watcher.wait(timeout=30)
        except subprocess.TimeoutExpired:
            watcher.kill()


def _current_version(cm) -> str:
    from clipper_admin import ClipperConnection

    conn = ClipperConnection(cm)
    conn.connect()
    return conn.get_current_model_version("sum-model")
