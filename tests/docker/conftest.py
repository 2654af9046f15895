"""Docker suite: a real engine and the images from images/build.sh; skipped with the reason otherwise."""

from __future__ import annotations

import os
import uuid

import pytest

from clipper.net import free_port

REQUIRED_IMAGES = (
    "query_frontend",
    "management_frontend",
    "redis",
    "python311-closure-container",
    "noop-container",
)


def _skip_reason() -> str | None:
    try:
        import docker

        client = docker.from_env()
        client.ping()
    except Exception as e:  # any failure to reach an engine means: skip, saying why
        return f"no Docker engine answers ({type(e).__name__}: {e}); run .ci/docker.sh"
    from clipper_admin.version import __registry__, __version__

    missing = []
    for name in REQUIRED_IMAGES:
        try:
            client.images.get(f"{__registry__}/{name}:{__version__}")
        except docker.errors.ImageNotFound:
            missing.append(f"{__registry__}/{name}:{__version__}")
    if missing:
        return f"images not built: {', '.join(missing)}; run images/build.sh"
    return None


_REASON = _skip_reason()


def pytest_collection_modifyitems(config, items):
    here = os.path.dirname(__file__)
    for item in items:
        # test_offline_*.py check helpers without an engine; everything else here needs one
        if str(item.fspath).startswith(here) and not os.path.basename(str(item.fspath)).startswith(
            "test_offline"
        ):
            item.add_marker(pytest.mark.docker)
            if _REASON is not None:
                item.add_marker(pytest.mark.skip(reason=_REASON))


#: Every cluster of this suite is named so (``cluster_kwargs``, the ``t-<what>-`` names of single tests):
#: the model images of these clusters are the suite's to remove.
CLUSTER_PREFIX = "t-"


@pytest.fixture(scope="session", autouse=True)
def _model_images():
    """The model images this suite builds (``t-*`` clusters) are removed when the session ends, pass or
    fail. Per session, not per module: a module that builds after another one reuses the layers that
    one left (per module, every build and import started from nothing again)."""
    if _REASON is not None:
        yield
        return
    from tests.model_images import removed_afterwards

    with removed_afterwards(lambda cluster: cluster.startswith(CLUSTER_PREFIX)):
        yield


@pytest.fixture(autouse=True)
def _clipper_home(tmp_path, monkeypatch):
    monkeypatch.setenv("CLIPPER_HOME", str(tmp_path / "clipper-home"))


@pytest.fixture(scope="session")
def docker_client():
    import docker

    return docker.from_env()


@pytest.fixture(scope="session")
def test_network(docker_client):
    """A network of this test session, so the suite never touches clipper_network."""
    name = f"clipper-test-{uuid.uuid4().hex[:8]}"
    yield name
    for net in docker_client.networks.list(names=[name]):
        try:
            net.remove()
        except Exception:
            pass


def cluster_kwargs(network: str) -> dict:
    """Constructor arguments for a fresh cluster: a unique name and free host ports."""
    return dict(
        cluster_name=f"{CLUSTER_PREFIX}{uuid.uuid4().hex[:10]}",
        clipper_query_port=free_port(),
        clipper_management_port=free_port(),
        clipper_rpc_port=free_port(),
        redis_port=free_port(),
        prometheus_port=free_port(),
        docker_network=network,
    )


@pytest.fixture(scope="module")
def docker_cluster(test_network):
    """``(ClipperConnection, constructor kwargs)`` of one cluster per test module: started once,
    removed at the end whatever happens."""
    from clipper_admin import ClipperConnection
    from clipper_admin.docker.docker_container_manager import DockerContainerManager

    kwargs = cluster_kwargs(test_network)
    cm = DockerContainerManager(**kwargs)
    conn = ClipperConnection(cm)
    try:
        conn.start_clipper()
        yield conn, kwargs
    finally:
        cm.stop_all(graceful=False)


@pytest.fixture
def make_manager(test_network):
    """Build DockerContainerManagers; every cluster made through it is removed at teardown."""
    from clipper_admin.docker.docker_container_manager import DockerContainerManager

    made = []

    def make(**overrides):
        cm = DockerContainerManager(**{**cluster_kwargs(test_network), **overrides})
        made.append(cm)
        return cm

    yield make
    for cm in made:
        cm.stop_all(graceful=False)
