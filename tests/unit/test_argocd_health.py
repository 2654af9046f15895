"""The Argo CD health check (deploy/argocd/health.lua), run in Lua 5.1 (the dialect of Argo CD's
gopher-lua) against the statuses the clipper controller writes, and its argocd-cm patch."""

from __future__ import annotations

import copy
import importlib.util
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pytest
from lupa import lua51
from ruamel.yaml import YAML

from reconciler.controller.conditions import Verdict, status_doc
from reconciler.status import Health, ObjectStatus, Sync
from schemas.crd import GROUP, openapi_schema
from schemas.kinds import KINDS

ARGOCD = Path(__file__).resolve().parents[2] / "deploy" / "argocd"
SCRIPT = (ARGOCD / "health.lua").read_text()
T0 = datetime(2026, 12, 1, 14, 0, 0, tzinfo=UTC)


def argocd_cm() -> ModuleType:
    spec = importlib.util.spec_from_file_location("argocd_cm", ARGOCD / "argocd_cm.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def health(obj: dict[str, Any], script: str = SCRIPT) -> tuple[str, str]:
    """What Argo CD shows for ``obj``: the script's ``hs.status`` and ``hs.message``."""
    lua = lua51.LuaRuntime()
    lua.globals().obj = lua.table_from(obj, recursive=True)
    hs = lua.execute(script)
    return hs.status, hs.message


def resource(kind: str, status: dict[str, Any] | None, generation: int = 3) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "clipper.ai/v1",
        "kind": kind,
        "metadata": {"name": "x", "namespace": "ns", "generation": generation},
        "spec": {},
    }
    if status is not None:
        obj["status"] = status
    return obj


def cond(type_: str, status: str, reason: str = "Converged", message: str = "") -> dict[str, Any]:
    return {"type": type_, "status": status, "reason": reason, "message": message,
            "lastTransitionTime": "2026-12-01T14:00:00Z", "observedGeneration": 3}  # fmt: skip


def status(sync: str, health_: str, message: str, *conds: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"observedGeneration": 3, "sync": sync, "health": health_, "message": message,
            "conditions": list(conds), **extra}  # fmt: skip


HEALTHY = status("Synced", "Healthy", "", cond("Ready", "True"), cond("Synced", "True"),
                 cond("Progressing", "False"), cond("Degraded", "False"))  # fmt: skip
ROLLING = status("Synced", "Progressing", "1/2 replicas of v2 healthy",
                 cond("Ready", "False", "RollingOut", "1/2 replicas of v2 healthy"), cond("Synced", "True"),
                 cond("Progressing", "True", "RollingOut", "1/2 replicas of v2 healthy"),
                 cond("Degraded", "False", "RollingOut", "1/2 replicas of v2 healthy"))  # fmt: skip
BROKEN = status("OutOfSync", "Degraded", "health check of v3 failed; v2 serves",
                cond("Ready", "False", "ApplyFailed", "health check of v3 failed; v2 serves"),
                cond("Synced", "False", "ApplyFailed", "health check of v3 failed; v2 serves"),
                cond("Progressing", "False", "ApplyFailed", "health check of v3 failed; v2 serves"),
                cond("Degraded", "True", "ApplyFailed", "health check of v3 failed; v2 serves"))  # fmt: skip
NOT_APPLIED = status("OutOfSync", "Missing", "would create", cond("Ready", "False", "OutOfSync", "would create"),
                     cond("Synced", "False", "OutOfSync"), cond("Progressing", "False", "OutOfSync"),
                     cond("Degraded", "False", "OutOfSync"))  # fmt: skip
