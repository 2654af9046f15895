"""``KubernetesContainerManager``: Clipper on Kubernetes with current API versions and server-side apply.

Behaviour follows the original's KubernetesContainerManager where it was sound; deliberate differences:

* apps/v1, rbac/v1 and core/v1 only; every object is built by ``objects.py`` and sent with
  server-side apply (field manager ``clipper``), so ``start_clipper``/``deploy_model`` are idempotent
  and re-running them converges an existing cluster. Scaling patches ``spec.replicas`` only.
* No ``kubectl proxy`` requirement: a service is reached through its LoadBalancer, through a node
  port when a node address is usable, or through a port-forward the manager opens itself; in a pod
  using the in-cluster configuration (the controller), by its ClusterIP.
  ``kubernetes_proxy_addr`` still works as in the original (API server and service-proxy addresses).
* Prometheus gets a namespaced Role (not a ClusterRole) and its Service selects only this cluster;
  its targets come from a sidecar's file, not ``kubernetes_sd`` (``prometheus_targets.py``);
  ``get_logs`` collects only this cluster's pods; scaling to 0 works.
* Redis and the RPC services default to ClusterIP (Redis has no authentication).
"""

from __future__ import annotations

import base64
import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import urllib3
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from clipper.rpc.auth import RpcKeys
from clipper_admin import image_builder, launch
from clipper_admin.admin_auth import OPT_OUT_WARNING, check_token, resolve_token
from clipper_admin.container_manager import ClusterAdapter, ContainerManager
from clipper_admin.exceptions import ClipperException
from clipper_admin.health import wait_for_frontends
from clipper_admin.launch import Limits, Timeouts
from clipper_admin.version import __registry__, __version__

from . import images, objects
from . import names as n
from .api import KubeApi
from .port_forward import PortForwarder
from .settings import ObjectSettings, determine_resources, determine_service_types

logger = logging.getLogger(__name__)

#: The project's Prometheus (images/prometheus, built offline). It has no Kubernetes service
#: discovery: a sidecar keeps its targets in a file (``prometheus_targets.py``).
DEFAULT_PROMETHEUS_IMAGE = f"{__registry__}/prometheus:{__version__}"
ACCESS_MODES = ("auto", "service", "port-forward", "proxy", "cluster-ip")

# role -> (Service name function, service port, service_types key)
ROLES: dict[str, tuple[Any, int, str]] = {
    "management": (n.mgmt, n.MGMT_PORT, "management"),
    "query": (n.query, n.QUERY_PORT, "query"),
    "metric": (n.metrics, n.PROMETHEUS_PORT, "metric"),
}


def get_model_deployment_name(name: str, version: str, query_frontend_id: int, cluster_name: str) -> str:
    """Module-level helper of the original."""
    return n.model_deployment(name, version, query_frontend_id, cluster_name)


def _api_error(action: str, e: Exception) -> ClipperException:
    if isinstance(e, ApiException):
        return ClipperException(f"{action}. Reason: {e.status} {e.reason}: {e.body}")
    return ClipperException(f"{action}. Reason: {e}")


def _rpc_auth_none(deployment: dict[str, Any]) -> bool:
    """Whether a query frontend Deployment runs with ``--rpc-auth none``."""
    for c in deployment.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
        args = c.get("args") or []
        if any(a == "--rpc-auth" and b == "none" for a, b in zip(args, args[1:], strict=False)):
            return True
    return False


