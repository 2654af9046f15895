"""``clipper build`` on a real Docker engine: the docker example's python model becomes the image
``clipper apply`` would build, a second build is a no-op, and the ``-o`` manifests (the model as an
image source) apply and serve without building anything."""

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


def _clipper(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reconciler", "--no-color", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": ROOT},
        timeout=300,
    )


def test_build_then_apply_the_image_manifests(tmp_path, test_network, docker_client):
    from clipper_admin.docker.docker_container_manager import DockerContainerManager
    from reconciler.desired import desired_state
    from reconciler.loader import load_manifests

    cluster = f"t-build-{uuid.uuid4().hex[:8]}"
    qport = free_port()
    text = open(EXAMPLE).read()
    for old, new in (
        ("name: docker-quickstart", f"name: {cluster}"),
        ("queryPort: 1337", f"queryPort: {qport}"),
        ("managementPort: 1338", f"managementPort: {free_port()}"),
        ("rpcPort: 7000", f"rpcPort: {free_port()}"),
        ("network: clipper_network", f"network: {test_network}\n    prometheusPort: {free_port()}"),
    ):
        text = text.replace(old, new)
    src = tmp_path / "src"
    src.mkdir()
    (src / "docker.yaml").write_text(text)
    shutil.copytree(os.path.join(os.path.dirname(EXAMPLE), "models"), src / "models")
    version = desired_state(load_manifests([str(src)])).models["sum-model"].version
    tag = f"{cluster}-sum-model:{version}"  # the docker backend's name for it, as clipper apply builds it
    out_file = tmp_path / "deploy" / "clipper.yaml"
    out_file.parent.mkdir()
    try:
        first = _clipper("build", "-f", str(src), "-o", str(out_file))
        assert first.returncode == 0, first.stdout + first.stderr
        assert first.stdout == f"Model/sum-model  {tag}\n"
        image = docker_client.images.get(tag)
        assert image.labels["ai.clipper.model.name"] == "sum-model"
        assert image.labels["ai.clipper.model.version"] == version

        second = _clipper("build", "-f", str(src), "-o", str(out_file))
        assert second.returncode == 0, second.stdout + second.stderr
        assert second.stdout == first.stdout and "not built again" in second.stderr
        assert docker_client.images.get(tag).id == image.id

        built = load_manifests([str(out_file)])
        spec = built.models["sum-model"].obj.spec
        assert spec.source.image == tag and spec.packages == []
        assert "# The quickstart on Docker" in out_file.read_text()  # comments kept

        applied = _clipper("apply", "-f", str(out_file))
        assert applied.returncode == 0, applied.stdout + applied.stderr
        wait_for_output(f"localhost:{qport}", "hello-world", {"input": [1.0, 2.0, 3.5]}, "6.5")
    finally:
        # the image goes at the module's end (conftest's _model_images)
        DockerContainerManager(cluster_name=cluster, docker_network=test_network).stop_all(graceful=False)
