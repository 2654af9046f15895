"""The ``Cluster`` kind: which backend runs Clipper and how it is configured."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from schemas.common import Manifest, Strict

ServiceType = Literal["ClusterIP", "NodePort", "LoadBalancer"]


class RedisSettings(Strict):
    host: str | None = Field(
        default=None,
        description="Host of an external Redis to use as the config store. When absent, docker and "
        "kubernetes backends start and manage their own Redis; the local backend uses SQLite.",
    )
    port: int = Field(default=6379, ge=1, le=65535, description="Port of Redis.")


class DockerSettings(Strict):
    network: str = Field(
        default="clipper_network",
        description="Docker network the Clipper containers join ('host' is not supported).",
    )
    ip_address: str = Field(
        default="localhost", description="Host name under which the published ports are reached."
    )
    prometheus_port: int = Field(default=9090, ge=1, le=65535, description="Host port of Prometheus.")

    @model_validator(mode="after")
    def _no_host_network(self) -> DockerSettings:
        if self.network == "host":
            raise ValueError("the 'host' docker network is not supported")
        return self


class KubernetesServiceTypes(Strict):
    redis: ServiceType = Field(default="NodePort", description="Service type of Redis.")
    management: ServiceType = Field(default="NodePort", description="Service type of the management API.")
    query: ServiceType = Field(default="NodePort", description="Service type of the query frontend.")
    query_rpc: ServiceType = Field(
        default="NodePort", alias="queryRpc", description="Service type of the RPC port."
    )
    metric: ServiceType = Field(default="NodePort", description="Service type of Prometheus.")


#: a Kubernetes quantity (``50m``, ``64Mi``, ``1.5``, ``2e3``): digits, then a binary (Ki..Ei), decimal
#: (n, u, m, k, M..E) or exponent suffix; no sign, requests and limits are never negative
QUANTITY_PATTERN = r"^([0-9]+(\.[0-9]*)?|\.[0-9]+)([KMGTPE]i|[numkMGTPE]|[eE][+-]?[0-9]+)?$"
#: a resource name: ``cpu``, ``memory``, ``ephemeral-storage``, ``hugepages-2Mi``, or a qualified
#: extended resource such as ``nvidia.com/gpu``
RESOURCE_NAME_PATTERN = re.compile(
    r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)

Quantity = Annotated[
    Annotated[int, Field(ge=0)] | Annotated[str, Field(pattern=QUANTITY_PATTERN)],
    Field(description="A Kubernetes quantity, e.g. 50m (CPU) or 64Mi (memory)."),
]


class ResourceRequirements(Strict):
    requests: dict[str, Quantity] | None = Field(
        default=None,
        description="Resources the scheduler reserves for the container, by resource name "
        "(cpu, memory, ephemeral-storage, hugepages-<size>, or an extended resource such as "
        "nvidia.com/gpu), e.g. {cpu: 50m, memory: 64Mi}.",
    )
    limits: dict[str, Quantity] | None = Field(
        default=None,
        description="Most of each resource the container may use, by resource name, e.g. {memory: 512Mi}.",
    )

    @field_validator("requests", "limits")
    @classmethod
    def _resource_names(cls, v: dict[str, Quantity] | None) -> dict[str, Quantity] | None:
        for name in v or {}:
            if not RESOURCE_NAME_PATTERN.match(name) or len(name) > 253:
                raise ValueError(
                    f"{name!r} is not a resource name (e.g. cpu, memory, ephemeral-storage, nvidia.com/gpu)"
                )
        return v


_ROLE_RESOURCES = (
    "Requests and limits of the container of {}. Given, it replaces that role's defaults as a "
    "whole (requests and limits: a role with requests only runs without limits)."
)


class KubernetesResources(Strict):
    redis: ResourceRequirements | None = Field(
        default=None, description=_ROLE_RESOURCES.format("the Redis pod")
    )
    management: ResourceRequirements | None = Field(
        default=None, description=_ROLE_RESOURCES.format("the management frontend pod")
    )
    query: ResourceRequirements | None = Field(
        default=None, description=_ROLE_RESOURCES.format("each query frontend pod")
    )
    model: ResourceRequirements | None = Field(
        default=None, description=_ROLE_RESOURCES.format("each model replica pod")
    )
    metrics: ResourceRequirements | None = Field(
        default=None, description=_ROLE_RESOURCES.format("the Prometheus pod")
    )


class KubernetesSettings(Strict):
    namespace: str = Field(default="default", description="Namespace that holds the cluster.")
    create_namespace: bool = Field(default=False, description="Create the namespace when it does not exist.")
    context: str | None = Field(
        default=None, description="kubeconfig context to use; the current context when absent."
    )
    proxy_address: str | None = Field(
        default=None,
        description="host:port of a `kubectl proxy` to reach the services through, e.g. 127.0.0.1:8080.",
    )
    use_internal_ip: bool = Field(
        default=False, description="Reach node ports through the nodes' internal IPs."
    )
    service_types: KubernetesServiceTypes = Field(
        default_factory=KubernetesServiceTypes, description="Service type of each Clipper service."
    )
    resources: KubernetesResources | None = Field(
        default=None,
        description="CPU and memory requests and limits of the pods, per role; a role not given keeps "
        "Clipper's defaults. They apply when the cluster starts (Redis, frontends, Prometheus) and to "
        "the model replicas deployed afterwards: a running cluster's pods are not compared with "
        "them, so clipper diff and apply do not report or change a new value for running pods; "
        "delete the cluster and apply again to resize them.",
    )


class ClusterSpec(Strict):
    backend: Literal["local", "docker", "kubernetes"] = Field(
        default="local",
        description="Where Clipper runs: 'local' (supervised processes, SQLite; needs only pip), "
        "'docker' or 'kubernetes'.",
    )
    query_port: int = Field(
        default=1337, ge=0, le=65535, description="HTTP port of the query frontend (0: any free port)."
    )
    management_port: int = Field(
        default=1338, ge=0, le=65535, description="HTTP port of the management API (0: any free port)."
    )
    rpc_port: int = Field(
        default=7000,
        ge=0,
        le=65535,
        description="ZeroMQ port model containers connect to (0: any free port).",
    )
    cache_size_bytes: int = Field(
        default=33554432, ge=0, description="Size of the prediction cache of each query frontend in bytes."
    )
    frontend_replicas: int = Field(
        default=1, ge=1, description="Number of query frontends (more than 1 only on kubernetes)."
    )
    registry: str | None = Field(
        default=None, description="Container registry model images are pushed to (docker, kubernetes)."
    )
    admin_token: str | None = Field(
        default=None,
        min_length=1,
        pattern=r"^\S+$",
        description="Bearer token required by the management API (default: one is generated per "
        "cluster and kept owner-only on the machine that starts it). Use ${VAR} to read it from the "
        "environment rather than writing it into the manifest; an empty value is an error.",
    )
    admin_auth: Literal["token", "none"] = Field(
        default="token",
        description="'token' (default): the management API requires a bearer token. 'none': no "
        "token, for REST clients of the original Clipper; anyone who reaches the management port "
        "can then change the cluster and run code as its owner.",
    )
    allow_unauthenticated_replicas: bool = Field(
        default=False,
        description="false (default): only the model replicas this cluster starts may register with "
        "the query frontend (CURVE keys generated per cluster and handed only to them). true: any "
        "process that reaches the RPC port may register as a replica of any model and receive its "
        "queries; needed for original-protocol model containers you start yourself.",
    )
    keep_versions: int = Field(
        default=3,
        ge=2,
        description="Model versions clipper apply keeps registered per model (the current one and the "
        "most recent before it, for rollback, always among them); older versions it deployed are "
        "unregistered and their model directories (local) or images (docker) removed.",
    )
    redis: RedisSettings = Field(
        default_factory=RedisSettings, description="Config-store Redis (docker, kubernetes)."
    )
    docker: DockerSettings | None = Field(default=None, description="Settings of the docker backend.")
    kubernetes: KubernetesSettings | None = Field(
        default=None, description="Settings of the kubernetes backend."
    )

    @model_validator(mode="after")
    def _settings_match_backend(self) -> ClusterSpec:
        for other in ("docker", "kubernetes"):
            if getattr(self, other) is not None and self.backend != other:
                raise ValueError(f"'{other}' settings given but backend is '{self.backend}'")
        if self.admin_auth == "none" and self.admin_token is not None:
            raise ValueError("adminToken given but adminAuth is 'none': drop one of them")
        if self.frontend_replicas != 1 and self.backend != "kubernetes":
            raise ValueError("frontendReplicas > 1 is only supported on the kubernetes backend")
        return self


class Cluster(Manifest):
    """A Clipper cluster: its backend and the settings of its frontends."""

    kind: Literal["Cluster"] = Field(description="Always 'Cluster'.")
    spec: ClusterSpec = Field(default_factory=ClusterSpec, description="Backend and settings.")
