"""``clipper build --load containerd:SOCKET`` with the Kubernetes example: the model image, named as
``clipper apply`` names it on that cluster, lands in the containerd the nodes use (here a private one),
and the ``-o`` manifests reference it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid

import docker
import pytest

from reconciler.desired import desired_state
from reconciler.loader import load_manifests

from .test_image_loader import _cri_images, private_containerd  # noqa: F401 - the fixture

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = os.path.join(ROOT, "examples", "manifests", "kubernetes.yaml")


@pytest.mark.docker
def test_build_loads_the_kubernetes_examples_model_into_containerd(tmp_path, private_containerd):  # noqa: F811
    # not ``t-...``: the Docker suite, which runs beside this one under ./test.sh, removes the model
    # images of its ``t-`` clusters when it ends (this test removes its own)
    cluster = f"kbuild-{uuid.uuid4().hex[:8]}"
    src = tmp_path / "src"
    src.mkdir()
    (src / "cluster.yaml").write_text(
        open(EXAMPLE).read().replace("name: k8s-quickstart", f"name: {cluster}")
    )
    shutil.copytree(os.path.join(os.path.dirname(EXAMPLE), "models"), src / "models")
    env = {**os.environ, "PYTHONPATH": ROOT, "REGISTRY": ""}
    version = desired_state(load_manifests([str(src)], env=env)).models["sum-model"].version
    tag = f"{cluster}-sum-model:{version}"  # namespace clipper: the identifier is the cluster's name
    out_file = tmp_path / "clipper.yaml"
    try:
        run = subprocess.run(
            [sys.executable, "-m", "reconciler", "--no-color", "build", "-f", str(src), "-o", str(out_file),
             "--load", f"containerd:{private_containerd}"],
            capture_output=True, text=True, env=env, timeout=300,
        )  # fmt: skip
        assert run.returncode == 0, run.stdout + run.stderr
        assert run.stdout == f"Model/sum-model  {tag}\n"
        assert f"docker.io/library/{tag}" in _cri_images(private_containerd)
        assert load_manifests([str(out_file)], env=env).models["sum-model"].obj.spec.source.image == tag
    finally:
        try:
            docker.from_env().images.remove(tag, force=True)
        except docker.errors.DockerException:
            pass
