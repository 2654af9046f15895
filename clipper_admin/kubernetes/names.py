"""Object names and labels of a Clipper cluster on Kubernetes (the original's).

Kept apart from ``objects.py`` so the manager, the port-forwarder and tests agree on one spelling.
"""

from __future__ import annotations

CLUSTER_LABEL = "ai.clipper.container.label"  # value: cluster name, on every object
NAME_LABEL = "ai.clipper.name"  # role: redis, mgmt-frontend, query-frontend, metrics, model
MODEL_LABEL = "ai.clipper.model_container.label"  # value: "<name>_<version>"
QUERY_FRONTEND_ID_LABEL = "ai.clipper.query_frontend.id"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
FIELD_MANAGER = "clipper"

QUERY_PORT = 1337
MGMT_PORT = 1338
RPC_PORT = 7000
REDIS_PORT = 6379
PROMETHEUS_PORT = 9090
MODEL_METRICS_PORT = 1390  # a model container's Prometheus metrics (CLIPPER_METRICS_PORT)

#: The Prometheus pod's targets sidecar (``python -m`` this module) and the file it writes, in a
#: volume both containers mount. Not imported by the manager, so ``python -m`` runs it cleanly.
PROMETHEUS_TARGETS_MODULE = "clipper_admin.kubernetes.prometheus_targets"
PROMETHEUS_TARGETS_DIR = "/prometheus-targets"
PROMETHEUS_TARGETS_FILE = "pods.json"

# Service port names must be IANA service names (at least one letter), so the original's
# numeric names ("1337", "1338", ...) are not valid any more.
PORT_NAMES = {
    "query": "query",
    "management": "management",
    "query-rpc": "rpc",
    "redis": "redis",
    "metric": "metrics",
}


def redis(cluster: str) -> str:
    return f"redis-at-{cluster}"


def redis_data(cluster: str) -> str:
    return f"redis-data-at-{cluster}"


def mgmt(cluster: str) -> str:
    return f"mgmt-frontend-at-{cluster}"


def query(cluster: str) -> str:
    """The HTTP Service selecting every query frontend of the cluster."""
    return f"query-frontend-at-{cluster}"


def query_frontend(cluster: str, qf_id: int) -> str:
    """Deployment and RPC Service of query frontend ``qf_id``."""
    return f"query-frontend-{qf_id}-at-{cluster}"


def metrics(cluster: str) -> str:
    return f"metrics-at-{cluster}"


def prometheus_config(cluster: str) -> str:
    return f"prometheus-config-at-{cluster}"


def prometheus_rbac(cluster: str) -> str:
    """ServiceAccount, Role and RoleBinding of the cluster's Prometheus."""
    return f"{cluster}-prometheus"


def model_container_label(name: str, version: str) -> str:
    return f"{name}_{version}"


def model_deployment(name: str, version: str, qf_id: int, cluster: str) -> str:
    return f"{name}-{version}-deployment-at-{qf_id}-at-{cluster}"


def selector(**labels: str | None) -> str:
    """A label selector string; a ``None`` value means "label exists"."""
    return ",".join(k if v is None else f"{k}={v}" for k, v in labels.items())


def cluster_selector(cluster: str, **extra: str | None) -> str:
    return selector(**{CLUSTER_LABEL: cluster}, **extra)


def admin_token(cluster: str) -> str:
    return f"admin-token-at-{cluster}"


def rpc_keys(cluster: str) -> str:
    """The Secret with the cluster's RPC CURVE keys (keys ``frontend`` and ``replica``)."""
    return f"rpc-keys-at-{cluster}"
