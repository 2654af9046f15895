"""Pure functions building every Kubernetes object of a Clipper cluster as a plain dict.

No I/O here: the manager applies these with server-side apply, and the tests validate them
against the official OpenAPI schemas. Current API versions only (core/v1, apps/v1, rbac/v1);
the original's templates (extensions/v1beta1, rbac/v1beta1) no longer exist on any supported
Kubernetes. Names and labels follow the original, with ``spec.selector`` added
as apps/v1 requires, and the model template's ``label:`` typo fixed.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping
from typing import Any

from ruamel.yaml import YAML

from clipper.rpc.auth import RpcKeys
from clipper_admin import launch

from . import names as n
from .settings import ObjectSettings

Obj = dict[str, Any]

TMP_VOLUME = {"name": "tmp", "emptyDir": {}}
TMP_MOUNT = {"name": "tmp", "mountPath": "/tmp"}


def labels(cluster: str, role: str, **extra: str) -> dict[str, str]:
    return {n.CLUSTER_LABEL: cluster, n.NAME_LABEL: role, n.MANAGED_BY_LABEL: "clipper", **extra}


def _meta(name: str, s: ObjectSettings, role: str, **extra: str) -> Obj:
    return {"name": name, "namespace": s.namespace, "labels": labels(s.cluster, role, **extra)}


def namespace(name: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {n.MANAGED_BY_LABEL: "clipper"}},
    }


def container_security_context(read_only_root: bool = True) -> Obj:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": read_only_root,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }


def pod_security_context(run_as_user: int) -> Obj:
    return {
        "runAsNonRoot": True,
        "runAsUser": run_as_user,
        "runAsGroup": run_as_user,
        "fsGroup": run_as_user,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def http_probes(port: int, path: str = "/health") -> Obj:
    return {
        "readinessProbe": {
            "httpGet": {"path": path, "port": port},
            "periodSeconds": 3,
            "timeoutSeconds": 2,
            "failureThreshold": 3,
        },
        "livenessProbe": {
            "httpGet": {"path": path, "port": port},
            "initialDelaySeconds": 10,
            "periodSeconds": 10,
            "timeoutSeconds": 5,
            "failureThreshold": 6,
        },
    }


#: Model containers keep this file holding the epoch second until which they count as alive (their
#: prediction watchdog, clipper.container.runtime); /tmp is the pod's writable emptyDir.
MODEL_LIVENESS_FILE = "/tmp/clipper-alive"
#: Model pods run as the ``clipper`` user of the project's model images (images/py-rpc): a uid with a
#: passwd entry, which PySpark models need (Spark's JVM cannot log in as an unknown uid; found on a
#: real cluster). Other pods run as an unnamed uid (``ObjectSettings.run_as_user``).
MODEL_UID = 10001
MODEL_LIVENESS_CHECK = f'f={MODEL_LIVENESS_FILE}; [ ! -s "$f" ] || [ "$(date +%s)" -le "$(cat "$f")" ]'


def model_liveness_probe() -> Obj:
    """Fails once the deadline in :data:`MODEL_LIVENESS_FILE` has passed: the model function has held
    the interpreter past ``CLIPPER_PREDICT_TIMEOUT`` + 10 s, so even the container's own watchdog
    could not end it. A missing file passes (still loading the model, or an original Clipper
    container image, which writes none), so such containers are never killed by the probe."""
    return {
        "exec": {"command": ["sh", "-c", MODEL_LIVENESS_CHECK]},
        "initialDelaySeconds": 10,
        "periodSeconds": 10,
        "timeoutSeconds": 5,
        "failureThreshold": 3,
    }


def _deployment(
    name: str,
    s: ObjectSettings,
    role: str,
    containers: list[Obj],
    *,
    selector_extra: dict[str, str] | None = None,
    pod_extra: dict[str, str] | None = None,
    meta_extra: dict[str, str] | None = None,
    replicas: int = 1,
    volumes: list[Obj] | None = None,
    annotations: dict[str, str] | None = None,
    service_account: str | None = None,
    run_as_user: int | None = None,
    strategy: str | None = None,
) -> Obj:
    selector = {n.CLUSTER_LABEL: s.cluster, n.NAME_LABEL: role, **(selector_extra or {})}
    pod_labels = labels(s.cluster, role, **(selector_extra or {}), **(pod_extra or {}))
    pod_spec: Obj = {
        "automountServiceAccountToken": service_account is not None,
        "securityContext": pod_security_context(run_as_user or s.run_as_user),
        "containers": containers,
        "volumes": [TMP_VOLUME, *(volumes or [])],
    }
    if service_account is not None:
        pod_spec["serviceAccountName"] = service_account
    template_meta: Obj = {"labels": pod_labels}
    if annotations:
        template_meta["annotations"] = annotations
    spec: Obj = {
        "replicas": replicas,
        "selector": {"matchLabels": selector},
        "template": {"metadata": template_meta, "spec": pod_spec},
    }
    if strategy:
        spec["strategy"] = {"type": strategy}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(name, s, role, **(selector_extra or {}), **(meta_extra or {})),
        "spec": spec,
    }


def _container(name: str, image: str, s: ObjectSettings, role: str, **fields: Any) -> Obj:
    mounts = fields.pop("volumeMounts", [])
    return {
        "name": name,
        "image": image,
        "imagePullPolicy": s.image_pull_policy,
        **fields,
        "resources": s.resources[role],
        "securityContext": container_security_context(),
        "volumeMounts": [TMP_MOUNT, *mounts],
    }


def _service(
    name: str,
    s: ObjectSettings,
    role: str,
    service_key: str,
    port: int,
    target_port: int,
    selector_extra: dict[str, str] | None = None,
) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(name, s, role, **(selector_extra or {})),
        "spec": {
            "type": s.service_types[service_key],
            "selector": {n.CLUSTER_LABEL: s.cluster, n.NAME_LABEL: role, **(selector_extra or {})},
            "ports": [
                {
                    "name": n.PORT_NAMES[service_key],
                    "port": port,
                    "targetPort": target_port,
                    "protocol": "TCP",
                }
            ],
        },
    }


# --- Redis --------------------------------------------------------------------------------------


def redis_pvc(s: ObjectSettings) -> Obj:
    spec: Obj = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": s.redis_storage or "1Gi"}},
    }
    if s.redis_storage_class:
        spec["storageClassName"] = s.redis_storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _meta(n.redis_data(s.cluster), s, "redis"),
        "spec": spec,
    }


def redis_deployment(s: ObjectSettings, image: str) -> Obj:
    data_volume: Obj = (
        {"name": "data", "persistentVolumeClaim": {"claimName": n.redis_data(s.cluster)}}
        if s.redis_storage
        else {"name": "data", "emptyDir": {}}
    )
    container = _container(
        "redis",
        image,
        s,
        "redis",
        command=["redis-server"],
        # protected mode (on by default without a password) refuses every client not on loopback,
        # i.e. the frontends in other pods: seen on a real cluster, invisible to the API double.
        args=["--port", str(n.REDIS_PORT), "--dir", "/data", "--appendonly", "yes", "--protected-mode", "no"],
        ports=[{"name": "redis", "containerPort": n.REDIS_PORT}],
        readinessProbe={"tcpSocket": {"port": n.REDIS_PORT}, "periodSeconds": 3},
        livenessProbe={"tcpSocket": {"port": n.REDIS_PORT}, "initialDelaySeconds": 10, "periodSeconds": 10},
        volumeMounts=[{"name": "data", "mountPath": "/data"}],
    )
    # One writer on a ReadWriteOnce volume: never run the old and new pod side by side.
    return _deployment(
        n.redis(s.cluster), s, "redis", [container], volumes=[data_volume], strategy="Recreate"
    )


def redis_service(s: ObjectSettings) -> Obj:
    return _service(n.redis(s.cluster), s, "redis", "redis", s.redis_port, n.REDIS_PORT)


# --- management frontend ------------------------------------------------------------------------


def store_url(redis_host: str, redis_port: int) -> str:
    return f"redis://{redis_host}:{redis_port}"


def frontend_settings(redis_host: str, redis_port: int, **overrides: Any) -> launch.FrontendSettings:
    """The frontends' launch settings on Kubernetes: the Services' container ports, all interfaces."""
    return launch.FrontendSettings(
        store=store_url(redis_host, redis_port),
        management_port=n.MGMT_PORT,
        query_port=n.QUERY_PORT,
        rpc_port=n.RPC_PORT,
        host="0.0.0.0",
        rpc_host="0.0.0.0",
        **overrides,
    )


def launch_env(spec: launch.Launch, secrets: Mapping[str, str | None]) -> list[Obj]:
    """``spec``'s environment; each secret (``token``, ``frontend``, ``replica``) is a
    ``secretKeyRef`` to the key of that name in the Secret ``secrets`` names for it."""
    env: list[Obj] = [{"name": k, "value": v} for k, v in spec.env.items()]
    for var, key in spec.secret_env.items():
        secret = secrets.get(key)
        if secret is None:
            raise ValueError(f"{spec.module}: no Secret given for {key!r} ({var})")
        env.append({"name": var, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}})
    return env


def mgmt_deployment(
    s: ObjectSettings, image: str, redis_host: str, redis_port: int, admin_token_secret: str | None = None
) -> Obj:
    spec = launch.management_frontend(
        frontend_settings(redis_host, redis_port, admin_token="env" if admin_token_secret else "none")
    )
    container = _container(
        "mgmt-frontend",
        image,
        s,
        "management",
        command=spec.command(),
        args=list(spec.args),
        ports=[{"name": "management", "containerPort": n.MGMT_PORT}],
        env=launch_env(spec, {"token": admin_token_secret}),
        **http_probes(n.MGMT_PORT),
    )
    return _deployment(n.mgmt(s.cluster), s, "mgmt-frontend", [container])


def mgmt_service(s: ObjectSettings) -> Obj:
    return _service(n.mgmt(s.cluster), s, "mgmt-frontend", "management", n.MGMT_PORT, n.MGMT_PORT)


# --- query frontends ----------------------------------------------------------------------------


def query_deployment(
    s: ObjectSettings,
    qf_id: int,
    image: str,
    redis_host: str,
    redis_port: int,
    cache_size: int,
    thread_pool_size: int,
    timeout_request: int,
    timeout_content: int,
    rpc_keys_secret: str | None = None,
    limits: launch.Limits | None = None,
) -> Obj:
    """``rpc_keys_secret``: the Secret whose ``frontend`` key the query frontend reads as
    ``CLIPPER_RPC_KEYS`` (only replicas holding the cluster's keys register); None: ``--rpc-auth
    none``, any pod reaching the RPC service may register (original-protocol containers)."""
    name = n.query_frontend(s.cluster, qf_id)
    spec = launch.query_frontend(
        frontend_settings(
            redis_host,
            redis_port,
            frontend_id=name,
            cache_size_bytes=cache_size,
            thread_pool_size=thread_pool_size,
            timeout_request=timeout_request,
            timeout_content=timeout_content,
            rpc_auth="none" if rpc_keys_secret is None else "curve",
            limits=limits or launch.Limits(),
        )
    )
    container = _container(
        "query-frontend",
        image,
        s,
        "query",
        command=spec.command(),
        args=list(spec.args),
        ports=[
            {"name": "query", "containerPort": n.QUERY_PORT},
            {"name": "rpc", "containerPort": n.RPC_PORT},
        ],
        env=launch_env(spec, {"frontend": rpc_keys_secret}),
        **http_probes(n.QUERY_PORT),
    )
    # The query frontend serves Prometheus text itself; no exporter sidecar is needed.
    return _deployment(
        name,
        s,
        "query-frontend",
        [container],
        selector_extra={n.QUERY_FRONTEND_ID_LABEL: str(qf_id)},
        annotations={
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(n.QUERY_PORT),
            "prometheus.io/path": "/prometheus",  # text exposition; /metrics is the JSON
        },
    )


def query_rpc_service(s: ObjectSettings, qf_id: int) -> Obj:
    return _service(
        n.query_frontend(s.cluster, qf_id),
        s,
        "query-frontend",
        "query-rpc",
        n.RPC_PORT,
        n.RPC_PORT,
        selector_extra={n.QUERY_FRONTEND_ID_LABEL: str(qf_id)},
    )


def query_service(s: ObjectSettings) -> Obj:
    return _service(n.query(s.cluster), s, "query-frontend", "query", n.QUERY_PORT, n.QUERY_PORT)


# --- models -------------------------------------------------------------------------------------


def model_deployment(
    s: ObjectSettings,
    name: str,
    version: str,
    qf_id: int,
    input_type: str,
    image: str,
    num_replicas: int,
    rpc_keys_secret: str | None = None,
) -> Obj:
    """One Deployment per (model version, query frontend), as in the original.
    ``rpc_keys_secret``: the Secret whose ``replica`` key the container reads as ``CLIPPER_RPC_KEYS``."""
    spec = launch.model_replica(
        launch.ReplicaSettings(
            name=name,
            version=str(version),
            input_type=input_type,
            rpc_host=n.query_frontend(s.cluster, qf_id),
            rpc_port=n.RPC_PORT,
            model_path="/model",
            liveness_file=MODEL_LIVENESS_FILE,
            rpc_keys="none" if rpc_keys_secret is None else "secret",
            metrics_port=n.MODEL_METRICS_PORT,  # the port the pod declares and Prometheus scrapes
        )
    )
    container = _container(
        "model",
        image,
        s,
        "model",
        env=launch_env(spec, {"replica": rpc_keys_secret}),
        ports=[{"name": "metrics", "containerPort": n.MODEL_METRICS_PORT}],
        livenessProbe=model_liveness_probe(),
    )
    return _deployment(
        n.model_deployment(name, version, qf_id, s.cluster),
        s,
        "model",
        [container],
        selector_extra={
            n.MODEL_LABEL: n.model_container_label(name, version),
            n.QUERY_FRONTEND_ID_LABEL: str(qf_id),
        },
        replicas=num_replicas,
        annotations={"prometheus.io/scrape": "true", "prometheus.io/port": str(n.MODEL_METRICS_PORT)},
        run_as_user=MODEL_UID,
    )


# --- Prometheus ---------------------------------------------------------------------------------


def prometheus_config_text() -> str:
    """Scrape the targets the sidecar (``prometheus_targets.py``) keeps in a ``file_sd`` file.

    No ``kubernetes_sd_configs``: the project's Prometheus image (Debian's build) has no Kubernetes
    discovery. The sidecar lists only this cluster's pods, in this namespace."""
    config = {
        "global": {"evaluation_interval": "5s", "scrape_interval": "5s"},
        "scrape_configs": [
            {
                "job_name": "Clipper Metrics",
                "file_sd_configs": [
                    {
                        "files": [f"{n.PROMETHEUS_TARGETS_DIR}/{n.PROMETHEUS_TARGETS_FILE}"],
                        # the file is replaced atomically and watched; the re-read is a fallback
                        "refresh_interval": "30s",
                    }
                ],
            }
        ],
    }

    out = io.StringIO()
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.dump(config, out)
    return out.getvalue()


