"""The ``containerd:<socket>`` image loader: locally built model images reach a cluster without a registry.

The import tests run a private containerd (own root, state and socket under tmp_path) and check the
image lands in its ``k8s.io`` namespace, where the kubelet's CRI looks for it; one builds the image
with the manager's ``build_model`` (the shared offline builder) first.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid

import pytest

from clipper_admin.exceptions import ClipperException
from clipper_admin.kubernetes import KubernetesContainerManager, images
from clipper_admin.version import __registry__, __version__

from ..docker.helpers import write_local_wheel
from .memory_api import MemoryKubeApi
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


@pytest.fixture
def private_containerd(tmp_path):
    """A containerd of this test only (own root, state and socket under tmp_path, no CRI); its socket."""
    if os.geteuid() != 0 or not shutil.which("containerd") or not shutil.which("ctr"):
        pytest.fail("needs root and containerd/ctr (apt-get install containerd), as the cluster does")
    socket = str(tmp_path / "containerd.sock")
    config = tmp_path / "containerd.toml"
    config.write_text(
        f'version = 2\nroot = "{tmp_path}/root"\nstate = "{tmp_path}/state"\n'
        f'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n[grpc]\n  address = "{socket}"\n'
    )
    log = open(tmp_path / "containerd.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(["containerd", "--config", str(config)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 60
        while not os.path.exists(socket) and time.monotonic() < deadline:
            time.sleep(0.1)
        yield socket
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def _cri_images(socket: str) -> list[str]:
    return subprocess.run(
        ["ctr", "--address", socket, "-n", "k8s.io", "images", "ls", "-q"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()


@pytest.mark.docker
def test_load_into_containerd_imports_into_the_cri_namespace(tmp_path, private_containerd):
    import docker

    tag = f"clipper-loader-test-{uuid.uuid4().hex[:8]}:1"
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "hello.txt").write_text("hello\n")
    (context / "Dockerfile").write_text("FROM scratch\nCOPY hello.txt /\n")
    client = docker.from_env()
    client.images.build(path=str(context), tag=tag, rm=True)
    try:
        images.load_into_containerd(tag, private_containerd)
        assert f"docker.io/library/{tag}" in _cri_images(private_containerd)
        with pytest.raises(ClipperException, match="docker save"):
            images.load_into_containerd("clipper-loader-test-absent:0", private_containerd)
    finally:
        client.images.remove(tag, force=True)


@pytest.mark.docker
def test_build_model_builds_offline_and_imports_into_the_nodes_containerd(
    tmp_path, monkeypatch, private_containerd
):
    """What ``deploy_python_closure`` does on Kubernetes without a registry: the Docker backend's
    offline builder (requirements as wheels fetched on this machine, ``pip install --no-index`` in
    the build), then the image loader. The requirement exists only as a local wheel, so a build
    that asked a package index from inside ``docker build`` fails."""
    import docker

    wheels = tmp_path / "wheels"
    write_local_wheel(wheels, "clipper_probe_pkg", "1.0", "VALUE = 'probe-1.0'\n")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    monkeypatch.delenv(images.IMAGE_LOADER_ENV, raising=False)
    model = tmp_path / "model"
    model.mkdir()
    (model / "requirements.txt").write_text("clipper_probe_pkg==1.0\n")
    (model / "func.txt").write_text("f\n")
    cluster = f"loader-{uuid.uuid4().hex[:6]}"
    cm = KubernetesContainerManager(
        cluster_name=cluster, api=MemoryKubeApi(), image_loader=f"containerd:{private_containerd}"
    )
    client = docker.from_env()
    tag = cm.build_model("m", "1", str(model), f"{__registry__}/python311-closure-container:{__version__}")
    try:
        assert tag == f"default-{cluster}-m:1"  # no registry: the local tag, as on the Docker backend
        assert f"docker.io/library/{tag}" in _cri_images(private_containerd)
        image = client.images.get(tag)
        assert image.labels["ai.clipper.model.name"] == "m"
        out = client.containers.run(
            tag,
            entrypoint=["python", "-c", "import clipper_probe_pkg; print(clipper_probe_pkg.VALUE)"],
            network_mode="none",
            remove=True,
        ).decode()
        assert "probe-1.0" in out
    finally:
        client.images.remove(tag, force=True)


@pytest.mark.docker
def test_model_images_a_module_imported_are_removed_from_the_containerd(tmp_path, private_containerd):
    """tests/model_images.py with a containerd (as after each e2e module): what was imported meanwhile
    goes from there, also an image the engine already had (a build from the cache), which stays in
    the engine; what the containerd had before stays."""
    import docker

    from tests.docker.test_model_images import _build
    from tests.model_images import removed_afterwards

    client = docker.from_env()
    own = f"own-{uuid.uuid4().hex[:8]}"
    kept, cached, built = f"{own}-m:0", f"{own}-m:1", f"{own}-m:2"
    try:
        _build(client, tmp_path, kept, own, "in containerd before")
        _build(client, tmp_path, cached, own, "in the engine before")
        images.load_into_containerd(kept, private_containerd)
        with removed_afterwards(lambda cluster: cluster == own, containerd=private_containerd):
            _build(client, tmp_path, built, own, "new")
            images.load_into_containerd(cached, private_containerd)
            images.load_into_containerd(built, private_containerd)
        assert [i for i in _cri_images(private_containerd) if own in i] == [f"docker.io/library/{kept}"]
        assert {t for i in client.images.list() for t in i.tags if own in t} == {kept, cached}
    finally:
        for tag in (kept, cached, built):
            try:
                client.images.remove(tag, force=True)
            except docker.errors.ImageNotFound:
                pass
