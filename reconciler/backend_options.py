"""Which ``Cluster`` manifest fields each backend honours.

A field a backend cannot honour (``registry`` on the local backend, ports on Kubernetes) is a
located manifest error, not a setting silently dropped. ``reconciler/backends.py`` passes exactly
these fields to the backend's container manager; the loader reports every other field the manifest
sets. Pure: imports only ``schemas``.
"""

from __future__ import annotations

from collections.abc import Iterator

from pydantic.alias_generators import to_camel

from schemas.cluster import ClusterSpec

#: Fields every backend honours (``frontendReplicas`` > 1 is refused by the schema off Kubernetes).
COMMON_FIELDS: frozenset[str] = frozenset(
    {
        "backend",
        "cache_size_bytes",
        "frontend_replicas",
        "admin_token",
        "admin_auth",
        "allow_unauthenticated_replicas",
        "keep_versions",  # the reconciler's, not the cluster's
    }
)
_PORTS = frozenset({"query_port", "management_port", "rpc_port"})

#: ``ClusterSpec`` field names (Python spelling) each backend honours.
BACKEND_FIELDS: dict[str, frozenset[str]] = {
    "local": COMMON_FIELDS | _PORTS,
    "docker": COMMON_FIELDS | _PORTS | {"registry", "redis", "docker"},
    # Kubernetes Services use the cluster-internal ports (1337/1338/7000); addresses are found
    # through the Services, so the manifest's ports have no meaning there.
    "kubernetes": COMMON_FIELDS | {"registry", "redis", "kubernetes"},
}


def unsupported_fields(spec: ClusterSpec) -> Iterator[tuple[tuple[str, ...], str]]:
    """``(YAML path under spec, message)`` for every field set in ``spec`` its backend ignores.

    Only fields the manifest sets count (``model_fields_set``): defaults are never an error.
    """
    honoured = BACKEND_FIELDS[spec.backend]
    for field in sorted(spec.model_fields_set - honoured):
        yield (to_camel(field),), f"not supported by the {spec.backend} backend"
