"""Fixtures: a strict fake Kubernetes API server and managers pointed at it."""

from __future__ import annotations

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
