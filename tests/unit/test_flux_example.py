"""examples/flux/: the GitRepository and Kustomizations parse, name paths that exist, and their CEL
health expressions judge the statuses the clipper controller writes."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cel
import pytest
from ruamel.yaml import YAML

from reconciler.controller.conditions import Verdict, status_doc
from reconciler.loader import load_manifests
from reconciler.status import Health, ObjectStatus, Sync
from schemas.common import API_VERSION
from schemas.kinds import KINDS

ROOT = Path(__file__).resolve().parents[2]
FLUX = ROOT / "examples" / "flux"
T0 = datetime(2026, 12, 1, 14, 0, 0, tzinfo=UTC)


def documents(name: str) -> list[dict[str, Any]]:
    return [d for d in YAML(typ="safe").load_all((FLUX / name).read_text()) if d is not None]


def kustomizations() -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in documents("kustomization.yaml")}


def test_the_git_repository_is_a_placeholder_to_edit():
    (repo,) = documents("gitrepository.yaml")
    assert (repo["apiVersion"], repo["kind"]) == ("source.toolkit.fluxcd.io/v1", "GitRepository")
    assert repo["spec"]["url"].startswith("https://") and repo["spec"]["ref"] == {"branch": "main"}
    assert "edit" in (FLUX / "gitrepository.yaml").read_text()


def test_the_kustomizations_name_the_source_and_existing_paths():
    (repo,) = documents("gitrepository.yaml")
    found = kustomizations()
    assert set(found) == {"clipper-controller", "clipper-models"}
    for k in found.values():
        assert (k["apiVersion"], k["kind"]) == ("kustomize.toolkit.fluxcd.io/v1", "Kustomization")
        assert k["metadata"]["namespace"] == repo["metadata"]["namespace"]
        assert k["spec"]["sourceRef"] == {"kind": "GitRepository", "name": repo["metadata"]["name"]}
        assert k["spec"]["prune"] is True and k["spec"]["wait"] is True
        path = ROOT / k["spec"]["path"]
        assert path.is_dir(), k["spec"]["path"]
    assert (ROOT / found["clipper-controller"]["spec"]["path"] / "kustomization.yaml").exists()
    assert found["clipper-models"]["spec"]["dependsOn"] == [{"name": "clipper-controller"}]


def test_the_models_kustomization_applies_clipper_custom_resources():
    spec = kustomizations()["clipper-models"]["spec"]
    loaded = load_manifests([str(ROOT / spec["path"])])
    assert loaded.cluster is not None and loaded.models and loaded.apps
    # the controller-install overlay puts the controller into the namespace the resources go to
    install = YAML(typ="safe").load(
        (ROOT / kustomizations()["clipper-controller"]["spec"]["path"] / "kustomization.yaml").read_text()
    )
    assert install["namespace"] == spec["targetNamespace"]


# --- the CEL health expressions (Flux >= 2.5 evaluates them with cel-go) -------------------------------


def expressions() -> dict[str, dict[str, str]]:
    exprs = kustomizations()["clipper-models"]["spec"]["healthCheckExprs"]
    assert {e["apiVersion"] for e in exprs} == {API_VERSION}
    return {e["kind"]: e for e in exprs}


def judge(kind: str, status: dict[str, Any] | None, generation: int = 3) -> tuple[bool, bool]:
    """(current, failed) of one resource as Flux's expressions see it."""
    obj: dict[str, Any] = {"apiVersion": API_VERSION, "kind": kind,
                           "metadata": {"name": "x", "generation": generation}, "spec": {}}  # fmt: skip
    if status is not None:
        obj["status"] = status
    e = expressions()[kind]
    return cel.evaluate(e["current"], obj), cel.evaluate(e["failed"], obj)


def test_every_kind_has_expressions():
    assert set(expressions()) == set(KINDS)


def model(sync: Sync, health: Health, reason: str = "", **kw: Any) -> ObjectStatus:
    fields = {"desired_replicas": 2, "actual_replicas": 2, "current_version": "v2", "previous_version": "v1"}
    return ObjectStatus("Model", "m", sync, health, reason, **{**fields, **kw})


@pytest.mark.parametrize(
    "obj, verdict, expected",
    [
        pytest.param(model(Sync.SYNCED, Health.HEALTHY), None, (True, False), id="ready"),
        pytest.param(
            model(Sync.SYNCED, Health.PROGRESSING, "1/2", actual_replicas=1),
            None,
            (False, False),
            id="rolling-out",
        ),
        pytest.param(
            model(Sync.OUT_OF_SYNC, Health.DEGRADED, "v3 does not serve"),
            Verdict("ApplyFailed", "health check of v3 failed"),
            (False, True),
            id="degraded",
        ),
        pytest.param(None, Verdict("InvalidSpec", "build an image"), (False, True), id="invalid-spec"),
        pytest.param(
            model(Sync.OUT_OF_SYNC, Health.HEALTHY),
            Verdict("Applying", "applying v3"),
            (False, False),
            id="applying",
        ),
    ],
)
def test_expressions_judge_what_the_controller_writes(obj, verdict, expected):
    doc = status_doc("Model", obj, 3, None, T0, verdict)
    assert judge("Model", doc) == expected
    assert judge("Model", doc, generation=4) == (False, False)  # not observed yet: in progress


def test_a_resource_without_status_is_not_current():
    """cel-go, like this evaluator, fails on the missing field; Flux then keeps waiting (in progress)."""
    with pytest.raises(RuntimeError, match="status"):
        judge("Cluster", None)
