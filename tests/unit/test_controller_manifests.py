"""Custom resources -> the manifest set the CLI's loader makes, with the controller's refusals."""

from __future__ import annotations

import copy
from typing import Any

from reconciler.controller.manifests import Resource, desired

NS = "ns"


def cr(kind: str, name: str, spec: dict[str, Any], **meta: Any) -> Resource:
    metadata = {"name": name, "namespace": NS, "uid": f"u-{name}", "resourceVersion": "7", "generation": 3,
                "creationTimestamp": "2026-12-01T14:00:00Z", "finalizers": ["clipper.ai/cleanup"],
                "managedFields": [{"manager": "kubectl"}], "annotations": {"a": "b"}, **meta}  # fmt: skip
    return Resource({"apiVersion": "clipper.ai/v1", "kind": kind, "metadata": metadata, "spec": spec,
                     "status": {"sync": "Synced"}})  # fmt: skip


CLUSTER = cr("Cluster", "c", {"backend": "kubernetes"})
MODEL = cr("Model", "m", {"inputType": "doubles", "version": "v1", "replicas": 2,
                          "source": {"image": "registry.example/m:1"}}, labels={"team": "a"})  # fmt: skip
APP = cr("Application", "a", {"inputType": "doubles", "defaultOutput": "-1", "latencySloMicros": 100000,
                              "model": "m"})  # fmt: skip


def with_spec(r: Resource, **spec: Any) -> Resource:
    raw = copy.deepcopy(r.raw)
    raw["spec"].update(spec)
    return Resource(raw)


def test_resources_load_as_manifests_with_the_namespace_forced() -> None:
    d = desired([CLUSTER, MODEL, APP], NS, {})
    assert d.manifests is not None and not d.verdicts and d.prune
    ms = d.manifests
    assert ms.cluster is not None and ms.cluster.obj.spec.kubernetes.namespace == NS
    assert ms.cluster.file == "Cluster/ns/c"
    assert ms.models["m"].obj.spec.replicas == 2
    assert ms.models["m"].obj.metadata.labels == {"team": "a"}  # labels kept; the server's bookkeeping not
    assert ms.apps["a"].obj.spec.model == "m"
    assert d.planned == {("Cluster", "c"), ("Model", "m"), ("Application", "a")}


def test_a_python_source_is_refused_with_how_to_build_an_image() -> None:
    py = with_spec(MODEL, source={"python": {"function": "m.py:predict"}})
    d = desired([CLUSTER, py], NS, {})
    v = d.verdicts[("Model", "m")]
    assert v.reason == "InvalidSpec"
    assert "spec.source.python" in v.message and "clipper build" in v.message and "source.image" in v.message
    assert d.manifests is not None and "m" not in d.manifests.models


def test_an_invalid_spec_is_refused_with_its_field_path_and_the_rest_is_planned() -> None:
    bad = with_spec(MODEL, replicas=-1)
    other = cr("Model", "n", {"inputType": "doubles", "source": {"image": "x:1"}})
    d = desired([CLUSTER, bad, other], NS, {})
    assert d.verdicts[("Model", "m")].reason == "InvalidSpec"
    assert d.verdicts[("Model", "m")].message.startswith("spec.replicas: ")
    assert d.manifests is not None and set(d.manifests.models) == {"n"}
    assert not d.prune  # what Model/m owned is unknown: nothing is pruned


def test_an_application_of_a_refused_model_is_refused_too() -> None:
    d = desired([CLUSTER, with_spec(MODEL, replicas=-1), APP], NS, {})
    v = d.verdicts[("Application", "a")]
    assert v.reason == "InvalidSpec" and "spec.model" in v.message and "'m'" in v.message


def test_a_refused_resource_keeps_its_last_valid_spec_in_force() -> None:
    last: dict[Any, Any] = {}
    desired([CLUSTER, MODEL, APP], NS, last)
    d = desired([CLUSTER, with_spec(MODEL, replicas=-1), APP], NS, last)
    assert d.verdicts[("Model", "m")].reason == "InvalidSpec"
    assert d.manifests is not None and d.manifests.models["m"].obj.spec.replicas == 2  # the last valid one
    assert ("Application", "a") not in d.verdicts
    assert d.prune and ("Model", "m") not in d.planned
    assert last[("Model", "m")]["spec"]["replicas"] == 2  # the invalid spec never becomes the last valid


def test_cluster_refusals() -> None:
    local = with_spec(CLUSTER, backend="local")
    d = desired([local, MODEL], NS, {})
    assert d.verdicts[("Cluster", "c")].reason == "InvalidSpec"
    assert "backend: kubernetes" in d.verdicts[("Cluster", "c")].message
    assert d.manifests is None
    assert d.verdicts[("Model", "m")].reason == "NoCluster"
    assert "Cluster/c cannot be used" in d.verdicts[("Model", "m")].message
    elsewhere = with_spec(CLUSTER, kubernetes={"namespace": "other"})
    v = desired([elsewhere], NS, {}).verdicts[("Cluster", "c")]
    assert v.reason == "InvalidSpec" and "spec.kubernetes.namespace" in v.message and "'other'" in v.message
    same = with_spec(CLUSTER, kubernetes={"namespace": NS})
    assert not desired([same], NS, {}).verdicts


def test_a_cluster_without_token_auth_or_with_a_token_in_its_spec_is_refused() -> None:
    open_store = desired([with_spec(CLUSTER, adminAuth="none")], NS, {}).verdicts[("Cluster", "c")]
    assert open_store.reason == "InvalidSpec" and "spec.adminAuth" in open_store.message
    token = desired([with_spec(CLUSTER, adminToken="s3cret-token")], NS, {}).verdicts[("Cluster", "c")]
    assert token.reason == "InvalidSpec" and "spec.adminToken" in token.message
    assert "s3cret-token" not in token.message


def test_no_cluster() -> None:
    d = desired([MODEL, APP], NS, {})
    assert d.manifests is None
    assert {ref: v.reason for ref, v in d.verdicts.items()} == {
        ("Model", "m"): "NoCluster", ("Application", "a"): "NoCluster"}  # fmt: skip
    assert "no Cluster in namespace ns" in d.verdicts[("Model", "m")].message


def test_the_oldest_cluster_counts() -> None:
    newer = cr("Cluster", "b", {"backend": "kubernetes"}, creationTimestamp="2026-12-01T14:05:00Z")
    older = cr("Cluster", "z", {"backend": "kubernetes"}, creationTimestamp="2026-12-01T13:00:00Z")
    d = desired([newer, older, MODEL], NS, {})
    assert d.manifests is not None and d.manifests.cluster is not None
    assert d.manifests.cluster.obj.metadata.name == "z"
    assert "Cluster/z is this namespace's" in d.verdicts[("Cluster", "b")].message
    assert d.prune


def test_resources_being_deleted_are_left_out() -> None:
    going = cr("Model", "m", MODEL.spec, deletionTimestamp="2026-12-01T15:00:00Z")
    d = desired([CLUSTER, going], NS, {})
    assert d.manifests is not None and not d.manifests.models and d.prune


def test_no_env_substitution_in_resources() -> None:
    app = with_spec(APP, defaultOutput="${HOME}")
    d = desired([CLUSTER, MODEL, app], NS, {})
    assert d.manifests is not None and d.manifests.apps["a"].obj.spec.default_output == "${HOME}"
