"""``DockerContainerManager``: a Clipper cluster as Docker containers (the original's constructor,
container names, labels and ports).

What differs from the original, on purpose:

* Redis is ``<registry>/redis:<version>`` (Debian's redis-server, append-only file on, data in a
  volume labelled with the cluster) instead of ``redis:alpine``; there is no frontend exporter,
  because the query frontend serves the Prometheus exposition itself; Prometheus starts only when
  its image (``<registry>/prometheus:<version>``, built by images/build.sh) exists. It scrapes the
  query frontend and every model replica (``CLIPPER_METRICS_PORT`` 1390, the original's port), found
  through a targets file this manager rewrites whenever replicas start or stop (``prometheus.py``).
* Ports are published on ``publish_host`` (127.0.0.1 unless told otherwise), and an external
  Redis is reached on ``redis_port`` (the original always said 6379).
* ``connect()`` on a missing cluster raises ``ClipperException`` naming it, not ``KeyError``.
* Stopped containers are removed (``stop_models``, scale-down and ``stop_all``), so ``docker ps -a``
  does not fill up; ``stop_all`` also removes the cluster's Redis volume and Prometheus config.
* Every wait has a timeout (``start_timeout``) and a failure quotes the container's last log lines.
* Centralised logging (fluentd) is not available: no fluentd image can be built offline.
* The replicas reach the query frontend on a Unix socket (no CURVE, no ZeroMQ: ``clipper.rpc.stream``,
  as on the local backend) in a tmpfs volume of the cluster (``clipper-<cluster>-rpc``) that only the
  frontend and the cluster's replicas mount; the frontend keeps the socket in a 0700 directory of its
  own there, so a replica uses it when its image runs as the frontend image's user, and the CURVE
  TCP port otherwise (and for replicas of clusters started by earlier releases).
* Docker's userland proxy (``docker-proxy``, on by default), which relays every connection to a port
  published on 127.0.0.1, halves the query frontend's throughput (bench/README.md): an engine run with
  ``"userland-proxy": false`` forwards published ports in the kernel instead (``.ci/docker.sh`` starts
  it so), and ``start_clipper`` warns when a ``docker-proxy`` relays its query port.
  ``query_frontend_host_network=True`` (Linux only) runs the query frontend on the host's network
  instead of publishing its ports, for engines whose configuration is not the user's to change.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import docker
import docker.errors
import requests

from clipper.rpc.auth import RPC_KEYS_ENV, RpcKeys

from .. import launch
from ..admin_auth import OPT_OUT_WARNING, check_token, resolve_token
from ..container_manager import (
    CLIPPER_DOCKER_LABEL,
    CLIPPER_DOCKER_PORT_LABELS,
    CLIPPER_INTERNAL_MANAGEMENT_PORT,
    CLIPPER_INTERNAL_METRIC_PORT,
    CLIPPER_INTERNAL_QUERY_PORT,
    CLIPPER_INTERNAL_REDIS_PORT,
    CLIPPER_INTERNAL_RPC_PORT,
    CLIPPER_METRIC_CONFIG_LABEL,
    CLIPPER_MGMT_FRONTEND_CONTAINER_LABEL,
    CLIPPER_MODEL_CONTAINER_LABEL,
    CLIPPER_QUERY_FRONTEND_CONTAINER_LABEL,
    ClusterAdapter,
    ContainerManager,
    create_model_container_label,
    parse_model_container_label,
)
from ..exceptions import ClipperException
from ..image_builder import DockerImageModels, push_image
from ..launch import FrontendSettings, Limits, ReplicaSettings, Timeouts
from ..version import __registry__, __version__
from . import prometheus
from .containers import healthy_if_checked, http_ok, redis_pong, run_container, wait_until
from .ports import find_unbound_port, userland_proxy_pids

logger = logging.getLogger(__name__)

#: Label on the cluster's Redis volume (containers carry CLIPPER_DOCKER_LABEL as in the original).
CLIPPER_VOLUME_LABEL = CLIPPER_DOCKER_LABEL
PROMETHEUS_INTERNAL_PORT = 9090
#: Where the cluster's RPC volume is mounted, and the query frontend's socket in it (in a directory
#: the frontend makes, mode 0700: the volume itself is sticky and world-writable, like /tmp).
RPC_VOLUME_MOUNT = "/run/clipper-rpc"
RPC_SOCKET_PATH = f"{RPC_VOLUME_MOUNT}/frontend/rpc.sock"
#: Logged when the engine relays the published query port through its userland proxy.
USERLAND_PROXY_WARNING = (
    "The Docker engine relays connections to the query port {addr} through its userland proxy "
    "(docker-proxy, pid {pids}), which spends about as much CPU per prediction as the query frontend: "
    "expect roughly 0.6x the throughput on a small machine. Run the engine with "
    '"userland-proxy": false in /etc/docker/daemon.json (then restart it; the kernel forwards published '
    "ports instead), or start the cluster with query_frontend_host_network=True (Linux). "
    "README: Docker backend."
)
_EXPLICIT_RUN_ARGS = ("name", "environment", "ports", "command", "labels", "volumes", "user", "log_config")

__all__ = ["DockerContainerManager", "find_unbound_port"]


def _rpc_keys_of(frontend) -> RpcKeys | None:
    """The cluster's RPC keys, from the query frontend container's environment (None: the cluster
    admits unauthenticated replicas)."""
    prefix = f"{RPC_KEYS_ENV}="
    for item in frontend.attrs.get("Config", {}).get("Env") or []:
        if item.startswith(prefix):
            return RpcKeys.from_json(item[len(prefix) :], f"{RPC_KEYS_ENV} of {frontend.name}")
    return None


def _image(name: str) -> str:
    return f"{__registry__}/{name}:{__version__}"


#: Seconds a container may take to become ready in start_clipper / deploy_model.
DEFAULT_TIMEOUTS = Timeouts(frontend_start_s=120.0, replica_connect_s=120.0)


class DockerContainerManager(DockerImageModels, ContainerManager):
    waits_for_frontends = True  # start_clipper polls /admin/ping and /metrics on the published ports

    def __init__(
        self,
        cluster_name="default-cluster",
        docker_ip_address="localhost",
        use_centralized_log=False,
        fluentd_port=24224,
        clipper_query_port=1337,
        clipper_management_port=1338,
        clipper_rpc_port=7000,
        redis_ip=None,
        redis_port=6379,
        prometheus_port=9090,
        docker_network="clipper_network",
        extra_container_kwargs=None,
        *,
        publish_host="127.0.0.1",
        redis_image=None,
        prometheus_image=None,
        admin_token=None,
        registry=None,
        allow_unauthenticated_replicas=False,
        timeouts: Timeouts | None = None,
        limits: Limits | None = None,
        query_frontend_host_network: bool = False,
        docker_client=None,
    ):
        """Parameters are the original's, in its order; the keyword-only ones are new.

        ``publish_host`` is the host address ports are published on; ``redis_image`` and
        ``prometheus_image`` default to ``<CLIPPER_REGISTRY or clipper>/{redis,prometheus}:<version>``;
        ``admin_token``: the bearer token the management frontend requires; by default
        ``start_clipper()`` generates one (``False``: no token, for REST clients of the original;
        a warning says so). It is passed in the frontend container's environment (readable only
        through the Docker API, i.e. by root and the docker group), and ``connect()`` reads it back
        from there when not given; ``registry`` is where
        ``build_model`` pushes model images when its ``container_registry`` is not given.
        ``allow_unauthenticated_replicas``: by default only the model containers this manager starts
        may register with the query frontend: ``start_clipper()`` generates CURVE keys, passed in the
        query frontend container's environment (``CLIPPER_RPC_KEYS``; like the admin token, readable
        through the Docker API only) and, the replica's part of them, in each model container's.
        ``True`` accepts any container that reaches the RPC port (original-protocol containers).
        ``timeouts``: how long containers may take to become ready (default 120 s each);
        ``limits``: query frontend limits (``clipper_admin.launch.Limits``).
        ``query_frontend_host_network`` (Linux only): the query frontend runs on the host's network
        (no published ports, no ``docker-proxy`` in the query path): its REST port listens on
        ``publish_host`` (every interface for ``"0.0.0.0"``), its RPC port on the gateway address of
        ``docker_network``, where the model containers reach it (as do other containers on this
        host); it reaches Redis through Redis' published port. Prometheus cannot scrape a REST port
        on 127.0.0.1 (it only sees the replicas then).
        ``docker_client``: a ``docker.DockerClient`` to use; by default one is made from the
        environment on first use (constructing the manager never talks to Docker).
        """
        if admin_token is not None and admin_token is not False:
            check_token(admin_token)
        self._admin_token_arg = admin_token
        self.admin_token = admin_token or None
        self.registry = registry
        self.allow_unauthenticated_replicas = bool(allow_unauthenticated_replicas)
        self.cluster_name = cluster_name
        self.cluster_identifier = cluster_name
        self.public_hostname = docker_ip_address
        self.clipper_query_port = clipper_query_port
        self.clipper_management_port = clipper_management_port
        self.clipper_rpc_port = clipper_rpc_port
        self.redis_ip = redis_ip
        self.external_redis = redis_ip is not None
        self.redis_port = redis_port
        self.prometheus_port = prometheus_port
        self.centralize_log = use_centralized_log
        self.fluentd_port = fluentd_port
        self.publish_host = publish_host
        self.redis_image = redis_image or _image("redis")
        self.prometheus_image = prometheus_image or _image("prometheus")
        self.prom_config_path: str | None = None
        self.logger = ClusterAdapter(logger, {"cluster_name": self.cluster_identifier})
        if docker_network == "host":
            raise ClipperException(
                'DockerContainerManager does not support running Clipper on the "host" docker network. '
                "Please pick a different network name"
            )
        if query_frontend_host_network and sys.platform != "linux":
            raise ClipperException(
                "query_frontend_host_network needs a Linux Docker engine on this host "
                f"(this is {sys.platform}: Docker Desktop's host network is its VM's, not this machine's)"
            )
        self.query_frontend_host_network = bool(query_frontend_host_network)
        if use_centralized_log:
            raise ClipperException(
                "Centralized logging (fluentd) is not available: its image cannot be built offline. "
                "Use get_logs() (docker logs) instead."
            )
        self.docker_network = docker_network
        self.timeouts = timeouts or DEFAULT_TIMEOUTS
        self.limits = limits or Limits()
        self._docker_client: docker.DockerClient | None = docker_client

        self.extra_container_kwargs = dict(extra_container_kwargs or {})
        self.common_labels = dict(self.extra_container_kwargs.pop("labels", None) or {})
        self.common_labels[CLIPPER_DOCKER_LABEL] = cluster_name
        clash = sorted(set(self.extra_container_kwargs) & set(_EXPLICIT_RUN_ARGS))
        if clash:
            raise ClipperException(
                f"extra_container_kwargs may not set {', '.join(clash)}: the manager sets them"
            )
        self.extra_container_kwargs.update({"network": docker_network, "detach": True})
        self.log_config = {"type": "json-file"}

    @property
    def docker_client(self) -> docker.DockerClient:
        """The Docker API client, connected on first use."""
        if self._docker_client is None:
            try:
                client = docker.from_env()
                client.ping()
            except docker.errors.DockerException as e:
                raise ClipperException(
                    f"Unable to Connect to Docker. Please Check if Docker is running. ({e})"
                ) from e
            self._docker_client = client
        return self._docker_client

    @docker_client.setter
    def docker_client(self, client: docker.DockerClient) -> None:
        self._docker_client = client

    # -- helpers -------------------------------------------------------------------------------
    def _run(
        self,
        image,
        name_prefix,
        *,
        command=None,
        ports=None,
        labels=None,
        environment=None,
        volumes=None,
        host_network=False,
    ):
        """Every container runs with a read-only root file system, a tmpfs on /tmp, and writable
        volumes (``extra_container_kwargs`` may override ``read_only``/``tmpfs``);
        ``host_network``: on the host's network instead of the cluster's."""
        kwargs = {
            "read_only": True,
            "tmpfs": {"/tmp": "rw,exec"},
            **self.extra_container_kwargs,
        }
        if host_network:
            del kwargs["network"]
            kwargs["network_mode"] = "host"
        return run_container(
            self.docker_client,
            image,
            name_prefix,
            command=command,
            ports=ports,
            labels={**self.common_labels, **(labels or {})},
            environment=environment,
            volumes=volumes,
            log_config=self.log_config,
            **kwargs,
        )

    def _publish(self, port: int) -> tuple[str, int]:
        return (self.publish_host, port)

    def _containers(self, *labels: str, all: bool = False):
        filters: dict[str, str | list[str] | bool] = {
            "label": [f"{CLIPPER_DOCKER_LABEL}={self.cluster_name}", *labels]
        }
        return self.docker_client.containers.list(all=all, filters=filters)

    def _host(self) -> str:
        return "127.0.0.1" if self.publish_host in ("0.0.0.0", "") else self.publish_host

    def _create_network(self) -> None:
        try:
            if not self.docker_client.networks.list(names=[self.docker_network]):
                self.docker_client.networks.create(self.docker_network, driver="bridge", check_duplicate=True)
        except docker.errors.APIError as e:
            self.logger.debug(f"{self.docker_network} network already exists ({e})")
        except (requests.ConnectionError, ConnectionError) as e:
            raise ClipperException("Unable to Connect to Docker. Please Check if Docker is running.") from e

    def _network_gateway(self) -> str:
        """The host's address on the cluster's network (where containers reach the host)."""
        try:
            network = self.docker_client.networks.get(self.docker_network)
        except docker.errors.DockerException as e:
            raise ClipperException(f"Cannot inspect Docker network {self.docker_network}: {e}") from e
        for config in (network.attrs.get("IPAM") or {}).get("Config") or []:
            gateway = (config or {}).get("Gateway")
            if gateway and ":" not in gateway:
                return str(gateway)
        raise ClipperException(
            f"Docker network {self.docker_network} has no IPv4 gateway: the model containers could not "
            "reach a query frontend on the host network (query_frontend_host_network)"
        )

    def _store_url(self) -> str:
        port = self.redis_port if self.external_redis else CLIPPER_INTERNAL_REDIS_PORT
        return f"redis://{self.redis_ip}:{port}"

    # -- lifecycle -----------------------------------------------------------------------------
    def start_clipper(
        self,
        query_frontend_image,
        mgmt_frontend_image,
        frontend_exporter_image,
        cache_size,
        qf_http_thread_pool_size,
        qf_http_timeout_request,
        qf_http_timeout_content,
        num_frontend_replicas=1,
    ):
        if num_frontend_replicas != 1:
            raise ClipperException(
                "Docker container manager's query frontend scale-out hasn't been implemented. "
                "Please set num_frontend_replicas=1 or use Kubernetes."
            )
        self._create_network()
        if self._containers():
            raise ClipperException(
                f"Cluster {self.cluster_name} cannot be started because it already exists. "
                "Please use ClipperConnection.connect() to connect to it."
            )
        try:
            self._start_redis()
            self._start_management_frontend(mgmt_frontend_image)
            query_target = self._start_query_frontend(
                query_frontend_image,
                cache_size,
                qf_http_thread_pool_size,
                qf_http_timeout_request,
                qf_http_timeout_content,
            )
            self._start_prometheus(query_target)
        except BaseException:
            self.logger.warning(f"Starting cluster {self.cluster_name} failed; removing its containers")
            self._remove_cluster(graceful=False)
            raise
        self.connect()

    def _start_redis(self) -> None:
        if self.external_redis:
            return
        self.redis_port = find_unbound_port(self.redis_port)
        volume = self.docker_client.volumes.create(
            name=f"clipper-{self.cluster_name}-redis", labels={CLIPPER_VOLUME_LABEL: self.cluster_name}
        )
        redis = self._run(
            self.redis_image,
            "redis",
            ports={f"{CLIPPER_INTERNAL_REDIS_PORT}/tcp": self._publish(self.redis_port)},
            labels={CLIPPER_DOCKER_PORT_LABELS["redis"]: str(self.redis_port)},
            volumes={volume.name: {"bind": "/data", "mode": "rw"}},
        )
        self.redis_ip = redis.name
        wait_until(redis, redis_pong(self._host(), self.redis_port), "Redis", self.start_timeout)

    def _start_management_frontend(self, image) -> None:
        self.clipper_management_port = find_unbound_port(self.clipper_management_port)
        self.admin_token = resolve_token(self._admin_token_arg)
        spec = launch.management_frontend(
            self._frontend_settings(admin_token="env" if self.admin_token else "none")
        )
        if not self.admin_token:
            addr = f"{self._host()}:{self.clipper_management_port}"
            self.logger.warning(OPT_OUT_WARNING.format(cluster=self.cluster_name, addr=addr))
        mgmt = self._run(
            image,
            "mgmt_frontend",
            command=list(spec.args),
            ports={f"{CLIPPER_INTERNAL_MANAGEMENT_PORT}/tcp": self._publish(self.clipper_management_port)},
            labels={
                CLIPPER_MGMT_FRONTEND_CONTAINER_LABEL: "",
                CLIPPER_DOCKER_PORT_LABELS["management"]: str(self.clipper_management_port),
            },
            environment=self._environment(spec, {"token": self.admin_token or ""}) or None,
        )
        headers = {"Authorization": f"Bearer {self.admin_token}"} if self.admin_token else None
        url = f"http://{self._host()}:{self.clipper_management_port}/admin/ping"
        wait_until(mgmt, http_ok(url, headers), "Management frontend", self.start_timeout)

    def _frontend_settings(self, **overrides) -> FrontendSettings:
        """The frontends' settings; by default ports are the containers' (published elsewhere),
        hosts the images' entry point's (0.0.0.0); ``overrides`` replace any of them."""
        settings: dict[str, Any] = {
            "store": self._store_url(),
            "management_port": CLIPPER_INTERNAL_MANAGEMENT_PORT,
            "query_port": CLIPPER_INTERNAL_QUERY_PORT,
            "rpc_port": CLIPPER_INTERNAL_RPC_PORT,
            "rpc_auth": "none" if self.allow_unauthenticated_replicas else "curve",
            "limits": self.limits,
        }
        return FrontendSettings(**{**settings, **overrides})

    @staticmethod
    def _environment(spec: launch.Launch, secrets: dict[str, str]) -> dict[str, str]:
        """The container environment of ``spec``: Docker passes secrets as values (readable through
        the Docker API only, i.e. by root and the docker group)."""
        return {**spec.env, **{var: secrets[key] for var, key in spec.secret_env.items()}}

    def _start_query_frontend(
        self, image, cache_size, thread_pool_size, timeout_request, timeout_content
    ) -> str:
        """Start the query frontend; returns its ``host:port`` as Prometheus scrapes it."""
        self.clipper_query_port = find_unbound_port(self.clipper_query_port)
        self.clipper_rpc_port = find_unbound_port(self.clipper_rpc_port)
        on_host: dict[str, Any] = {}
        if self.query_frontend_host_network:
            # the host's ports themselves; Redis through its published port (no container DNS here)
            store = self._store_url() if self.external_redis else f"redis://{self._host()}:{self.redis_port}"
            on_host = {
                "store": store,
                "host": self.publish_host or "0.0.0.0",
                "query_port": self.clipper_query_port,
                "rpc_host": self._network_gateway(),
                "rpc_port": self.clipper_rpc_port,
            }
        spec = launch.query_frontend(
            self._frontend_settings(
                cache_size_bytes=cache_size,
                thread_pool_size=thread_pool_size,
                timeout_request=timeout_request,
                timeout_content=timeout_content,
                rpc_socket=RPC_SOCKET_PATH,
                **on_host,
            )
        )
        # the cluster's RPC keys (the replicas' part is read back from here by _add_replica)
        keys = None if self.allow_unauthenticated_replicas else RpcKeys.generate().to_json()
        query = self._run(
            image,
            "query_frontend",
            command=list(spec.args),
            environment=self._environment(spec, {"frontend": keys or ""}) or None,
            ports=None
            if on_host
            else {
                f"{CLIPPER_INTERNAL_QUERY_PORT}/tcp": self._publish(self.clipper_query_port),
                f"{CLIPPER_INTERNAL_RPC_PORT}/tcp": self._publish(self.clipper_rpc_port),
            },
            host_network=bool(on_host),
            volumes=self._rpc_volume(),
            labels={
                CLIPPER_QUERY_FRONTEND_CONTAINER_LABEL: "",
                CLIPPER_DOCKER_PORT_LABELS["query_rest"]: str(self.clipper_query_port),
                CLIPPER_DOCKER_PORT_LABELS["query_rpc"]: str(self.clipper_rpc_port),
            },
        )
        url = f"http://{self._host()}:{self.clipper_query_port}/metrics"
        wait_until(query, http_ok(url), "Query frontend", self.start_timeout)
        if not on_host:
            self._warn_if_relayed_by_userland_proxy()
        if on_host:  # Prometheus, on the cluster's network, scrapes it through the gateway
            return f"{on_host['rpc_host']}:{self.clipper_query_port}"
        return f"{query.name}:{CLIPPER_INTERNAL_QUERY_PORT}"

    def _warn_if_relayed_by_userland_proxy(self) -> None:
        """A hint, not an error: the cluster works, at about 0.6x the throughput (bench/README.md)."""
        relays = userland_proxy_pids(self.clipper_query_port)
        if relays:
            addr = f"{self._host()}:{self.clipper_query_port}"
            self.logger.warning(USERLAND_PROXY_WARNING.format(addr=addr, pids=", ".join(map(str, relays))))

    def _rpc_volume(self) -> dict[str, dict[str, str]]:
        """The ``volumes`` argument that mounts the cluster's RPC volume (a tmpfs, created on first
        use; removed with the cluster's other labelled volumes)."""
        volume = self.docker_client.volumes.create(
            name=f"clipper-{self.cluster_name}-rpc",
            driver="local",
            driver_opts={"type": "tmpfs", "device": "tmpfs", "o": "mode=1777,size=1m"},
            labels={CLIPPER_VOLUME_LABEL: self.cluster_name},
        )
        return {volume.name: {"bind": RPC_VOLUME_MOUNT, "mode": "rw"}}

    def _runs_as_frontend_user(self, image: str, frontend) -> bool:
        """Whether a container of ``image`` runs as the query frontend's user, which alone may open
        the socket's directory."""
        try:
            config = self.docker_client.images.get(image).attrs.get("Config") or {}
        except docker.errors.DockerException:
            return False  # starting it fails with the reason; nothing to decide here
        return (config.get("User") or "") == ((frontend.attrs.get("Config") or {}).get("User") or "")

    def _start_prometheus(self, query_frontend_target: str) -> None:
        try:
            self.docker_client.images.get(self.prometheus_image)
        except docker.errors.ImageNotFound:
            self.logger.info(f"{self.prometheus_image} is not built: starting without Prometheus")
            return
        self.prometheus_port = find_unbound_port(self.prometheus_port)
        config_dir = prometheus.make_config_dir(self.cluster_name)
        self.prom_config_path = prometheus.write_config(config_dir, [query_frontend_target])
        prom = self._run(
            self.prometheus_image,
            "metric_frontend",
            ports={f"{PROMETHEUS_INTERNAL_PORT}/tcp": self._publish(self.prometheus_port)},
            labels={
                CLIPPER_DOCKER_PORT_LABELS["metric"]: str(self.prometheus_port),
                CLIPPER_METRIC_CONFIG_LABEL: self.prom_config_path,
            },
            # a directory, not the file: the targets file is replaced (renamed over) on every change
            volumes={config_dir: {"bind": prometheus.CONTAINER_CONFIG_DIR, "mode": "ro"}},
            # the root file system is read-only: the TSDB lives in the /tmp tmpfs
            command=[
                f"--config.file={prometheus.CONTAINER_CONFIG_DIR}/{prometheus.CONFIG_FILE}",
                "--storage.tsdb.path=/tmp/prometheus",
                "--web.console.libraries=/usr/share/prometheus/console_libraries",
                "--web.console.templates=/usr/share/prometheus/consoles",
                "--web.enable-lifecycle",
            ],
        )
        url = f"http://{self._host()}:{self.prometheus_port}/-/ready"
        wait_until(prom, http_ok(url), "Prometheus", self.start_timeout)

    def connect(self):
        labels: dict[str, str] = {}
        for container in self._containers():
            labels.update(container.labels)
        ports = CLIPPER_DOCKER_PORT_LABELS
        if ports["query_rest"] not in labels or ports["management"] not in labels:
            raise ClipperException(
                f"No running Clipper cluster named {self.cluster_name} on this Docker engine "
                "(no query or management frontend container carries its label). "
                "Start it with ClipperConnection.start_clipper()."
            )
        if ports["redis"] in labels:
            self.redis_port = int(labels[ports["redis"]])
        self.clipper_management_port = int(labels[ports["management"]])
        self.clipper_query_port = int(labels[ports["query_rest"]])
        self.clipper_rpc_port = int(labels[ports["query_rpc"]])
        if ports["metric"] in labels:
            self.prometheus_port = int(labels[ports["metric"]])
            self.prom_config_path = labels.get(CLIPPER_METRIC_CONFIG_LABEL)
        if not isinstance(self._admin_token_arg, str):
            self.admin_token = self._running_token()
        for container in self._containers(CLIPPER_QUERY_FRONTEND_CONTAINER_LABEL):
            args = container.attrs.get("Args") or []
            if "--store" in args:
                store = args[args.index("--store") + 1]
                self.redis_ip = store.removeprefix("redis://").rsplit(":", 1)[0]

    def _running_token(self) -> str | None:
        """The token the running management frontend requires (its container environment)."""
        token = None
        for container in self._containers(CLIPPER_MGMT_FRONTEND_CONTAINER_LABEL):
            for item in container.attrs["Config"].get("Env") or []:
                if item.startswith("CLIPPER_ADMIN_TOKEN="):
                    token = item.split("=", 1)[1] or None
        return token

    #: ``ClusterSpec`` fields a running Docker cluster can change in place: none yet (a change of a
    #: reported setting is refused with its reason; see ``running_settings``).
    RECONFIGURABLE: frozenset[str] = frozenset()

    def running_settings(self) -> dict[str, Any]:
        """The settings the running cluster runs with, keyed by ``ClusterSpec`` field (Python names):
        the published ports from the containers' labels, the query frontend's arguments, the
        management frontend's token from its environment. Call after :meth:`connect`."""
        args: list[str] = []
        for container in self._containers(CLIPPER_QUERY_FRONTEND_CONTAINER_LABEL):
            args = list(container.attrs.get("Args") or [])
        token = self._running_token()
        settings: dict[str, Any] = {
            "backend": "docker",
            "query_port": self.clipper_query_port,
            "management_port": self.clipper_management_port,
            "rpc_port": self.clipper_rpc_port,
            "admin_auth": "token" if token else "none",
            "admin_token": token,
            "allow_unauthenticated_replicas": _arg(args, "--rpc-auth") == "none",
        }
        if (cache := _arg(args, "--prediction-cache-size")) is not None:
            settings["cache_size_bytes"] = int(cache)
        return settings

    # -- models --------------------------------------------------------------------------------
    def remove_model_image(self, image: str) -> None:
        """Delete a model image from the local Docker daemon (best effort: one still in use by a
        container, or pushed to a registry, stays)."""
        try:
            self.docker_client.images.remove(image, noprune=False)
        except docker.errors.DockerException as e:
            self.logger.info(f"model image {image} not removed: {e}")

    def builder_client(self) -> docker.DockerClient:
        return self.docker_client

    def build_model(
        self,
        name,
        version,
        model_data_path,
        base_image,
        container_registry=None,
        pkgs_to_install=None,
    ) -> str:
        tag = self.build_model_image(
            name, version, model_data_path, base_image, container_registry, pkgs_to_install
        )
        if container_registry or self.registry:
            push_image(self.docker_client, tag)
        return tag

    def deploy_model(self, name, version, input_type, image, num_replicas=1):
        """Start replicas of ``image``, which the caller chose (a prebuilt image works, as in the original)."""
        self._set_replicas(name, version, input_type, image, num_replicas)

    def _get_replicas(self, name, version):
        return self._containers(
            f"{CLIPPER_MODEL_CONTAINER_LABEL}={create_model_container_label(name, version)}"
        )

    def get_num_replicas(self, name, version) -> int:
        return len(self._get_replicas(name, version))

    def _add_replica(self, name, version, input_type, image):
        frontends = self._containers(CLIPPER_QUERY_FRONTEND_CONTAINER_LABEL)
        if not frontends:
            self.logger.warning("No Clipper query frontend found.")
            raise ClipperException("No Clipper query frontend to attach model container to")
        label = create_model_container_label(name, version)
        keys = _rpc_keys_of(frontends[0])
        # a frontend on the host network says where it listens in its arguments
        args = list(frontends[0].attrs.get("Args") or [])
        on_host = (frontends[0].attrs.get("HostConfig") or {}).get("NetworkMode") == "host"
        rpc_port = _arg(args, "--rpc-port") if on_host else None
        rpc_socket = _arg(args, "--rpc-socket")  # None: a frontend of an earlier release
        if rpc_socket is not None and not self._runs_as_frontend_user(image, frontends[0]):
            self.logger.info(f"{image} runs as another user than the query frontend: its replicas use TCP")
            rpc_socket = None
        spec = launch.model_replica(
            ReplicaSettings(
                name=name,
                version=str(version),
                input_type=input_type,
                rpc_host=(_arg(args, "--rpc-host") or "") if on_host else frontends[0].name,
                rpc_port=int(rpc_port) if rpc_port else None,
                # scraped by the cluster's Prometheus (the original's containers serve this port too)
                metrics_port=CLIPPER_INTERNAL_METRIC_PORT,
                rpc_keys="secret" if keys is not None else "none",
                rpc_socket=rpc_socket,
            )
        )
        replica_keys = keys.for_replica().to_json() if keys is not None else ""
        return self._run(
            image,
            label,
            environment=self._environment(spec, {"replica": replica_keys}),
            labels={CLIPPER_MODEL_CONTAINER_LABEL: label, CLIPPER_DOCKER_LABEL: self.cluster_name},
            volumes=self._rpc_volume() if rpc_socket is not None else None,
        )

    def set_num_replicas(self, name, version, input_type, image, num_replicas):
        """Scale ``name:version``. ``ClipperConnection.set_num_replicas`` passes the image recorded by
        the management API, which other users may reach: a new replica starts only from an image this
        manager built for this cluster (present on this engine, with the cluster's label; never
        pulled), or the image the version's running replicas already run. Use ``deploy_model`` to
        start another image explicitly."""
        current = self._get_replicas(name, version)
        if len(current) < num_replicas and not any(c.attrs["Config"]["Image"] == image for c in current):
            self._check_built_here(image)  # more of a running replica set's own image is fine
        self._set_replicas(name, version, input_type, image, num_replicas)

    def _check_built_here(self, image: str) -> None:
        try:
            labels = self.docker_client.images.get(image).labels or {}
        except docker.errors.ImageNotFound:
            labels = {}
        except docker.errors.DockerException as e:
            raise ClipperException(f"Cannot inspect image {image}: {e}") from e
        if labels.get(CLIPPER_DOCKER_LABEL) != self.cluster_name:
            raise ClipperException(
                f"Refusing to start image {image!r} from the model's registration: it was not built by "
                f"this cluster ({self.cluster_name}) on this Docker engine. Start a prebuilt image "
                "explicitly with ClipperConnection.deploy_model(..., image=...)."
            )

    def _set_replicas(self, name, version, input_type, image, num_replicas):
        current = self._get_replicas(name, version)
        if len(current) < num_replicas:
            missing = num_replicas - len(current)
            self.logger.info(f"Found {len(current)} replicas for {name}:{version}. Adding {missing}")
            started = []
            try:
                for _ in range(missing):
                    started.append(self._add_replica(name, version, input_type, image))
                for container in started:
                    what = f"Model container for {name}:{version}"
                    wait_until(
                        container, healthy_if_checked(container), what, self.timeouts.replica_connect_s
                    )
                    # Started fine: from now on Docker restarts it when it exits non-zero (e.g. the
                    # container's watchdog ending a hung prediction, CLIPPER_PREDICT_TIMEOUT). Not
                    # from the start, so that a model that cannot load still fails deploy at once.
                    container.update(restart_policy={"Name": "on-failure"})
            except BaseException:
                for container in started:
                    self._remove(container, graceful=False)
                raise
            finally:
                self._sync_metric_targets()
        elif len(current) > num_replicas:
            extra = len(current) - num_replicas
            self.logger.info(f"Found {len(current)} replicas for {name}:{version}. Removing {extra}")
            for container in current[:extra]:
                self._remove(container, graceful=True)
            self._sync_metric_targets()

    def stop_models(self, models):
        for container in self._containers(CLIPPER_MODEL_CONTAINER_LABEL):
            name, version = parse_model_container_label(container.labels[CLIPPER_MODEL_CONTAINER_LABEL])
            if name in models and version in [str(v) for v in models[name]]:
                self._remove(container, graceful=True)
        self._sync_metric_targets()

    def stop_all_model_containers(self):
        for container in self._containers(CLIPPER_MODEL_CONTAINER_LABEL):
            self._remove(container, graceful=True)
        self._sync_metric_targets()

    def _metric_config_path(self) -> str | None:
        """``prometheus.yml`` of this cluster: known after start/connect, else read from the label of
        its Prometheus container (a manager that neither started nor connected to the cluster)."""
        if self.prom_config_path is None:
            for container in self._containers(CLIPPER_METRIC_CONFIG_LABEL, all=True):
                self.prom_config_path = container.labels.get(CLIPPER_METRIC_CONFIG_LABEL) or None
        return self.prom_config_path

    def _sync_metric_targets(self) -> None:
        """Rewrite Prometheus' targets file from the running replicas of the cluster (so a replica
        another process started, or one this process missed, is listed too); best effort."""
        config_dir = prometheus.config_dir_of(self._metric_config_path())
        if config_dir is None:
            return  # no Prometheus (image not built), or its directory is gone
        replicas = []
        try:
            for container in self._containers(CLIPPER_MODEL_CONTAINER_LABEL):
                name, version = parse_model_container_label(container.labels[CLIPPER_MODEL_CONTAINER_LABEL])
                replicas.append((container.name, name, version))
            groups = prometheus.model_targets(replicas, CLIPPER_INTERNAL_METRIC_PORT)
            prometheus.write_targets(config_dir, groups)
        except (OSError, docker.errors.APIError, ClipperException) as e:
            self.logger.warning(f"Could not update the Prometheus targets in {config_dir}: {e}")

    def stop_all(self, graceful=True):
        self._remove_cluster(graceful)

    def _remove(self, container, graceful: bool) -> None:
        try:
            if graceful:
                container.stop(timeout=10)
            container.remove(force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as e:
            self.logger.warning(f"Could not remove {container.name}: {e}")

    def _remove_cluster(self, graceful: bool) -> None:
        containers = self._containers(all=True)
        # read before the containers go: a manager that did not start the cluster knows it by label
        config_paths = {self.prom_config_path} | {
            c.labels.get(CLIPPER_METRIC_CONFIG_LABEL) for c in containers
        }
        # model containers first, then frontends, Redis last (it holds the state they write)
        containers.sort(
            key=lambda c: (CLIPPER_MODEL_CONTAINER_LABEL not in c.labels, c.name.startswith("redis-"))
        )
        for container in containers:
            self._remove(container, graceful)
        for volume in self.docker_client.volumes.list(
            filters={"label": f"{CLIPPER_VOLUME_LABEL}={self.cluster_name}"}
        ):
            try:
                volume.remove(force=True)
            except docker.errors.APIError as e:
                self.logger.warning(f"Could not remove volume {volume.name}: {e}")
        for path in config_paths - {None}:
            prometheus.remove_config(path)
        self.prom_config_path = None

    # -- logs and addresses -------------------------------------------------------------------
    def get_logs(self, logging_dir):
        logging_dir = os.path.abspath(os.path.expanduser(logging_dir))
        os.makedirs(logging_dir, exist_ok=True)
        paths = []
        for container in self._containers():
            path = os.path.join(
                logging_dir, f"image_{container.image.short_id}:container_{container.short_id}.log"
            )
            with open(path, "wb") as f:
                f.write(container.logs(stdout=True, stderr=True))
            paths.append(path)
        return paths

    def get_admin_addr(self):
        return f"{self.public_hostname}:{self.clipper_management_port}"

    def get_query_addr(self):
        return f"{self.public_hostname}:{self.clipper_query_port}"

    def get_metric_addr(self):
        return f"{self.public_hostname}:{self.prometheus_port}"


def _arg(args: list[str], flag: str) -> str | None:
    """The value following the last ``flag`` in a container's arguments, if any (the last wins, as in
    argparse: the images' entry point passes ``--host``/``--rpc-host`` before the manager's)."""
    at = [i for i, a in enumerate(args[:-1]) if a == flag]
    return args[at[-1] + 1] if at else None
