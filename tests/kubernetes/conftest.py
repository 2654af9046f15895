"""Fixtures: a strict fake Kubernetes API server and managers pointed at it."""

from __future__ import annotations

import os

import pytest
from kubernetes.client import ApiClient, Configuration

from clipper_admin.kubernetes import KubernetesContainerManager

from .fake_apiserver import FakeKubernetes

SCHEMA_VERSIONS = ("1.30", "1.37")  # oldest still-supported-ish and newest kubernetes-validate ships


def api_client_for(url: str) -> ApiClient:
    cfg = Configuration()
    cfg.host = url
    return ApiClient(cfg)


def record_readiness_checks(cm: KubernetesContainerManager) -> list[tuple[str, str, dict, float]]:
    """Replace ``cm``'s HTTP readiness check (no frontend runs behind these doubles' pods) by one
    that records its arguments in ``cm.readiness_checks`` and returns them."""
    checks: list[tuple[str, str, dict, float]] = []
    cm._wait_for_frontends = lambda *args: checks.append(args)
    cm.readiness_checks = checks  # type: ignore[attr-defined]
    return checks


def _is_e2e(path: object) -> bool:
    return os.path.basename(str(path)).startswith("test_e2e_")


@pytest.fixture(scope="session", autouse=True)
def _model_images(request):
    """The end-to-end suite's model images (those of ``e2e.CLUSTERS``) are removed when the session
    ends, pass or fail: from the Docker engine and from the test cluster's containerd it imported them
    into. Per session, not per module: the next module's images reuse the layers the previous one
    imported (per module, each import wrote a gigabyte again and the slowest test ran out of time).
    Only a session that runs end-to-end tests does it: ./test.sh runs them in a pytest of their own
    beside the rest, which must not remove what they are still using."""
    if not any(_is_e2e(item.fspath) for item in request.session.items):
        yield
        return
    from clipper_admin.kubernetes.images import image_loader
    from tests.model_images import removed_afterwards

    from . import e2e

    with removed_afterwards(e2e.CLUSTERS.__contains__, containerd=image_loader(e2e.IMAGE_LOADER)):
        yield


@pytest.fixture(scope="module", autouse=True)
def _e2e_cluster_named(request):
    """A manifest-based end-to-end module's Cluster must be one whose images the cleanup removes."""
    if _is_e2e(request.fspath):
        from . import e2e

        cluster = getattr(request.module, "CLUSTER", None)
        assert cluster is None or cluster in e2e.CLUSTERS, f"add {cluster!r} to e2e.CLUSTERS"
    yield


@pytest.fixture(params=SCHEMA_VERSIONS)
def fake_k8s(request):
    fake = FakeKubernetes(schema_version=request.param)
    with fake.serve() as server:
        yield server


@pytest.fixture
def make_manager(fake_k8s, tmp_path, monkeypatch):
    monkeypatch.setenv("CLIPPER_HOME", str(tmp_path))
    made = []

    def make(*, answering: bool = False, **kwargs):
        """``answering``: the frontends' pods are stood in for (``port_targets``), so the manager's
        readiness check runs for real; otherwise it records the addresses it would poll."""
        kwargs.setdefault("cluster_name", "c1")
        kwargs.setdefault("namespace", "clipper-test")
        kwargs.setdefault("create_namespace_if_not_exists", True)
        kwargs.setdefault("poll_interval_s", 0.05)
        kwargs.setdefault("wait_timeout_s", 30)
        kwargs.setdefault("api_client", api_client_for(fake_k8s.url))
        cm = KubernetesContainerManager(**kwargs)
        if not answering:
            record_readiness_checks(cm)
        made.append(cm)
        return cm

    yield make
    for cm in made:
        cm.close()