UNKNOWN = status("Unknown", "Unknown", "", cond("Ready", "Unknown", "Unknown"),
                 cond("Synced", "Unknown", "Unknown"), cond("Progressing", "Unknown", "Unknown"),
                 cond("Degraded", "Unknown", "Unknown"))  # fmt: skip


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize(
    "st, generation, expected",
    [
        pytest.param(None, 1, ("Progressing", "Waiting for the clipper controller"), id="no-status"),
        pytest.param(
            HEALTHY,
            4,
            ("Progressing", "Waiting for the clipper controller to observe generation 4"),
            id="older-generation",
        ),
        pytest.param(
            {"sync": "Synced"},
            1,
            ("Progressing", "Waiting for the clipper controller to observe generation 1"),
            id="no-observed-generation",
        ),
        pytest.param(BROKEN, 3, ("Degraded", "health check of v3 failed; v2 serves"), id="degraded"),
        pytest.param(HEALTHY, 3, ("Healthy", ""), id="ready"),
        pytest.param(ROLLING, 3, ("Progressing", "1/2 replicas of v2 healthy"), id="progressing"),
        pytest.param(NOT_APPLIED, 3, ("Missing", "would create"), id="missing"),
        pytest.param(UNKNOWN, 3, ("Progressing", ""), id="unknown"),
        pytest.param(
            status("OutOfSync", "Healthy", "managed by another manifest set"),
            3,
            ("Progressing", "managed by another manifest set"),
            id="no-conditions",
        ),
    ],
)
def test_health_of_each_status(kind, st, generation, expected):
    assert health(resource(kind, st, generation)) == expected


def test_a_degraded_condition_without_message_falls_back_to_the_status_then_the_reason():
    st = copy.deepcopy(BROKEN)
    st["conditions"][3]["message"] = ""
    assert health(resource("Cluster", st)) == ("Degraded", "health check of v3 failed; v2 serves")
    st["message"] = ""
    assert health(resource("Cluster", st)) == ("Degraded", "ApplyFailed")


def test_degraded_wins_over_ready_and_progressing():
    st = status("Synced", "Degraded", "m", cond("Ready", "True"), cond("Progressing", "True", "RollingOut", "p"),
                cond("Degraded", "True", "ReplicasUnavailable", "0/2 replicas"))  # fmt: skip
    assert health(resource("Application", st)) == ("Degraded", "0/2 replicas")


def test_a_model_names_its_version_and_ready_replicas():
    versions = {"currentVersion": "v2", "previousVersion": "v1", "readyReplicas": 2, "replicas": 2}
    assert health(resource("Model", {**HEALTHY, **versions})) == ("Healthy", "version v2, 2/2 replicas ready")
    rolling = {**ROLLING, **versions, "readyReplicas": 1}
    assert health(resource("Model", rolling)) == (
        "Progressing", "version v2, 1/2 replicas ready: 1/2 replicas of v2 healthy")  # fmt: skip
    assert health(resource("Model", {**HEALTHY, "currentVersion": "v2"})) == ("Healthy", "version v2")


# --- what the controller writes (reconciler.controller.conditions.status_doc) ------------------------


def model_status(sync: Sync, health_: Health, reason: str = "", **kw: Any) -> ObjectStatus:
    fields = {"desired_replicas": 2, "actual_replicas": 2, "current_version": "v2", "previous_version": "v1"}
    return ObjectStatus("Model", "m", sync, health_, reason, **{**fields, **kw})


