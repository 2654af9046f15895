"""`clipper apply` with the docker example manifest, twice: the second run changes nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid

from clipper.net import free_port

from .helpers import wait_for_output

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
        cm = DockerContainerManager(cluster_name=cluster, docker_network=test_network)
        cm.connect()
        assert cm.get_num_replicas("sum-model", _current_version(cm)) == 1
    finally:
        DockerContainerManager(cluster_name=cluster, docker_network=test_network).stop_all(graceful=False)


def _current_version(cm) -> str:
    from clipper_admin import ClipperConnection

    conn = ClipperConnection(cm)
    conn.connect()
    return conn.get_current_model_version("sum-model")
