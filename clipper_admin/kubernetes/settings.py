"""Validated settings of a Kubernetes-backed cluster: service types and resource requirements."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from clipper_admin.exceptions import ClipperException

SERVICE_KEYS = ("redis", "management", "query", "query-rpc", "metric")
SUPPORTED_SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer")

# The original exposed every service as NodePort. Redis (no auth) and the model RPC port are
# cluster-internal by default here; pass service_types to expose them as the original did.
DEFAULT_SERVICE_TYPES: dict[str, str] = {
    "redis": "ClusterIP",
    "management": "NodePort",
    "query": "NodePort",
    "query-rpc": "ClusterIP",
    "metric": "NodePort",
}

ROLES = ("redis", "management", "query", "model", "metrics")

DEFAULT_RESOURCES: dict[str, dict[str, dict[str, str]]] = {
    "redis": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
    "management": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
    "query": {"requests": {"cpu": "500m", "memory": "256Mi"}, "limits": {"memory": "2Gi"}},
    "model": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "2Gi"}},
    "metrics": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
}


def determine_service_types(service_types: Mapping[str, str] | None) -> dict[str, str]:
    """Merge user service types over the defaults, rejecting what the original rejected.

    Unlike the original this neither mutates module state nor writes files into the package.
    """
    result = dict(DEFAULT_SERVICE_TYPES)
    if service_types is None:
        return result
    if not isinstance(service_types, Mapping):
        raise ClipperException(f"service_types must be 'dict' type: {service_types!r}")
    unknown_keys = set(service_types) - set(SERVICE_KEYS)
    if unknown_keys:
        raise ClipperException(
            f"service_types has unknown keys: {sorted(unknown_keys)}; known keys: {list(SERVICE_KEYS)}"
        )
    for key, value in service_types.items():
        if value == "ExternalName":
            raise ClipperException("Clipper does not support 'ExternalName' service")
        if value not in SUPPORTED_SERVICE_TYPES:
            raise ClipperException(
                f"service_types has unknown values: {key}={value!r}; "
                f"expected one of {list(SUPPORTED_SERVICE_TYPES)}"
            )
        result[key] = value
    return result


def determine_resources(
    resources: Mapping[str, Mapping[str, Mapping[str, Any]]] | None,
) -> dict[str, dict[str, dict[str, str]]]:
    """Per-role ``{"requests": {...}, "limits": {...}}``; a role given replaces its default."""
    result = {role: {k: dict(v) for k, v in req.items()} for role, req in DEFAULT_RESOURCES.items()}
    if resources is None:
        return result
    if not isinstance(resources, Mapping):
        raise ClipperException(f"resources must be a dict of role -> requirements: {resources!r}")
    for role, req in resources.items():
        if role not in ROLES:
            raise ClipperException(f"resources has unknown role {role!r}; known roles: {list(ROLES)}")
        if not isinstance(req, Mapping) or set(req) - {"requests", "limits"}:
            raise ClipperException(
                f"resources[{role!r}] must be a dict with 'requests' and/or 'limits': {req!r}"
            )
        result[role] = {k: {rk: str(rv) for rk, rv in dict(v).items()} for k, v in req.items() if v}
    return result


@dataclass(frozen=True)
class ObjectSettings:
    """Everything the pure object builders need besides per-call arguments."""

    cluster: str
    namespace: str
    service_types: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_SERVICE_TYPES))
    resources: dict[str, dict[str, dict[str, str]]] = field(default_factory=lambda: determine_resources(None))
    redis_port: int = 6379
    redis_storage: str | None = "1Gi"  # PVC size; None: an emptyDir (data lost with the pod)
    redis_storage_class: str | None = None
    image_pull_policy: str = "IfNotPresent"
    run_as_user: int = 65532
