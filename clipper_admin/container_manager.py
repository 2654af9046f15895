"""The ``ContainerManager`` seam between ``ClipperConnection`` and a backend, with the original's constants.

Three implementations share it: ``clipper_admin.local.LocalContainerManager`` (supervised local
processes), ``clipper_admin.docker.DockerContainerManager`` and
``clipper_admin.kubernetes.KubernetesContainerManager``.
"""

from __future__ import annotations

import abc
import dataclasses
import logging
from collections.abc import MutableMapping
from typing import Any

from .exceptions import ClipperException
from .launch import Timeouts

CLIPPER_INTERNAL_QUERY_PORT = 1337
CLIPPER_INTERNAL_MANAGEMENT_PORT = 1338
CLIPPER_INTERNAL_RPC_PORT = 7000
CLIPPER_INTERNAL_METRIC_PORT = 1390
CLIPPER_INTERNAL_REDIS_PORT = 6379
CLIPPER_INTERNAL_FLUENTD_PORT = 24224

CLIPPER_DOCKER_LABEL = "ai.clipper.container.label"
CLIPPER_NAME_LABEL = "ai.clipper.name"
CLIPPER_MODEL_CONTAINER_LABEL = "ai.clipper.model_container.label"
CLIPPER_QUERY_FRONTEND_CONTAINER_LABEL = "ai.clipper.query_frontend.label"
CLIPPER_MGMT_FRONTEND_CONTAINER_LABEL = "ai.clipper.management_frontend.label"
CLIPPER_QUERY_FRONTEND_ID_LABEL = "ai.clipper.query_frontend.id"
CONTAINERLESS_MODEL_IMAGE = "NO_CONTAINER"
CLIPPER_METRIC_CONFIG_LABEL = "ai.clipper.metric.config"
CLIPPER_FLUENTD_CONFIG_LABEL = "ai.clipper.fluentd.config"

CLIPPER_DOCKER_PORT_LABELS = {
    "redis": "ai.clipper.redis.port",
    "query_rest": "ai.clipper.query_frontend.query.port",
    "query_rpc": "ai.clipper.query_frontend.rpc.port",
    "management": "ai.clipper.management.port",
    "metric": "ai.clipper.metric.port",
    "fluentd": "ai.clipper.fluentd.port",
}

# Names and versions cannot contain "_" (see validation.py), so it separates them unambiguously.
_MODEL_CONTAINER_LABEL_DELIMITER = "_"


def create_model_container_label(name: str, version: str) -> str:
    return f"{name}{_MODEL_CONTAINER_LABEL_DELIMITER}{version}"


def parse_model_container_label(label: str) -> list[str]:
    splits = label.split(_MODEL_CONTAINER_LABEL_DELIMITER)
    if len(splits) != 2:
        raise ClipperException(f"Unable to parse model container label {label}")
    return splits


class ClusterAdapter(logging.LoggerAdapter[logging.Logger]):
    """Prefixes every message with ``[<cluster_name>] ``."""

    def process(self, msg: object, kwargs: MutableMapping[str, Any]) -> tuple[str, MutableMapping[str, Any]]:
        assert self.extra is not None  # made with {"cluster_name": ...}
        return f"[{self.extra['cluster_name']}] {msg}", kwargs


