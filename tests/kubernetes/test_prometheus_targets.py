"""The Prometheus pod's targets sidecar (``clipper_admin.kubernetes.prometheus_targets``).

Against the strict HTTP double: what a started cluster's pods turn into. With Docker: the project's
Prometheus image (Debian's build, no Kubernetes discovery) loads the ConfigMap's configuration and
scrapes what the sidecar wrote, with its labels and path.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import tempfile
import threading
import time

import pytest
import requests

from clipper.net import free_port
from clipper_admin.kubernetes import names as n
from clipper_admin.kubernetes import objects, prometheus_targets
from clipper_admin.kubernetes.api import KubeApi
from clipper_admin.version import __registry__, __version__

from .conftest import api_client_for
from .test_manager import NS, start


def pod(name, ip="10.0.0.7", phase="Running", port="1390", scrape="true", path=None, **labels):
    annotations = {"prometheus.io/scrape": scrape, "prometheus.io/port": port}
    if path:
        annotations["prometheus.io/path"] = path
    return {
        "metadata": {"name": name, "namespace": "ns", "labels": labels, "annotations": annotations},
        "status": {"phase": phase, "podIP": ip},
    }


def test_target_groups_are_the_running_annotated_pods():
    deleting = pod("d")
    deleting["metadata"]["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    pods = [
        pod("q", ip="10.0.0.2", port="1337", path="/prometheus"),
        pod("m", **{n.MODEL_LABEL: "m_1"}),
        pod("pending", phase="Pending"),
        pod("no-ip", ip=""),
        pod("not-scraped", scrape="false"),
        pod("bad-port", port="http"),
        deleting,
    ]
    assert prometheus_targets.target_groups(pods) == [
        {
            "targets": ["10.0.0.7:1390"],
            "labels": {
                "__metrics_path__": "/metrics",
                "kubernetes_namespace": "ns",
                "kubernetes_pod_name": "m",
                "model_container": "m_1",
            },
        },
        {
            "targets": ["10.0.0.2:1337"],
            "labels": {
                "__metrics_path__": "/prometheus",
                "kubernetes_namespace": "ns",
                "kubernetes_pod_name": "q",
            },
        },
    ]


def test_sidecar_lists_this_clusters_pods_through_the_api(make_manager, fake_k8s, tmp_path):
    cm = make_manager(useInternalIP=True, local_cluster=True)
    start(cm)
    cm.deploy_model("m", "1", "doubles", "reg.example.com/m:1", num_replicas=2)
    other = make_manager(cluster_name="c2", useInternalIP=True, prometheus_image=None)
    start(other)
    other.deploy_model("x", "1", "doubles", "reg.example.com/x:1")

    api = KubeApi(api_client_for(fake_k8s.url))
    path = str(tmp_path / "pods.json")
    assert prometheus_targets.sync(api, NS, "c1", path)
    groups = json.load(open(path))
    by_pod = {g["labels"]["kubernetes_pod_name"]: g for g in groups}
    assert all(name.endswith("-at-c1") or "-at-c1-" in name for name in by_pod)
    models = [g for g in groups if g["labels"].get("model_container") == "m_1"]
    assert len(models) == 2 and all(g["targets"] == ["127.0.0.1:1390"] for g in models)
    (query,) = [g for name, g in by_pod.items() if name.startswith(n.query_frontend("c1", 0))]
    assert query["targets"] == [f"127.0.0.1:{n.QUERY_PORT}"]
    assert query["labels"]["__metrics_path__"] == "/prometheus"
    assert len(groups) == 3  # Redis, the management frontend and Prometheus itself are not annotated

    assert not prometheus_targets.sync(api, NS, "c1", path)  # unchanged: the file is not rewritten
    cm.set_num_replicas("m", "1", "doubles", "reg.example.com/m:1", 0)
    assert prometheus_targets.sync(api, NS, "c1", path)
    assert not [g for g in json.load(open(path)) if "model_container" in g["labels"]]
    assert os.listdir(tmp_path) == ["pods.json"]


def test_run_keeps_going_after_a_failed_round(tmp_path):
    stop = threading.Event()
    calls = []

    class FlakyApi:
        def list(self, kind, namespace=None, label_selector=None):
            calls.append(label_selector)
            if len(calls) == 1:
                raise ConnectionError("API server restarting")
            stop.set()
            return [pod("m", **{n.MODEL_LABEL: "m_1"})]

    path = str(tmp_path / "pods.json")
    prometheus_targets.run(FlakyApi(), "ns", "c1", path, 0.01, stop)
    assert calls == [n.cluster_selector("c1")] * 2
    assert json.load(open(path))[0]["labels"]["model_container"] == "m_1"


class _Metrics(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - the http.server API
        body = b"clipper_probe_metric 42\n" if self.path == "/prometheus" else b""
        self.send_response(200 if body else 404)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def _write_readable(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o644)


@pytest.mark.docker
def test_the_projects_prometheus_scrapes_the_sidecars_targets():
    """The ConfigMap's configuration in ``clipper/prometheus`` (which rejects ``kubernetes_sd_configs``),
    run as the pod runs it (user 65534, targets in their own mount), scrapes a target the sidecar's
    ``target_groups`` wrote, at its path and with its labels."""
    import docker

    client = docker.from_env()
    image = f"{__registry__}/prometheus:{__version__}"
    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        pytest.skip(f"{image} is not built (images/build.sh)")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Metrics)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    work = tempfile.mkdtemp(prefix="clipper-prom-test-")  # readable by the container's user
    container = None
    try:
        config_dir, targets_dir = os.path.join(work, "config"), os.path.join(work, "targets")
        for d in (work, config_dir, targets_dir):
            os.makedirs(d, exist_ok=True)
            os.chmod(d, 0o755)
        _write_readable(os.path.join(config_dir, "prometheus.yml"), objects.prometheus_config_text())
        target = pod(
            "m-1-deployment-at-0-at-c1-abc",
            ip="127.0.0.1",
            port=str(server.server_port),
            path="/prometheus",
            **{n.MODEL_LABEL: "m_1"},
        )
        _write_readable(
            os.path.join(targets_dir, prometheus_targets.TARGETS_FILE),
            json.dumps(prometheus_targets.target_groups([target])),
        )
        port = free_port()
        container = client.containers.run(
            image,
            [
                "--config.file=/etc/prometheus/prometheus.yml",
                "--storage.tsdb.path=/prometheus",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            user="65534:65534",
            network_mode="host",
            volumes={
                config_dir: {"bind": "/etc/prometheus", "mode": "ro"},
                targets_dir: {"bind": prometheus_targets.TARGETS_DIR, "mode": "ro"},
            },
            tmpfs={"/prometheus": "uid=65534,gid=65534"},  # the pod's emptyDir
            detach=True,
        )
        url = f"http://127.0.0.1:{port}/api/v1/query"
        deadline = time.monotonic() + 90
        result = []
        while time.monotonic() < deadline and not result:
            container.reload()
            assert container.status in ("created", "running"), container.logs().decode()[-3000:]
            try:
                answer = requests.get(url, params={"query": "clipper_probe_metric"}, timeout=5).json()
                result = answer.get("data", {}).get("result", [])
            except requests.RequestException:
                pass
            if not result:
                time.sleep(0.5)
        assert result, container.logs().decode()[-3000:]
        (sample,) = result
        assert sample["value"][1] == "42"
        assert sample["metric"]["model_container"] == "m_1"
        assert sample["metric"]["kubernetes_pod_name"] == "m-1-deployment-at-0-at-c1-abc"
        assert sample["metric"]["job"] == "Clipper Metrics"
    finally:
        server.shutdown()
        if container is not None:
            container.remove(force=True)
        shutil.rmtree(work, ignore_errors=True)


def test_outside_a_pod_the_sidecar_says_so(monkeypatch, capsys):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        prometheus_targets.main(["--namespace", "ns", "--cluster", "c1"])
    assert exit_info.value.code == 2
    assert "runs in the Prometheus pod, with its service account" in capsys.readouterr().err
