"""The reconciler observes a cluster of N applications and models in a constant number of requests:
every application's traffic configuration in one (``get_all_app_traffic``), the rollout records in
one (``get_records``); against a management frontend of an earlier release, which answers 404 to
both, it falls back to one request per application or record, with the same result."""

from __future__ import annotations

from typing import Any

import pytest

from clipper_admin.exceptions import ClipperHTTPError
from reconciler.clipper_cluster import ClipperCluster
from reconciler.observed import TrafficSetting
from reconciler.rollout import NAMESPACE, RolloutStore

SPLIT = {
    "targets": [{"model_name": "m0", "model_version": "1", "weight": 90.0},
                {"model_name": "m0", "model_version": "2", "weight": 10.0}],
    "sticky_key": None, "shadow": None, "selection": None,
}  # fmt: skip


class Admin:
    def __init__(self, records: dict[str, str], bulk: bool) -> None:
        self.records, self.bulk, self.routes = records, bulk, []

    def post_json(self, route: str, body: dict[str, Any]) -> Any:
        self.routes.append(route)
        if route in ("get_all_app_traffic", "get_records") and not self.bulk:
            raise ClipperHTTPError("Received error status code: 404", 404)
        if route == "get_all_app_traffic":
            return {f"app{i}": SPLIT if i == 0 else None for i in range(50)}
        if route == "get_records":
            assert body["namespace"] == NAMESPACE
            return {"values": {k: self.records.get(k) for k in body["keys"]}}
        if route == "get_record":
            return {"value": self.records.get(body["key"])}
        raise AssertionError(route)


class Conn:
    def __init__(self, admin: Admin) -> None:
        self._admin = admin

    def get_all_apps(self, verbose: bool) -> list[dict[str, Any]]:
        return [
            {"name": f"app{i}", "input_type": "doubles", "default_output": "-1", "latency_slo_micros": 100000,
             "linked_models": [f"m{i}"]}
            for i in range(50)
        ]  # fmt: skip

    def get_all_models(self, verbose: bool) -> list[dict[str, Any]]:
        return []

    def get_all_model_replicas(self, verbose: bool) -> list[dict[str, Any]]:
        return []

    def get_app_traffic(self, app: str) -> dict[str, Any]:
        self._admin.routes.append("get_app_traffic")
        return {"name": app, "configured": app == "app0", **SPLIT} if app == "app0" else {"configured": False}


@pytest.mark.parametrize("bulk", [True, False], ids=["one-request", "an-earlier-release"])
def test_observing_n_apps_reads_their_traffic_at_once(bulk: bool) -> None:
    admin = Admin({}, bulk)
    observed = ClipperCluster(Conn(admin)).observe()  # type: ignore[arg-type]
    split = observed.apps["app0"].traffic
    assert split == TrafficSetting.from_dict(SPLIT) and split is not None
    assert all(observed.apps[f"app{i}"].traffic is None for i in range(1, 50))
    if bulk:
        assert admin.routes == ["get_all_app_traffic"]
    else:
        assert admin.routes == ["get_all_app_traffic"] + ["get_app_traffic"] * 50


@pytest.mark.parametrize("bulk", [True, False], ids=["one-request", "an-earlier-release"])
def test_the_rollout_records_of_n_models_are_read_at_once(bulk: bool) -> None:
    from reconciler.rollout import RolloutRecord

    record = RolloutRecord(
        model="m3", from_version="1", to_version="2", strategy="canary", steps=[{"weight": 10.0, "pause": 0.0}],
        analysis={}, apps=[],
    )  # fmt: skip
    admin = Admin({"rollout/m3": record.to_json()}, bulk)
    found = RolloutStore(None, ClipperCluster(Conn(admin))).all([f"m{i}" for i in range(40)])  # type: ignore[arg-type]
    assert list(found) == ["m3"] and found["m3"].to_version == "2"
    assert admin.routes == (["get_records"] if bulk else ["get_records"] + ["get_record"] * 40)