class KubernetesContainerManager(image_builder.DockerImageModels, ContainerManager):
    #: ``start_clipper`` returns once both frontends answer through the addresses clients use.
    waits_for_frontends = True

    def __init__(
        self,
        cluster_name: str = "default-cluster",
        kubernetes_proxy_addr: str | None = None,
        redis_ip: str | None = None,
        redis_port: int = 6379,
        useInternalIP: bool = False,
        namespace: str = "default",
        service_types: Mapping[str, str] | None = None,
        create_namespace_if_not_exists: bool = False,
        *,
        kubeconfig: str | None = None,
        context: str | None = None,
        api_client: k8s_client.ApiClient | None = None,
        registry: str | None = None,
        local_cluster: bool | None = None,
        access: str = "auto",
        resources: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None,
        redis_image: str | None = None,
        redis_storage: str | None = "1Gi",
        redis_storage_class: str | None = None,
        prometheus_image: str | None = DEFAULT_PROMETHEUS_IMAGE,
        admin_token: str | bool | None = None,
        wait_timeout_s: float = 600.0,
        poll_interval_s: float = 1.0,
        allow_unauthenticated_replicas: bool = False,
        timeouts: Timeouts | None = None,
        limits: Limits | None = None,
        api: KubeApi | None = None,
        image_loader: str | None = None,
    ):
        """The original's arguments, then keyword-only extras.

        * ``kubeconfig``/``context`` select the cluster (default: ``$KUBECONFIG`` or ``~/.kube/config``,
          its current context; in a pod, the in-cluster configuration). ``kubernetes_proxy_addr``
          (``host:port`` of ``kubectl proxy``) or ``api_client`` replace them.
        * ``registry``: where model images are pushed; nodes must be able to pull from it. Without
          it only local clusters (kind, k3d, minikube, docker-desktop...) can run locally built images.
        * ``access``: ``auto`` (in a pod on the in-cluster configuration: the Services' ClusterIPs;
          elsewhere LoadBalancer, then node port, then port-forward), ``service`` (never
          port-forward), ``port-forward`` (always), ``proxy`` (the API server's service proxy),
          ``cluster-ip`` (always the ClusterIP: from a pod or a machine routed into the cluster).
        * ``resources``: per role (``redis``, ``management``, ``query``, ``model``, ``metrics``)
          ``{"requests": {...}, "limits": {...}}``.
        * ``prometheus_image``: default ``<CLIPPER_REGISTRY or clipper>/prometheus:<version>``
          (images/build.sh); any Prometheus image works, the pod's sidecar (the management frontend's
          image) writes its scrape targets to a file. ``None`` runs no Prometheus.
        * ``admin_token``: the bearer token the management API requires. By default
          ``start_clipper()`` generates one and keeps it in a Secret the management frontend reads
          through ``valueFrom.secretKeyRef``; ``connect()`` reads it from that Secret. ``False``:
          no token (REST clients of the original; a warning says so).
        * ``allow_unauthenticated_replicas``: by default only the model pods this manager starts may
          register with the query frontends: ``start_clipper()`` keeps CURVE keys in a Secret
          (``rpc-keys-at-<cluster>``, generated once) whose ``frontend`` part the query frontends and
          whose ``replica`` part the model pods read through ``valueFrom.secretKeyRef``. ``True``:
          any pod reaching the RPC service may register (original-protocol containers).
        * ``wait_timeout_s``: seconds to wait for the frontends and for model replicas (both parts of
          ``timeouts``, which wins when given: ``Timeouts(frontend_start_s, replica_connect_s)``).
        * ``limits``: query frontend limits (``clipper_admin.launch.Limits``).
        * ``api``: the API facade to use (``KubeApi`` or an object with its methods, e.g. an
          in-memory one in tests); ``api_client``: the official client's ``ApiClient`` to build it on.
        * ``image_loader``: how locally built model images reach the nodes without a registry:
          ``"containerd:<socket>"`` imports them into the containerd serving the nodes' CRI (a
          cluster whose kubelet runs on this machine). Default: ``$CLIPPER_K8S_IMAGE_LOADER``.

        Constructing a manager talks to no API: the configuration is loaded, and the namespace
        checked, on first use.
        """
        if access not in ACCESS_MODES:
            raise ClipperException(f"access must be one of {list(ACCESS_MODES)}, got {access!r}")
        self.cluster_name = cluster_name
        self.namespace = namespace
        # [quirk kept] The original's inverted rule; image tags depend on it.
        self.cluster_identifier = f"default-{cluster_name}" if namespace == "default" else cluster_name
        self.logger = ClusterAdapter(logger, {"cluster_name": self.cluster_identifier})
        self.kubernetes_proxy_addr = kubernetes_proxy_addr
        self.use_k8s_proxy = kubernetes_proxy_addr is not None
        self.redis_ip = redis_ip
        self.redis_port = redis_port
        self.external_redis = redis_ip is not None
        self.useInternalIP = useInternalIP
        self.registry = registry or None  # "" (an unset ${REGISTRY:-}) means none
        self.access = "proxy" if access == "auto" and self.use_k8s_proxy else access
        if admin_token is not None and admin_token is not False:
            check_token(admin_token)
        self._admin_token_arg = admin_token
        self.admin_token = admin_token if isinstance(admin_token, str) else None  # checked above
        self.timeouts = timeouts or Timeouts(wait_timeout_s, wait_timeout_s)
        self.limits = limits or Limits()
        self.poll_interval_s = poll_interval_s
        self.allow_unauthenticated_replicas = bool(allow_unauthenticated_replicas)
        self.redis_image = redis_image or f"{__registry__}/redis:{__version__}"
        self.prometheus_image = prometheus_image
        self.service_types = determine_service_types(service_types)
        self.settings = ObjectSettings(
            cluster=cluster_name,
            namespace=namespace,
            service_types=self.service_types,
            resources=determine_resources(resources),
            redis_port=redis_port,
            redis_storage=redis_storage,
            redis_storage_class=redis_storage_class,
        )
        self.num_frontend_replicas = 1
        self._forwarders: dict[str, PortForwarder] = {}
        self._addresses: dict[str, str] = {}
        self.context = context
        self._kubeconfig = kubeconfig
        self._api_client = api_client
        self._api = api
        self._core: k8s_client.CoreV1Api | None = None
        #: the configuration came from the pod's service account (``load_incluster_config``)
        self.in_cluster = False
        self._image_loader = images.image_loader(image_loader)
        self._local_cluster = True if self._image_loader and local_cluster is None else local_cluster
        self._create_namespace = create_namespace_if_not_exists
        self._namespace_checked = False
        self._namespace_missing = False
        #: how readiness is checked at the clients' addresses (tests without frontends replace it)
        self._wait_for_frontends: Callable[[str, str, dict[str, str], float], None] = wait_for_frontends

    # --- configuration (loaded on first use) -----------------------------------------------------

    @property
    def api_client(self) -> k8s_client.ApiClient:
        if self._api_client is None:
            self._api_client = self._load_config(self.kubernetes_proxy_addr, self._kubeconfig, self.context)
        return self._api_client

    @property
    def api(self) -> KubeApi:
        """The API facade; the first use checks the namespace (an error unless it may be created)."""
        if self._api is None:
            self._api = KubeApi(self.api_client)
        if not self._namespace_checked:
            self._namespace_checked = True  # _ensure_namespace uses self.api
            try:
                self._ensure_namespace(self._create_namespace)
            except BaseException:
                self._namespace_checked = False
                raise
        return self._api

    @property
    def core(self) -> k8s_client.CoreV1Api:
        if self._core is None:
            self._core = k8s_client.CoreV1Api(self.api_client)
        return self._core

    @property
    def local_cluster(self) -> bool:
        if self._local_cluster is None:
            if self._api_client is None and self._api is None:
                _ = self.api_client  # resolves the current context
            self._local_cluster = images.is_local_context(self.context)
        return self._local_cluster

    @property
    def wait_timeout_s(self) -> float:
        return self.timeouts.frontend_start_s

    @wait_timeout_s.setter
    def wait_timeout_s(self, seconds: float) -> None:
        self.timeouts = Timeouts(seconds, seconds)

    def _load_config(
        self, proxy_addr: str | None, kubeconfig: str | None, context: str | None
    ) -> k8s_client.ApiClient:
        cfg = k8s_client.Configuration()
        if proxy_addr is not None:
            cfg.host = proxy_addr if "://" in proxy_addr else f"http://{proxy_addr}"
            return k8s_client.ApiClient(cfg)
        try:
            k8s_config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=cfg)
            if self.context is None:
                _, active = k8s_config.list_kube_config_contexts(config_file=kubeconfig)
                self.context = active["name"] if active else None
        except (ConfigException, OSError) as kube_error:
            if kubeconfig or context or "KUBERNETES_SERVICE_HOST" not in os.environ:
                raise ClipperException(
                    f"No usable Kubernetes configuration: {kube_error}. Pass kubeconfig=/context=, "
                    "kubernetes_proxy_addr=, or set KUBECONFIG."
                ) from None
            k8s_config.load_incluster_config(client_configuration=cfg)
            self.in_cluster = True
        return k8s_client.ApiClient(cfg)

    def _call(self, action: str, fn, *args, **kwargs):
        """Run an API call, turning transport and API errors into ``ClipperException``."""
        try:
            return fn(*args, **kwargs)
        except ApiException as e:
            raise _api_error(action, e) from e
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise ClipperException(
                f"{action}. Reason: the Kubernetes API at {self._api_host()} is unreachable: {e}"
            ) from e

    def _api_host(self) -> str:
        client = self._api_client or getattr(self._api, "api_client", None)
        return getattr(getattr(client, "configuration", None), "host", None) or "(unknown address)"

    def _ensure_namespace(self, create: bool) -> None:
        """A missing namespace is an error at once, as in the original -- unless it may be created;
        then it is created by ``start_clipper``, not here: constructing a manager (``clipper diff``,
        ``connect()``) never writes to the cluster."""
        self._namespace_missing = not self._call(
            "Error connecting to Kubernetes cluster", self.api.get, "Namespace", self.namespace
        )
        if self._namespace_missing and not create:
            raise ClipperException(
                f"Error connecting to Kubernetes cluster. Namespace {self.namespace!r} does not exist. You can pass in "
                "KubernetesContainerManager(create_namespace_if_not_exists=True) to create this namespace"
            )

    def _create_namespace_if_missing(self) -> None:
        _ = self.api  # checks the namespace
        if self._namespace_missing:
            self._call(
                "Could not create Kubernetes namespace", self.api.apply, objects.namespace(self.namespace)
            )
            self._namespace_missing = False
            self.logger.info("Created namespace %s", self.namespace)

    def _apply(self, *objs: dict[str, Any]) -> None:
        for obj in objs:
            what = f"Could not apply {obj['kind']} {obj['metadata']['name']}"
            self._call(what, self.api.apply, obj)

    # --- waiting ---------------------------------------------------------------------------------

    def _wait_available(
        self, deployments: list[str], replicas: int | None, message: str, timeout: float | None = None
    ) -> None:
        """Wait until every deployment has ``replicas`` (default: its desired count) available,
        at most ``timeout`` seconds (default: the frontends' start timeout)."""
        timeout = self.timeouts.frontend_start_s if timeout is None else timeout
        deadline = time.monotonic() + timeout
        pending = list(deployments)
        while pending:
            dep = self._call(message, self.api.get, "Deployment", pending[0], self.namespace)
            if dep is None:
                raise ClipperException(f"{message}: Deployment {pending[0]} disappeared")
            want = replicas if replicas is not None else dep["spec"].get("replicas", 1)
            status = dep.get("status") or {}
            available = status.get("availableReplicas") or 0
            current = status.get("replicas") or 0
            if (
                available == want
                and current == want
                and status.get("observedGeneration", 0) >= dep["metadata"].get("generation", 0)
            ):
                pending.pop(0)
                continue
            if time.monotonic() > deadline:
                raise ClipperException(
                    f"{message} (Deployment {pending[0]}: {available}/{want} available after {timeout:.0f} s)"
                )
            time.sleep(self.poll_interval_s)

    # --- lifecycle -------------------------------------------------------------------------------

    def start_clipper(
        self,
        query_frontend_image,
        mgmt_frontend_image,
        frontend_exporter_image=None,
        cache_size=33554432,
        qf_http_thread_pool_size=1,
        qf_http_timeout_request=5,
        qf_http_timeout_content=300,
        num_frontend_replicas=1,
    ):
        """Create or converge the cluster. ``frontend_exporter_image`` is unused: the query frontend
        serves Prometheus text itself."""
        self._create_namespace_if_missing()
        s = self.settings
        if self.prometheus_image:
            self._apply(
                objects.prometheus_service_account(s),
                objects.prometheus_role(s),
                objects.prometheus_role_binding(s),
            )
        if not self.external_redis:
            if s.redis_storage:
                self._apply(objects.redis_pvc(s))
            self._apply(objects.redis_deployment(s, self.redis_image), objects.redis_service(s))
            self._wait_available(
                [n.redis(s.cluster)], 1, f"Could not create a Kubernetes deployment: {n.redis(s.cluster)}"
            )
            self.redis_ip, self.redis_port = n.redis(s.cluster), s.redis_port
        redis_ip = self.redis_ip
        assert redis_ip is not None  # given, or the cluster's own Redis (above)
        # a re-applied start_clipper keeps the cluster's token (clients hold it)
        existing = (
            self._admin_secret("Could not read the admin token") if self._admin_token_arg is None else None
        )
        self.admin_token = existing or resolve_token(self._admin_token_arg)
        if self.admin_token:
            self._apply(objects.admin_token_secret(s, self.admin_token))
        else:
            self.logger.warning(
                OPT_OUT_WARNING.format(cluster=self.cluster_name, addr="the management service")
            )
        self._apply(
            objects.mgmt_deployment(
                s,
                mgmt_frontend_image,
                redis_ip,
                self.redis_port,
                n.admin_token(s.cluster) if self.admin_token else None,
            ),
            objects.mgmt_service(s),
        )
        self.num_frontend_replicas = int(num_frontend_replicas)
        query_deployments = []
        if not self.allow_unauthenticated_replicas:
            self._ensure_rpc_keys()
        for i in range(self.num_frontend_replicas):
            dep = objects.query_deployment(
                s,
                i,
                query_frontend_image,
                redis_ip,
                self.redis_port,
                cache_size,
                qf_http_thread_pool_size,
                qf_http_timeout_request,
                qf_http_timeout_content,
                self._rpc_keys_secret(),
                self.limits,
            )
            self._apply(dep, objects.query_rpc_service(s, i))
            query_deployments.append(dep["metadata"]["name"])
        self._apply(objects.query_service(s))
        self._remove_extra_frontends()
        if self.prometheus_image:
            self._apply(
                objects.prometheus_configmap(s),
                objects.prometheus_deployment(s, self.prometheus_image, mgmt_frontend_image),
                objects.prometheus_service(s),
            )
        # one wait, one deadline: the Deployments available, then both frontends answering through
        # the addresses clients use (ClipperConnection.start_clipper does not wait again)
        deadline = time.monotonic() + self.timeouts.frontend_start_s
        self._wait_available(
            [n.mgmt(s.cluster), *query_deployments], None, "Clipper frontends did not become available"
        )
        self.connect()
        headers = {"Authorization": f"Bearer {self.admin_token}"} if self.admin_token else {}
        self._wait_for_frontends(
            self.get_query_addr(), self.get_admin_addr(), headers, max(1.0, deadline - time.monotonic())
        )

    def _remove_extra_frontends(self) -> None:
        """Delete query frontends (and their models' deployments) with an id >= the wanted count."""
        sel = n.cluster_selector(self.cluster_name)
        for kind, role in (
            ("Deployment", "query-frontend"),
            ("Service", "query-frontend"),
            ("Deployment", "model"),
        ):
            for obj in self._call("Could not list frontends", self.api.list, kind, self.namespace, sel):
                labels = obj["metadata"].get("labels", {})
                qf_id = labels.get(n.QUERY_FRONTEND_ID_LABEL)
                if (
                    labels.get(n.NAME_LABEL) == role
                    and qf_id is not None
                    and int(qf_id) >= self.num_frontend_replicas
                ):
                    self._call(
                        "Could not delete", self.api.delete, kind, obj["metadata"]["name"], self.namespace
                    )

    def connect(self):
        s = self.settings
        action = "Could not connect to Clipper Kubernetes cluster"
        if self._call(action, self.api.get, "Service", n.mgmt(s.cluster), self.namespace) is None:
            raise ClipperException(
                f"{action}. Reason: no Clipper cluster named {s.cluster!r} in namespace "
                f"{self.namespace!r} (Service {n.mgmt(s.cluster)} not found). Start it with start_clipper()."
            )
        frontends = self._call(
            action,
            self.api.list,
            "Deployment",
            self.namespace,
            n.cluster_selector(s.cluster, **{n.NAME_LABEL: "query-frontend"}),
        )
        self.num_frontend_replicas = max(1, len(frontends))
        if frontends:  # the cluster's choice, whatever this manager was constructed with
            self.allow_unauthenticated_replicas = any(_rpc_auth_none(d) for d in frontends)
        if not self.external_redis:
            self.redis_ip, self.redis_port = n.redis(s.cluster), s.redis_port
        if not isinstance(self._admin_token_arg, str):
            self.admin_token = self._admin_secret(action)
        self._addresses.clear()
        self.get_admin_addr()
        self.get_query_addr()

    # --- running settings ------------------------------------------------------------------------

    #: ``ClusterSpec`` fields a running Kubernetes cluster can change in place: none yet (a change of a
    #: reported setting is refused with its reason; see ``running_settings``).
    RECONFIGURABLE: frozenset[str] = frozenset()

    def running_settings(self) -> dict[str, Any]:
        """The settings the running cluster runs with, keyed by ``ClusterSpec`` field (Python names;
        dotted for nested settings): the query frontend Deployments (how many, their arguments), the
        management frontend's store and token (the admin-token Secret, when its environment reads
        one) and the management/query Services' types. Call after :meth:`connect`."""
        s = self.settings
        action = "Could not read the running cluster's settings"

        def frontends(role: str) -> list[dict[str, Any]]:
            found: list[dict[str, Any]] = self._call(
                action, self.api.list, "Deployment", self.namespace,
                n.cluster_selector(s.cluster, **{n.NAME_LABEL: role}),
            )  # fmt: skip
            return found

        def container(dep: dict[str, Any]) -> dict[str, Any]:
            first: dict[str, Any] = dep["spec"]["template"]["spec"]["containers"][0]
            return first

        query = [container(d) for d in frontends("query-frontend")]
        mgmt = [container(d) for d in frontends("mgmt-frontend")]
        env = {e["name"] for c in mgmt for e in c.get("env") or []}
        token = self._admin_secret(action) if launch.ADMIN_TOKEN_ENV in env else None
        settings: dict[str, Any] = {
            "backend": "kubernetes",
            "frontend_replicas": len(query),
            "admin_auth": "token" if token else "none",
            "admin_token": token,
            "allow_unauthenticated_replicas": any(
                launch.flag_value(c.get("args") or [], launch.RPC_AUTH_FLAG) == "none" for c in query
            ),
        }
        caches = {launch.flag_value(c.get("args") or [], launch.CACHE_SIZE_FLAG) for c in query} - {None}
        if len(caches) == 1:
            settings["cache_size_bytes"] = int(caches.pop() or 0)
        elif caches:  # frontends started with different sizes: matches no manifest
            settings["cache_size_bytes"] = sorted(int(c or 0) for c in caches)
        store = next((launch.flag_value(c.get("args") or [], launch.STORE_FLAG) for c in mgmt), None)
        if store is not None:
            host, _, port = store.removeprefix("redis://").rpartition(":")
            settings["redis.host"] = None if host == n.redis(s.cluster) else host
            settings["redis.port"] = int(port)
        # the schema's and this manager's defaults agree for these two (see settings.py)
        for key, role in (("management", "management"), ("query", "query")):
            svc = self._call(action, self.api.get, "Service", ROLES[role][0](s.cluster), self.namespace)
            if svc is not None:
                settings[f"kubernetes.service_types.{key}"] = svc["spec"].get("type", "ClusterIP")
        return settings

    # --- addresses -------------------------------------------------------------------------------

    def _node_hosts(self) -> list[str]:
        nodes = self._call("Could not list nodes", self.api.list, "Node")
        hosts = [
            a["address"]
            for node in nodes
            for a in node.get("status", {}).get("addresses", [])
            if a["type"] in ("ExternalDNS", "ExternalIP")
        ]
        if not hosts and self.useInternalIP:
            hosts = [
                a["address"]
                for node in nodes
                for a in node.get("status", {}).get("addresses", [])
                if a["type"] == "InternalIP"
            ]
        return hosts

    def _address(self, role: str) -> str:
        if role in self._addresses:
            return self._addresses[role]
        service_name_fn, port, key = ROLES[role]
        service = service_name_fn(self.cluster_name)
        addr: str | None
        if self.access == "proxy":
            addr = f"{self.kubernetes_proxy_addr}/api/v1/namespaces/{self.namespace}/services/{service}:{port}/proxy"
            self._addresses[role] = addr
            return addr
        svc = self._call(
            f"Could not read Service {service}", self.api.get, "Service", service, self.namespace
        )
        if svc is None:
            raise ClipperException(
                f"Service {service} not found in namespace {self.namespace}: is the Clipper cluster "
                f"{self.cluster_name!r} running" + (" with Prometheus" if role == "metric" else "") + "?"
            )
        if self.access == "cluster-ip" or (self.access == "auto" and self.in_cluster):
            addr = self._cluster_ip_address(svc)
            if addr is not None:
                self._addresses[role] = addr
                return addr
            if self.access == "cluster-ip":
                raise ClipperException(
                    f"Service {service} has no ClusterIP ({svc['spec'].get('clusterIP')!r}): "
                    "access='cluster-ip' needs one; use access='auto'"
                )
        addr = None if self.access == "port-forward" else self._service_address(svc)
        if addr is None:
            if self.access == "service":
                raise ClipperException(
                    f"Service {service} ({svc['spec'].get('type')}) is not reachable from outside the "
                    "cluster: use a NodePort/LoadBalancer service type, useInternalIP=True, or access='auto'"
                )
            addr = self._port_forward(role, svc)
        self._addresses[role] = addr
        return addr

    @staticmethod
    def _cluster_ip_address(svc: dict[str, Any]) -> str | None:
        """``<ClusterIP>:<port>``, reachable from any pod; ``None`` for a headless Service."""
        ip = svc["spec"].get("clusterIP")
        if not ip or ip == "None":
            return None
        host = f"[{ip}]" if ":" in ip else ip
        return f"{host}:{svc['spec']['ports'][0]['port']}"

    def _service_address(self, svc: dict[str, Any]) -> str | None:
        spec = svc["spec"]
        port = spec["ports"][0]
        if spec.get("type") == "LoadBalancer":
            ingress = (svc.get("status", {}).get("loadBalancer", {}).get("ingress") or [{}])[0]
            host = ingress.get("ip") or ingress.get("hostname")
            if host:
                return f"{host}:{port['port']}"
        if spec.get("type") in ("NodePort", "LoadBalancer") and port.get("nodePort"):
            hosts = self._node_hosts()
            if hosts:
                return f"{hosts[0]}:{port['nodePort']}"
        return None

    def _port_forward(self, role: str, svc: dict[str, Any]) -> str:
        selector = n.selector(**svc["spec"]["selector"])
        target = svc["spec"]["ports"][0]["targetPort"]

        def pick_pod() -> str:
            pods = self.api.list("Pod", self.namespace, selector)
            for pod in pods:
                conds = pod.get("status", {}).get("conditions", [])
                if pod.get("status", {}).get("phase") == "Running" and any(
                    c["type"] == "Ready" and c["status"] == "True" for c in conds
                ):
                    name: str = pod["metadata"]["name"]
                    return name
            raise ClipperException(f"no ready pod behind Service {svc['metadata']['name']}")

        old = self._forwarders.pop(role, None)
        if old:
            old.close()
        fwd = PortForwarder(self.core, self.namespace, pick_pod, int(target))
        self._forwarders[role] = fwd
        self.logger.info("Forwarding %s to Service %s through %s", fwd.address, svc["metadata"]["name"], role)
        return fwd.address

    def get_admin_addr(self) -> str:
        return self._address("management")

    def get_query_addr(self) -> str:
        return self._address("query")

    def get_metric_addr(self) -> str:
        if not self.prometheus_image:
            raise ClipperException("This cluster was configured without Prometheus (prometheus_image=None)")
        return self._address("metric")

    def close(self) -> None:
        """Stop the port-forwards this manager opened."""
        for fwd in self._forwarders.values():
            fwd.close()
        self._forwarders.clear()
        self._addresses.clear()

    # --- models ----------------------------------------------------------------------------------

    def _check_pullable(self, image: str) -> None:
        if self.registry or self.local_cluster or images.has_registry_host(image):
            return
        if image.startswith(f"{self.cluster_identifier}-"):
            raise ClipperException(
                f"Image {image} was built locally and the cluster (context {self.context or 'unknown'}) "
                "cannot pull it: no registry is configured. Pass KubernetesContainerManager("
                "registry='<registry host>/<path>') (or `registry:` in the Cluster manifest) so model "
                "images are pushed where the nodes can pull them, or local_cluster=True for a cluster "
                "that shares this machine's images."
            )

    def _rpc_keys_secret(self) -> str | None:
        return None if self.allow_unauthenticated_replicas else n.rpc_keys(self.settings.cluster)

    def _ensure_rpc_keys(self) -> None:
        """Generate the cluster's RPC keys once: running replicas hold them, a re-apply keeps them."""
        name = n.rpc_keys(self.settings.cluster)
        if self._call("Could not read the RPC keys", self.api.get, "Secret", name, self.namespace) is None:
            self._apply(objects.rpc_keys_secret(self.settings, RpcKeys.generate()))

    def _admin_secret(self, action: str) -> str | None:
        """The token in the cluster's admin-token Secret, if there is one."""
        name = n.admin_token(self.settings.cluster)
        secret = self._call(action, self.api.get, "Secret", name, self.namespace)
        if secret and "token" in (secret.get("data") or {}):
            return base64.b64decode(secret["data"]["token"]).decode() or None
        return None

    def _check_built_here(self, name: str, version: str, image: str) -> None:
        """``set_num_replicas`` gets the image the management API recorded, which others may reach:
        a new Deployment starts only from the tag ``build_model`` gives this cluster's model version
        (in this manager's registry). ``deploy_model`` starts any image the caller chooses."""
        repo = f"{self.cluster_identifier}-{name}:{version}"
        if image not in {repo, f"{self.registry}/{repo}" if self.registry else repo}:
            raise ClipperException(
                f"Refusing to start image {image!r} from the model's registration: this cluster builds "
                f"{name}:{version} as {repo!r}{f' in {self.registry}' if self.registry else ''}. Start a "
                "prebuilt image explicitly with ClipperConnection.deploy_model(..., image=...)."
            )

    def build_model(
        self, name, version, model_data_path, base_image, container_registry=None, pkgs_to_install=None
    ):
        registry = container_registry or self.registry
        if registry is None and not self.local_cluster:
            raise ClipperException(
                "Cannot build a model image for this Kubernetes cluster without a registry: its nodes "
                "could not pull it. Pass container_registry=..., KubernetesContainerManager(registry=...), "
                "or local_cluster=True for kind/minikube/k3d/docker-desktop."
            )
        tag = self.build_model_image(name, version, model_data_path, base_image, registry, pkgs_to_install)
        if registry is not None:
            image_builder.push_image(image_builder.docker_client(), tag)
        elif self._image_loader:
            images.load_into_containerd(tag, self._image_loader)
        elif self.context:
            images.side_load(tag, self.context)
        return tag

    def _model_deployments(self, name: str, version: str) -> list[str]:
        return [
            n.model_deployment(name, version, i, self.cluster_name) for i in range(self.num_frontend_replicas)
        ]

    def deploy_model(self, name, version, input_type, image, num_replicas=1):
        version = str(version)
        self._check_pullable(image)
        for i in range(self.num_frontend_replicas):
            self._apply(
                objects.model_deployment(
                    self.settings,
                    name,
                    version,
                    i,
                    input_type,
                    image,
                    int(num_replicas),
                    self._rpc_keys_secret(),
                )
            )
        self._wait_available(
            self._model_deployments(name, version),
            int(num_replicas),
            f"Could not create a Kubernetes deployment. Model: {name}-{version} Image: {image}",
            self.timeouts.replica_connect_s,
        )

    def get_num_replicas(self, name, version) -> int:
        """Desired replicas of the model's frontend-0 Deployment (0 when it does not exist)."""
        dep = n.model_deployment(name, str(version), 0, self.cluster_name)
        scale = self._call(f"Could not read the scale of {dep}", self.api.get_scale, dep, self.namespace)
        return 0 if scale is None else int(scale["spec"].get("replicas", 0))

    def set_num_replicas(self, name, version, input_type, image, num_replicas):
        version = str(version)
        for i in range(self.num_frontend_replicas):
            dep = n.model_deployment(name, version, i, self.cluster_name)
            if self._call(f"Could not read {dep}", self.api.get_scale, dep, self.namespace) is None:
                self._check_built_here(name, version, image)
                self._check_pullable(image)
                self._apply(
                    objects.model_deployment(
                        self.settings,
                        name,
                        version,
                        i,
                        input_type,
                        image,
                        int(num_replicas),
                        self._rpc_keys_secret(),
                    )
                )
            else:
                self._call(
                    f"Could not scale {dep}", self.api.patch_scale, dep, self.namespace, int(num_replicas)
                )
        self._wait_available(
            self._model_deployments(name, version),
            int(num_replicas),
            f"Could not update scale of the specified Deployment. Model: {name}-{version}",
            self.timeouts.replica_connect_s,
        )

    def stop_models(self, models):
        for name, versions in models.items():
            for version in versions:
                sel = n.cluster_selector(
                    self.cluster_name, **{n.MODEL_LABEL: n.model_container_label(name, str(version))}
                )
                self._call(
                    f"Could not stop model {name}:{version}",
                    self.api.delete_selected,
                    "Deployment",
                    self.namespace,
                    sel,
                )

    def stop_all_model_containers(self):
        sel = n.cluster_selector(self.cluster_name, **{n.MODEL_LABEL: None})
        self._call(
            "Could not stop model containers", self.api.delete_selected, "Deployment", self.namespace, sel
        )

    def stop_all(self, graceful=True):
        """Delete every object of this cluster (``graceful`` is ignored, as in the original)."""
        self.close()
        sel = n.cluster_selector(self.cluster_name)
        kinds = [
            "Deployment",
            "Service",
            "ConfigMap",
            "Secret",
            "RoleBinding",
            "Role",
            "ServiceAccount",
            "PersistentVolumeClaim",
        ]
        for kind in kinds:
            try:
                self.api.delete_selected(kind, self.namespace, sel)
            except (ApiException, urllib3.exceptions.HTTPError, OSError) as e:
                self.logger.warning(
                    "Could not delete %s objects of cluster %s: %s", kind, self.cluster_name, e
                )

    def get_logs(self, logging_dir):
        logging_dir = os.path.abspath(os.path.expanduser(logging_dir))
        os.makedirs(logging_dir, exist_ok=True)
        pods = self._call(
            "Could not list pods", self.api.list, "Pod", self.namespace, n.cluster_selector(self.cluster_name)
        )
        paths = []
        for pod in pods:
            pod_name = pod["metadata"]["name"]
            for container in pod["spec"]["containers"]:
                path = os.path.join(logging_dir, f"{pod_name}_{container['name']}.log")
                try:
                    text = self._call(
                        f"Could not read logs of {pod_name}",
                        self.api.pod_log,
                        pod_name,
                        self.namespace,
                        container["name"],
                    )
                except ClipperException as e:
                    # a pod still starting or already going away (scaled down, a version stopped)
                    # has no log to read: the others are still collected
                    self.logger.warning("Skipping the log of %s/%s: %s", pod_name, container["name"], e)
                    continue
                with open(path, "w") as f:
                    f.write(text)
                paths.append(path)
        return paths