class ContainerManager(abc.ABC):
    """What ``ClipperConnection`` needs from a backend.

    Attributes every implementation sets in its constructor:

    * ``cluster_name`` and ``cluster_identifier`` (the latter is used in image tags and log prefixes);
    * ``admin_token`` (``str | None``): when set, ``ClipperConnection`` sends
      ``Authorization: Bearer <token>`` on every management call. The built-in managers take
      ``admin_token=None`` (generate one at ``start_clipper()``, see ``admin_auth.py``), a string, or
      ``False`` (no token); ``connect()`` fills it in from where the cluster keeps it.

    Lifecycle: ``start_clipper(...)`` creates the cluster and must leave the manager connected (it
    calls ``self.connect()`` at its end); ``connect()`` attaches to an existing cluster and raises a
    ``ClipperException`` naming the cluster (and what to do) when there is none.

    Models: ``deploy_model`` starts ``num_replicas`` replicas of ``image`` *before* the model is
    registered (``ClipperConnection`` registers it afterwards, so traffic moves only to started
    replicas); ``set_num_replicas`` scales; ``stop_models({name: [version, ...]})`` stops the replicas
    of those versions only; ``stop_all_model_containers()`` every replica of the cluster;
    ``stop_all(graceful)`` every process/container/object the manager created for the cluster and
    nothing else.

    Build hook: ``build_model(name, version, model_data_path, base_image, container_registry=None,
    pkgs_to_install=None) -> image``. ``model_data_path`` is a model directory as described in
    ``docs/internals.md`` (``func.pkl``, ``clipper_model.json``, ``requirements.txt``, ``modules/``...).
    The returned string is what ``deploy_model``/``set_num_replicas`` later receive as ``image`` and
    what the management frontend records as the model's ``container_name``. The local backend copies
    the directory to ``<cluster dir>/models/<name>/<version>/``, installs missing requirements there
    and returns ``"local:<that path>"``; Docker builds ``FROM base_image`` with the directory at
    ``/model`` (requirements and ``pkgs_to_install`` installed at build time), tags it
    ``[<registry>/]<cluster_identifier>-<name>:<version>``, pushes only when a registry is given, and
    returns the tag; Kubernetes builds the same way and must push to a registry its nodes can pull
    from. Validation of ``name``/``version`` happens in ``ClipperConnection`` before the hook runs.

    Addresses are ``"host:port"`` strings without a scheme.
    """

    cluster_name: str = "default-cluster"
    cluster_identifier: str = "default-cluster"
    admin_token: str | None = None
    #: How long the manager waits for the frontends and for new replicas (the built-in managers
    #: take it as ``timeouts=`` and keep their original timeout keywords as views of it).
    timeouts: Timeouts = Timeouts(frontend_start_s=300.0, replica_connect_s=300.0)  # the original's
    #: True when ``start_clipper()`` returns only once both frontends answer HTTP from this host;
    #: then ``ClipperConnection.start_clipper`` does not wait for them a second time.
    waits_for_frontends: bool = False

    # The local and Docker managers' timeout keywords, as views of ``timeouts``.
    @property
    def start_timeout(self) -> float:
        return self.timeouts.frontend_start_s

    @start_timeout.setter
    def start_timeout(self, seconds: float) -> None:
        self.timeouts = dataclasses.replace(self.timeouts, frontend_start_s=seconds)

    @property
    def replica_timeout(self) -> float:
        return self.timeouts.replica_connect_s

    @replica_timeout.setter
    def replica_timeout(self, seconds: float) -> None:
        self.timeouts = dataclasses.replace(self.timeouts, replica_connect_s=seconds)

    @abc.abstractmethod
    def start_clipper(
        self,
        query_frontend_image: str,
        mgmt_frontend_image: str,
        frontend_exporter_image: str,
        cache_size: int,
        qf_http_thread_pool_size: int,
        qf_http_timeout_request: int,
        qf_http_timeout_content: int,
        num_frontend_replicas: int,
    ) -> None:
        """Create the cluster (frontends, store) and leave the manager connected."""

    @abc.abstractmethod
    def connect(self) -> None:
        """Attach to an existing cluster; ``ClipperException`` naming the cluster when there is none."""

    @abc.abstractmethod
    def deploy_model(
        self, name: str, version: str, input_type: str, image: str, num_replicas: int = 1
    ) -> None:
        """Start ``num_replicas`` replicas of ``image`` serving model ``name:version``."""

    @abc.abstractmethod
    def get_num_replicas(self, name: str, version: str) -> int:
        pass

    @abc.abstractmethod
    def set_num_replicas(
        self, name: str, version: str, input_type: str, image: str, num_replicas: int
    ) -> None:
        pass

    @abc.abstractmethod
    def get_logs(self, logging_dir: str) -> list[str]:
        """Write the cluster's logs under ``logging_dir`` (created if needed); return the file paths."""

    @abc.abstractmethod
    def stop_models(self, models: dict[str, list[str]]) -> None:
        """Stop the replicas of ``models``, a dict ``{name: [version, ...]}``."""

    @abc.abstractmethod
    def stop_all_model_containers(self) -> None:
        pass

    @abc.abstractmethod
    def stop_all(self, graceful: bool = True) -> None:
        pass

    @abc.abstractmethod
    def get_admin_addr(self) -> str:
        pass

    @abc.abstractmethod
    def get_query_addr(self) -> str:
        pass

    @abc.abstractmethod
    def get_metric_addr(self) -> str:
        pass

    def build_model(
        self,
        name: str,
        version: str,
        model_data_path: str,
        base_image: str,
        container_registry: str | None = None,
        pkgs_to_install: list[str] | None = None,
    ) -> str:
        """Turn a model directory into an image this manager can run (see the class docstring)."""
        raise ClipperException(f"{type(self).__name__} does not support building models")
