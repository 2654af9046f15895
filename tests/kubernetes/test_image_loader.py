"""The ``containerd:<socket>`` image loader: locally built model images reach a cluster without a registry.

The import test runs a private containerd (own root, state and socket under tmp_path) and checks the
image lands in its ``k8s.io`` namespace, where the kubelet's CRI looks for it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid

import pytest

from clipper_admin.exceptions import ClipperException
from clipper_admin.kubernetes import images

from .test_manager import start


def test_image_loader_spec_from_argument_and_environment(monkeypatch):
    monkeypatch.delenv(images.IMAGE_LOADER_ENV, raising=False)
    assert images.image_loader(None) is None
    assert images.image_loader("containerd:/run/x/containerd.sock") == "/run/x/containerd.sock"
    monkeypatch.setenv(images.IMAGE_LOADER_ENV, "containerd:/run/y.sock")
    assert images.image_loader(None) == "/run/y.sock"
    assert images.image_loader("") is None  # an explicit empty value turns the environment's off
    for bad in ("kind:/x", "containerd:", "containerd:relative.sock", "/run/x.sock"):
        with pytest.raises(ClipperException, match="Unknown image loader"):
            images.image_loader(bad)


def test_manager_with_a_loader_accepts_locally_built_images(make_manager, monkeypatch):
    monkeypatch.delenv(images.IMAGE_LOADER_ENV, raising=False)
    cm = make_manager(useInternalIP=True, image_loader="containerd:/run/nowhere.sock")
    assert cm.local_cluster  # images built here reach the nodes: no registry needed
    start(cm)
    cm.deploy_model("m", "1", "doubles", f"{cm.cluster_identifier}-m:1")
    with pytest.raises(ClipperException, match="no containerd socket at /run/nowhere.sock"):
        images.load_into_containerd("busybox:1", "/run/nowhere.sock")


@pytest.mark.docker
def test_load_into_containerd_imports_into_the_cri_namespace(tmp_path):
    if os.geteuid() != 0 or not shutil.which("containerd") or not shutil.which("ctr"):
        pytest.fail("needs root and containerd/ctr (apt-get install containerd), as the cluster does")
    import docker

    tag = f"clipper-loader-test-{uuid.uuid4().hex[:8]}:1"
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "hello.txt").write_text("hello\n")
    (context / "Dockerfile").write_text("FROM scratch\nCOPY hello.txt /\n")
    client = docker.from_env()
    client.images.build(path=str(context), tag=tag, rm=True)
    socket = str(tmp_path / "containerd.sock")
    config = tmp_path / "containerd.toml"
    config.write_text(
        f'version = 2\nroot = "{tmp_path}/root"\nstate = "{tmp_path}/state"\n'
        f'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n[grpc]\n  address = "{socket}"\n'
    )
    log = open(tmp_path / "containerd.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(["containerd", "--config", str(config)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while not os.path.exists(socket) and time.monotonic() < deadline:
            time.sleep(0.1)
        images.load_into_containerd(tag, socket)
        listed = subprocess.run(
            ["ctr", "--address", socket, "-n", "k8s.io", "images", "ls", "-q"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert f"docker.io/library/{tag}" in listed
        with pytest.raises(ClipperException, match="docker save"):
            images.load_into_containerd("clipper-loader-test-absent:0", socket)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
        client.images.remove(tag, force=True)
