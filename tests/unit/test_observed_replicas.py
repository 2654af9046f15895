"""The reconciler counts only healthy replicas, so `clipper diff` flags a model whose replica is hung."""

from __future__ import annotations

from reconciler.observed import from_listings

MODEL = {
    "model_name": "m",
    "model_version": "1",
    "input_type": "doubles",
    "labels": [],
    "container_name": "local:/m",
    "is_current_version": True,
}


def replica(replica_id: int, **extra) -> dict:
    return {"model_name": "m", "model_version": "1", "model_replica_id": replica_id, **extra}


def test_a_replica_reported_unhealthy_does_not_count():
    obs = from_listings([], [MODEL], [replica(0, healthy=True), replica(1, healthy=False)])
    assert obs.models["m"]["1"].replicas == 1


def test_replicas_without_a_health_field_count():  # a frontend that does not report health
    obs = from_listings([], [MODEL], [replica(0), replica(1)])
    assert obs.models["m"]["1"].replicas == 2