CONTROLLER_CASES = [
    pytest.param(
        model_status(Sync.SYNCED, Health.HEALTHY),
        None,
        ("Healthy", "version v2, 2/2 replicas ready"),
        id="converged",
    ),
    pytest.param(
        model_status(Sync.SYNCED, Health.PROGRESSING, "1/2 replicas of v2 healthy", actual_replicas=1),
        None,
        ("Progressing", "version v2, 1/2 replicas ready: 1/2 replicas of v2 healthy"),
        id="scaling",
    ),
    pytest.param(
        model_status(Sync.OUT_OF_SYNC, Health.HEALTHY),
        Verdict("Applying", "applying v3"),
        ("Progressing", "version v2, 2/2 replicas ready: applying v3"),
        id="applying",
    ),
    pytest.param(
        model_status(Sync.SYNCED, Health.DEGRADED, "0/2 replicas of v2 healthy", actual_replicas=0),
        None,
        ("Degraded", "version v2, 0/2 replicas ready: 0/2 replicas of v2 healthy"),
        id="no-replica",
    ),
    pytest.param(
        model_status(Sync.OUT_OF_SYNC, Health.DEGRADED, "v3 does not serve; v2 serves"),
        Verdict("ApplyFailed", "health check of v3 failed"),
        (
            "Degraded",
            "version v2, 2/2 replicas ready: health check of v3 failed; v3 does not serve; v2 serves",
        ),
        id="apply-failed",
    ),
    pytest.param(
        None,
        Verdict("InvalidSpec", "source.python: build an image with clipper build"),
        ("Degraded", "source.python: build an image with clipper build"),
        id="invalid-spec",
    ),
    pytest.param(
        model_status(
            Sync.OUT_OF_SYNC,
            Health.MISSING,
            "would create",
            current_version=None,
            previous_version=None,
            actual_replicas=0,
        ),
        None,
        ("Missing", "would create"),
        id="not-applied",
    ),
]


@pytest.mark.parametrize("obj, verdict, expected", CONTROLLER_CASES)
def test_health_of_what_the_controller_writes(obj, verdict, expected):
    doc = status_doc("Model", obj, 3, None, T0, verdict)
    assert health(resource("Model", doc)) == expected
    # a newer spec than the status describes is still being worked on
    assert health(resource("Model", doc, generation=4))[0] == "Progressing"


@pytest.mark.parametrize("obj, verdict, expected", CONTROLLER_CASES)
def test_what_the_controller_writes_fits_the_crd_status_schema(obj, verdict, expected):
    schema = openapi_schema("Model")["properties"]["status"]
    doc = status_doc("Model", obj, 3, None, T0, verdict)
    errors = [e.message for e in jsonschema.Draft4Validator(schema).iter_errors(doc)]
    assert errors == []
    assert set(doc) <= set(schema["properties"])


@pytest.mark.parametrize("kind", ["Cluster", "Application"])
def test_other_kinds_from_the_controller(kind):
    obj = ObjectStatus(kind, "x", Sync.SYNCED, Health.HEALTHY, "")
    assert health(resource(kind, status_doc(kind, obj, 3, None, T0))) == ("Healthy", "")
    bad = status_doc(kind, None, 3, None, T0, Verdict("NoCluster", "no Cluster in namespace ns"))
    assert health(resource(kind, bad)) == ("Degraded", "no Cluster in namespace ns")


# --- the argocd-cm patch ------------------------------------------------------------------------------


def test_the_argocd_cm_patch_is_current():
    module = argocd_cm()
    assert module.TARGET.read_text() == module.render(SCRIPT), (
        "deploy/argocd/argocd-cm-health.yaml is stale: run python deploy/argocd/argocd_cm.py"
    )


def test_the_argocd_cm_patch_holds_the_script_for_every_kind():
    module = argocd_cm()
    assert module.GROUP == GROUP and set(module.KINDS) == set(KINDS)
    cm = YAML(typ="safe").load(module.TARGET.read_text())
    assert (cm["apiVersion"], cm["kind"], cm["metadata"]["name"]) == ("v1", "ConfigMap", "argocd-cm")
    assert cm["data"] == {f"resource.customizations.health.{GROUP}_{kind}": SCRIPT for kind in KINDS}


def test_the_generator_writes_the_file(tmp_path, monkeypatch, capsys):
    module = argocd_cm()
    monkeypatch.setattr(module, "TARGET", tmp_path / "cm.yaml")
    assert module.main() == 0
    assert (tmp_path / "cm.yaml").read_text() == module.render(SCRIPT)
    assert str(tmp_path / "cm.yaml") in capsys.readouterr().out
