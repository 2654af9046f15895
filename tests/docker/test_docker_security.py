"""The admin token and image provenance on a real engine (issue 12: a token by default; a replica
started from a model's registration runs only an image this cluster built)."""

from __future__ import annotations

import io
import tarfile

import pytest
import requests

from clipper_admin import ClipperConnection, ClipperException, DockerContainerManager
from clipper_admin.container_manager import CLIPPER_DOCKER_LABEL, CLIPPER_MGMT_FRONTEND_CONTAINER_LABEL
from clipper_admin.version import __registry__, __version__


def _labelled_image(client, tag: str, labels: dict[str, str]) -> None:
    """A tiny image carrying ``labels`` (built offline from the base image)."""
    dockerfile = b"FROM clipper/debian-base:bookworm\n"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile))
    buf.seek(0)
    client.images.build(fileobj=buf, custom_context=True, tag=tag, labels=labels, rm=True)


def test_token_by_default_and_only_images_built_here_start_from_the_store(make_manager, docker_client):
    cm = make_manager()
    conn = ClipperConnection(cm)
    conn.start_clipper()
    token = cm.admin_token
    assert token and len(token) == 64
    url = f"http://{cm.get_admin_addr()}/admin/get_all_applications"
    assert requests.post(url, json={"verbose": False}, timeout=10).status_code == 401
    assert requests.get(f"http://{cm.get_admin_addr()}/admin/ping", timeout=10).status_code == 200
    # the token is not on the management frontend's command line
    [mgmt] = docker_client.containers.list(
        filters={
            "label": [f"{CLIPPER_DOCKER_LABEL}={cm.cluster_name}", CLIPPER_MGMT_FRONTEND_CONTAINER_LABEL]
        }
    )
    assert token not in " ".join(mgmt.attrs.get("Args") or [])
    # another manager (another process of the same user) finds it through the Docker API
    other = ClipperConnection(DockerContainerManager(cluster_name=cm.cluster_name))
    other.connect()
    assert other.cm.admin_token == token
    assert other.get_all_apps() == []

    # a version registered with an image this cluster did not build is never started from the store
    foreign = f"{__registry__}/noop-container:{__version__}"
    conn.register_model("m", "1", "doubles", image=foreign)
    with pytest.raises(ClipperException, match="Refusing to start image"):
        conn.set_num_replicas("m", 1, "1")
    assert cm.get_num_replicas("m", "1") == 0
    with pytest.raises(ClipperException, match="Refusing to start image"):
        cm.set_num_replicas("m", "1", "doubles", "nosuchimage.example/evil:1", 1)  # never pulled
    tag = f"clipper-test-built-{cm.cluster_name}:1"
    _labelled_image(docker_client, tag, {CLIPPER_DOCKER_LABEL: cm.cluster_name})
    try:
        cm._check_built_here(tag)  # what build_model labels is accepted
    finally:
        docker_client.images.remove(tag, force=True)


def test_opting_out_of_the_token(make_manager, caplog):
    with pytest.raises(ClipperException, match="admin_token is empty"):
        make_manager(admin_token="")
    cm = make_manager(admin_token=False)
    ClipperConnection(cm).start_clipper()
    assert cm.admin_token is None
    assert "requires no token (admin_token=False)" in caplog.text
    url = f"http://{cm.get_admin_addr()}/admin/get_all_applications"
    assert requests.post(url, json={"verbose": False}, timeout=10).status_code == 200
