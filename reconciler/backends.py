"""Cluster manifest -> a ``ClipperConnection`` on the right container manager."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from reconciler.desired import DesiredState


def _construct(cls: Any, kwargs: dict[str, Any]) -> Any:
    accepted = inspect.signature(cls.__init__).parameters
    return cls(**{k: v for k, v in kwargs.items() if k in accepted and v is not None})


def container_manager(desired: DesiredState) -> Any:
    spec = desired.cluster
    common = {
        "cluster_name": desired.cluster_name,
        "clipper_query_port": spec.query_port,
        "clipper_management_port": spec.management_port,
        "clipper_rpc_port": spec.rpc_port,
        # None: the manager generates one; False: the manifest opted out (adminAuth: none)
        "admin_token": False if spec.admin_auth == "none" else spec.admin_token,
        "redis_ip": spec.redis.host,
        "redis_port": spec.redis.port,
        "registry": spec.registry,
        "allow_unauthenticated_replicas": spec.allow_unauthenticated_replicas,
    }
    if spec.backend == "local":
        from clipper_admin import LocalContainerManager

        return _construct(LocalContainerManager, common)
    if spec.backend == "docker":
        from clipper_admin import DockerContainerManager

        d = spec.docker
        extra = (
            {
                "docker_ip_address": d.ip_address,
                "docker_network": d.network,
                "prometheus_port": d.prometheus_port,
            }
            if d
            else {}
        )
        return _construct(DockerContainerManager, {**common, **extra})
    from clipper_admin import KubernetesContainerManager

    k = spec.kubernetes
    extra = {}
    if k is not None:
        st = k.service_types
        extra = {
            "namespace": k.namespace,
            "create_namespace_if_not_exists": k.create_namespace,
            "kubernetes_proxy_addr": k.proxy_address,
            "useInternalIP": k.use_internal_ip,
            "context": k.context,
            "service_types": {"redis": st.redis, "management": st.management, "query": st.query,
                              "query-rpc": st.query_rpc, "metric": st.metric},
        }  # fmt: skip
    return _construct(KubernetesContainerManager, {**common, **extra})


def connection(desired: DesiredState) -> Any:
    from clipper_admin import ClipperConnection

    return ClipperConnection(container_manager(desired))


def cluster_dir(desired: DesiredState, conn: Any) -> Path:
    """Where the reconciler keeps its lock and ownership registry for this cluster."""
    d = getattr(conn.cm, "dir", None)
    if d is not None and hasattr(d, "root"):
        return Path(d.root)
    from clipper_admin.local.state import clipper_home

    return clipper_home() / desired.cluster_name
