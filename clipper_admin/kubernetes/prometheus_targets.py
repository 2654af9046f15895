"""The scrape targets of a cluster's Prometheus on Kubernetes, kept in a ``file_sd`` file by a sidecar.

The project's Prometheus image (``images/prometheus``: Debian's package, the only one buildable
offline) is built without the Kubernetes service discovery (``kubernetes_sd_configs`` is rejected
as an unknown field). So the Prometheus pod runs a second container, from the management frontend's
image, that does this discovery itself: every few seconds it lists the cluster's pods (through the
pod's service account and a namespaced Role allowing ``list`` on pods) and rewrites
``pods.json``, which Prometheus reads with ``file_sd_configs`` (it notices a replaced file by
itself). Any Prometheus image works with this configuration, since file discovery is in every build.

The targets are what the previous ``kubernetes_sd`` relabelling selected: this cluster's running
pods annotated ``prometheus.io/scrape: "true"``, at ``<pod IP>:<prometheus.io/port>`` and path
``prometheus.io/path`` (default ``/metrics``), with the labels ``model_container`` (a model pod's
``<name>_<version>``), ``kubernetes_namespace`` and ``kubernetes_pod_name``.

Run in the pod as ``python -m clipper_admin.kubernetes.prometheus_targets --namespace NS --cluster C
--output /prometheus-targets/pods.json``.
"""

from __future__ import annotations

import argparse
import builtins
import json
import logging
import os
import signal
import threading
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from . import names as n

logger = logging.getLogger(__name__)

#: Where the sidecar writes and Prometheus reads the targets (an emptyDir both containers mount).
TARGETS_DIR = n.PROMETHEUS_TARGETS_DIR
TARGETS_FILE = n.PROMETHEUS_TARGETS_FILE
SCRAPE_ANNOTATION = "prometheus.io/scrape"
PORT_ANNOTATION = "prometheus.io/port"
PATH_ANNOTATION = "prometheus.io/path"
DEFAULT_INTERVAL_S = 5.0


class PodLister(Protocol):
    def list(
        self, kind: str, namespace: str | None = None, label_selector: str | None = None
    ) -> builtins.list[dict[str, Any]]: ...


def target_groups(pods: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """``file_sd`` target groups, one per scrapeable pod, ordered by pod name."""
    groups = []
    for pod in sorted(pods, key=lambda p: str(p["metadata"]["name"])):
        meta, status = pod["metadata"], pod.get("status") or {}
        annotations = meta.get("annotations") or {}
        port = annotations.get(PORT_ANNOTATION, "")
        if (
            annotations.get(SCRAPE_ANNOTATION) != "true"
            or not port.isdigit()
            or status.get("phase") != "Running"
            or not status.get("podIP")
            or meta.get("deletionTimestamp")
        ):
            continue
        labels = {
            "__metrics_path__": annotations.get(PATH_ANNOTATION) or "/metrics",
            "kubernetes_namespace": meta.get("namespace", ""),
            "kubernetes_pod_name": meta["name"],
        }
        model = (meta.get("labels") or {}).get(n.MODEL_LABEL)
        if model:
            labels["model_container"] = model
        groups.append({"targets": [f"{status['podIP']}:{port}"], "labels": labels})
    return groups


def sync(api: PodLister, namespace: str, cluster: str, path: str) -> bool:
    """List the cluster's pods and rewrite ``path`` when its targets changed; whether it changed."""
    text = json.dumps(target_groups(api.list("Pod", namespace, n.cluster_selector(cluster))), indent=1)
    try:
        with open(path) as f:
            if f.read() == text:
                return False
    except FileNotFoundError:
        pass
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)  # Prometheus never reads a half-written file
    return True


def run(
    api: PodLister, namespace: str, cluster: str, path: str, interval_s: float, stop: threading.Event
) -> None:
    """``sync`` every ``interval_s`` until ``stop``; a failed round is logged and retried."""
    while not stop.is_set():
        try:
            if sync(api, namespace, cluster, path):
                logger.info(f"scrape targets updated in {path}")
        except Exception as e:  # the API server restarting, a network blip: the next round retries
            logger.warning(f"could not update the scrape targets: {type(e).__name__}: {e}")
        stop.wait(interval_s)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog=f"python -m {__name__}", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--cluster", required=True)
    parser.add_argument("--output", default=f"{TARGETS_DIR}/{TARGETS_FILE}")
    parser.add_argument("--interval", type=float, default=DEFAULT_INTERVAL_S)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    from kubernetes import client as k8s_client
    from kubernetes import config as k8s_config

    from .api import KubeApi

    try:
        k8s_config.load_incluster_config()
    except k8s_config.ConfigException as e:
        parser.exit(2, f"{parser.prog}: runs in the Prometheus pod, with its service account ({e})\n")
    api = KubeApi(k8s_client.ApiClient())
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    run(api, args.namespace, args.cluster, args.output, args.interval, stop)


if __name__ == "__main__":
    main()
