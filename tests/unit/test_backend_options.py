"""Each backend honours a declared set of Cluster fields; any other field set is a located error."""

from __future__ import annotations

import textwrap

import pytest

from reconciler.backend_options import BACKEND_FIELDS
from reconciler.errors import ManifestErrors
from reconciler.loader import load_manifests
from schemas.cluster import ClusterSpec


def _load(tmp_path, spec: str):
    text = "apiVersion: clipper.ai/v1\nkind: Cluster\nmetadata:\n  name: x\nspec:\n" + textwrap.indent(
        textwrap.dedent(spec), "  "
    )
    (tmp_path / "cluster.yaml").write_text(text)
    return load_manifests([str(tmp_path / "cluster.yaml")], env={})


@pytest.mark.parametrize(
    "spec, errors",
    [
        (
            "registry: r.example.com\nredis:\n  host: redis\n",
            ["cluster.yaml:6:3 Cluster/x spec.registry: not supported by the local backend",
             "cluster.yaml:7:3 Cluster/x spec.redis: not supported by the local backend"],
        ),
        (
            "backend: kubernetes\nqueryPort: 1400\nrpcPort: 7001\n",
            ["cluster.yaml:7:3 Cluster/x spec.queryPort: not supported by the kubernetes backend",
             "cluster.yaml:8:3 Cluster/x spec.rpcPort: not supported by the kubernetes backend"],
        ),
    ],
)  # fmt: skip
def test_a_field_the_backend_ignores_is_a_located_error(tmp_path, spec, errors):
    with pytest.raises(ManifestErrors) as e:
        _load(tmp_path, spec)
    assert [str(p) for p in e.value.problems] == [f"{tmp_path}/{line}" for line in errors]


@pytest.mark.parametrize(
    "spec",
    [
        "queryPort: 1400\nmanagementPort: 1401\nrpcPort: 1402\ncacheSizeBytes: 0\nadminAuth: none\n",
        "backend: docker\nqueryPort: 1400\nregistry: r\nredis:\n  host: h\n  port: 6380\ndocker:\n  network: n\n",
        "backend: kubernetes\nregistry: r\nredis:\n  host: h\nfrontendReplicas: 2\nkubernetes:\n  namespace: ns\n",
    ],
)
def test_fields_the_backend_honours_load(tmp_path, spec):
    assert _load(tmp_path, spec).cluster is not None


def test_every_backend_and_field_is_declared():
    assert set(BACKEND_FIELDS) == {"local", "docker", "kubernetes"}
    fields = set(ClusterSpec.model_fields)
    for honoured in BACKEND_FIELDS.values():
        assert honoured <= fields
    # every field is honoured by some backend (a field nobody honours would always be an error)
    assert set().union(*BACKEND_FIELDS.values()) == fields


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("queryPort: 1400\nmanagementPort: 1401\nrpcPort: 1402\nadminAuth: none\n",
         {"clipper_query_port": 1400, "clipper_management_port": 1401, "clipper_rpc_port": 1402,
          "_admin_token_arg": False}),
        ("backend: docker\nqueryPort: 1400\nregistry: r.example.com\nredis:\n  host: h\n  port: 6380\n"
         "docker:\n  network: n\n  prometheusPort: 9191\n",
         {"clipper_query_port": 1400, "registry": "r.example.com", "redis_ip": "h", "redis_port": 6380,
          "docker_network": "n", "prometheus_port": 9191, "_admin_token_arg": None}),
        ("backend: kubernetes\nregistry: r.example.com\nredis:\n  host: h\n  port: 6380\n"
         "allowUnauthenticatedReplicas: true\nkubernetes:\n  namespace: ns\n",
         {"registry": "r.example.com", "redis_ip": "h", "redis_port": 6380, "namespace": "ns",
          "allow_unauthenticated_replicas": True}),
    ],
)  # fmt: skip
def test_the_manager_gets_every_field_its_backend_honours(tmp_path, monkeypatch, spec, expected):
    from reconciler.backends import container_manager
    from reconciler.desired import desired_state

    monkeypatch.setenv("CLIPPER_HOME", str(tmp_path))
    cm = container_manager(desired_state(_load(tmp_path, spec)))  # constructing talks to no API
    assert cm.cluster_name == "x"
    assert {k: getattr(cm, k) for k in expected} == expected
