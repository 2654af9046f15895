"""On a real cluster (``e2e.py`` says which): a closure with a requirement that exists only as a local
wheel is built offline and reaches the nodes through the image loader, and the default Prometheus (the
project's image, whose targets the pod's sidecar lists) scrapes the query frontend and the model replica
with the replica's ``model_container`` label."""

from __future__ import annotations

import pytest
import requests

from ..docker.helpers import script_function, write_local_wheel
from . import e2e

pytestmark = [pytest.mark.kubernetes, pytest.mark.slow]


# Defined as a script's ``__main__`` would define it: dependency capture then ships no test module (whose
# imports, pytest and the rest, are not in the offline wheel directory) and needs only pkgs_to_install.
_SCRIPT = """
def scaled_sum(xs):
    import clipper_probe_pkg  # installed in the image from the local wheel only

    return [str(sum(x) * clipper_probe_pkg.FACTOR) for x in xs]
"""


def test_offline_closure_with_a_requirement_and_the_default_prometheus(tmp_path, monkeypatch):
    from clipper_admin import ClipperConnection
    from clipper_admin.deployers.python import deploy_python_closure

    wheels = tmp_path / "wheels"
    write_local_wheel(wheels, "clipper_probe_pkg", "1.0", "FACTOR = 2.5\n")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    api = e2e.api_client()
    namespace = e2e.unique("clipper-e2e-metrics")
    conn = ClipperConnection(e2e.manager(api, "e2e", namespace))  # the default prometheus_image
    try:
        conn.start_clipper()
        conn.register_application("probe", "doubles", "-1.0", 2_000_000)
        deploy_python_closure(
            conn,
            "probe-model",
            "1",
            "doubles",
            script_function(_SCRIPT, "scaled_sum"),
            pkgs_to_install=["clipper_probe_pkg==1.0"],
        )
        conn.link_model_to_app("probe", "probe-model")
        addr = conn.get_query_addr()
        assert e2e.wait_for(
            lambda: e2e.output(addr, "probe", [1.0, 2.0]) == 7.5, e2e.WAIT_S, "the model's prediction"
        )

        metrics = conn.get_metric_addr()

        def scraped() -> list[dict] | None:
            targets = requests.get(f"http://{metrics}/api/v1/targets", timeout=10).json()["data"]
            up = [t for t in targets["activeTargets"] if t["health"] == "up"]
            if not any(t["scrapeUrl"].endswith(":1337/prometheus") for t in up):
                return None
            query = {"query": 'clipper_mc_pred_total{model_container="probe-model_1"}'}
            result: list[dict] = requests.get(
                f"http://{metrics}/api/v1/query", params=query, timeout=10
            ).json()["data"]["result"]
            return result or None

        (sample,) = e2e.wait_for(scraped, e2e.WAIT_S, "Prometheus scraping the frontend and the replica")
        assert sample["metric"]["kubernetes_namespace"] == namespace
        assert sample["metric"]["kubernetes_pod_name"].startswith("probe-model-1-deployment-at-0-at-e2e-")
        assert float(sample["value"][1]) >= 1
    finally:
        conn.stop_all()
        e2e.delete_namespace(api, namespace)
