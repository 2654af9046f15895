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


@pytest.fixture(params=SCHEMA_VERSIONS)
def fake_k8s(request):
    fake = FakeKubernetes(schema_version=request.param)
    with fake.serve() as server:
        yield server


@pytest.fixture
def make_manager(fake_k8s, tmp_path, monkeypatch):
    monkeypatch.setenv("CLIPPER_HOME", str(tmp_path))
    made = []

    def make(**kwargs):
        kwargs.setdefault("cluster_name", "c1")
        kwargs.setdefault("namespace", "clipper-test")
        kwargs.setdefault("create_namespace_if_not_exists", True)
        kwargs.setdefault("poll_interval_s", 0.05)
        kwargs.setdefault("wait_timeout_s", 30)
        kwargs.setdefault("api_client", api_client_for(fake_k8s.url))
        cm = KubernetesContainerManager(**kwargs)
        made.append(cm)
        return cm

    yield make
    for cm in made:
        cm.close()
