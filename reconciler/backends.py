"""Cluster manifest -> a ``ClipperConnection`` on the right container manager.

Each backend gets exactly the ``Cluster`` fields it honours (``backend_options.BACKEND_FIELDS``); the
loader has already refused a manifest setting any other field, so nothing is dropped here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reconciler.desired import DesiredState


def _admin_token(spec: Any) -> str | bool | None:
    # None: the manager generates one; False: the manifest opted out (adminAuth: none)
    return False if spec.admin_auth == "none" else spec.admin_token


def container_manager(desired: DesiredState) -> Any:
    spec = desired.cluster
    security = {
        "admin_token": _admin_token(spec),
        "allow_unauthenticated_replicas": spec.allow_unauthenticated_replicas,
    }
    ports = {
        "clipper_query_port": spec.query_port,
        "clipper_management_port": spec.management_port,
        "clipper_rpc_port": spec.rpc_port,
    }
    if spec.backend == "local":
        from clipper_admin import LocalContainerManager

        return LocalContainerManager(cluster_name=desired.cluster_name, **ports, **security)
    if spec.backend == "docker":
        from clipper_admin import DockerContainerManager

        d = spec.docker
        docker_args: dict[str, Any] = (
            {
                "docker_ip_address": d.ip_address,
                "docker_network": d.network,
                "prometheus_port": d.prometheus_port,
            }
            if d
            else {}
        )
        return DockerContainerManager(
            cluster_name=desired.cluster_name,
            redis_ip=spec.redis.host,
            redis_port=spec.redis.port,
            registry=spec.registry,
            **ports,
            **docker_args,
            **security,
        )
    from clipper_admin import KubernetesContainerManager

    k = spec.kubernetes
    k8s_args: dict[str, Any] = {}
    if k is not None:
        st = k.service_types
        k8s_args = {
            "namespace": k.namespace,
            "create_namespace_if_not_exists": k.create_namespace,
            "kubernetes_proxy_addr": k.proxy_address,
            "useInternalIP": k.use_internal_ip,
            "context": k.context,
            "service_types": {"redis": st.redis, "management": st.management, "query": st.query,
                              "query-rpc": st.query_rpc, "metric": st.metric},
        }  # fmt: skip
        if k.resources is not None:
            # per role {"requests": {...}, "limits": {...}}; a role left out keeps the manager's default
            k8s_args["resources"] = k.resources.model_dump(exclude_none=True)
    return KubernetesContainerManager(
        cluster_name=desired.cluster_name,
        redis_ip=spec.redis.host,
        redis_port=spec.redis.port,
        registry=spec.registry,
        **k8s_args,
        **security,
    )


def connection(desired: DesiredState) -> Any:
    from clipper_admin import ClipperConnection

    return ClipperConnection(container_manager(desired))  # type: ignore[no-untyped-call]  # the original's


def cluster_dir(desired: DesiredState, conn: Any) -> Path:
    """Where the reconciler keeps its lock and ownership registry for this cluster."""
    d = getattr(conn.cm, "dir", None)
    if d is not None and hasattr(d, "root"):
        return Path(d.root)
    from clipper_admin.local.state import clipper_home

    return clipper_home() / desired.cluster_name