def prometheus_configmap(s: ObjectSettings) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(n.prometheus_config(s.cluster), s, "metrics"),
        "data": {"prometheus.yml": prometheus_config_text()},
    }


def prometheus_service_account(s: ObjectSettings) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _meta(n.prometheus_rbac(s.cluster), s, "metrics"),
        "automountServiceAccountToken": True,
    }


def prometheus_role(s: ObjectSettings) -> Obj:
    """Namespace-scoped read access to pods, for the targets sidecar (the original used a ClusterRole)."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _meta(n.prometheus_rbac(s.cluster), s, "prom-role"),
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}],
    }


def prometheus_role_binding(s: ObjectSettings) -> Obj:
    name = n.prometheus_rbac(s.cluster)
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _meta(name, s, "prom-role-binding"),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": s.namespace}],
    }


#: The targets sidecar is small: one pod list every few seconds.
TARGETS_SIDECAR_RESOURCES = {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}


def prometheus_deployment(s: ObjectSettings, image: str, targets_image: str) -> Obj:
    """Prometheus, and the sidecar keeping its scrape targets (``targets_image``: an image with the
    ``clipper_admin`` package, the management frontend's) in a volume both mount."""
    targets_mount = {"name": "targets", "mountPath": n.PROMETHEUS_TARGETS_DIR}
    container = _container(
        "metrics",
        image,
        s,
        "metrics",
        args=[
            "--config.file=/etc/prometheus/prometheus.yml",
            "--storage.tsdb.path=/prometheus",
            f"--web.listen-address=:{n.PROMETHEUS_PORT}",
            "--web.enable-lifecycle",
        ],
        ports=[{"name": "metrics", "containerPort": n.PROMETHEUS_PORT}],
        volumeMounts=[
            {"name": "config", "mountPath": "/etc/prometheus", "readOnly": True},
            {"name": "data", "mountPath": "/prometheus"},
            {**targets_mount, "readOnly": True},
        ],
        **http_probes(n.PROMETHEUS_PORT, "/-/ready"),
    )
    sidecar = _container(
        "targets",
        targets_image,
        s,
        "metrics",
        command=[
            "python",
            "-m",
            n.PROMETHEUS_TARGETS_MODULE,
            "--namespace",
            s.namespace,
            "--cluster",
            s.cluster,
            "--output",
            f"{n.PROMETHEUS_TARGETS_DIR}/{n.PROMETHEUS_TARGETS_FILE}",
        ],
        volumeMounts=[targets_mount],
    )
    sidecar["resources"] = TARGETS_SIDECAR_RESOURCES
    return _deployment(
        n.metrics(s.cluster),
        s,
        "metrics",
        [container, sidecar],
        volumes=[
            {"name": "config", "configMap": {"name": n.prometheus_config(s.cluster)}},
            {"name": "data", "emptyDir": {}},
            {"name": "targets", "emptyDir": {}},
        ],
        service_account=n.prometheus_rbac(s.cluster),
        run_as_user=65534,  # "nobody": Prometheus needs no user of its image (prom/prometheus's own)
    )


def prometheus_service(s: ObjectSettings) -> Obj:
    """Scoped to this cluster (the original selected every cluster's Prometheus)."""
    return _service(n.metrics(s.cluster), s, "metrics", "metric", n.PROMETHEUS_PORT, n.PROMETHEUS_PORT)


# --- sets and patches ---------------------------------------------------------------------------


def rpc_keys_secret(s: ObjectSettings, keys: RpcKeys) -> Obj:
    """The cluster's RPC keys: ``frontend`` (server secret) for the query frontends, ``replica``
    (client secret) for the model containers; each pod references only its own part."""
    parts = {"frontend": keys.for_frontend().to_json(), "replica": keys.for_replica().to_json()}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(n.rpc_keys(s.cluster), s, "query-frontend"),
        "type": "Opaque",
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in parts.items()},
    }


def admin_token_secret(s: ObjectSettings, token: str) -> Obj:
    """The management API's bearer token; the frontend reads it from ``CLIPPER_ADMIN_TOKEN``."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(n.admin_token(s.cluster), s, "mgmt-frontend"),
        "type": "Opaque",
        "data": {"token": base64.b64encode(token.encode()).decode()},  # what connect() reads back
    }
