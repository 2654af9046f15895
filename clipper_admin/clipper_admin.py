"""``ClipperConnection``: the original imperative admin API, over the ``ContainerManager`` seam.

HTTP lives in ``admin_client``, validation in ``validation``, the start-up wait in ``health`` and the
local predict helper in ``predict_test``; this module is the public method table.
"""

from __future__ import annotations

import functools
import logging
import pprint
from collections.abc import Callable
from typing import Concatenate, ParamSpec, TypeVar

import requests

from . import predict_test
from .admin_client import AdminClient
from .container_manager import CONTAINERLESS_MODEL_IMAGE, ClusterAdapter
from .exceptions import (
    AlreadyExists,
    ClipperConnectionError,
    ClipperException,
    ErrorKind,
    InvalidState,
    NotFound,
    UnconnectedException,
    http_error,
)
from .health import wait_for_frontends
from .validation import (
    deploy_regex_str,  # noqa: F401  (re-exported, as in the original module)
    deployment_regex,  # noqa: F401
    validate_input_type,
    validate_num_replicas,
    validate_versioned_model_name,
)
from .version import __registry__, __version__

DEFAULT_LABEL: list[str] = []
DEFAULT_PREDICTION_CACHE_SIZE_BYTES = 33554432
CLIPPER_TEMP_DIR = "/tmp/clipper"  # Used Internally for Test; Not Windows Compatible

#: How long ``start_clipper`` waits for the frontends to answer (the original: ~300 tries, 1 s apart).
DEFAULT_START_TIMEOUT = 300.0

# No logging.basicConfig here (the original called it with INFO on import): a library does not
# configure its host's logging. Warnings still reach stderr through Python's last-resort handler; a
# script that wants the original's INFO lines calls logging.basicConfig(level=logging.INFO) itself.
logger = logging.getLogger(__name__)

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _connected(
    method: Callable[Concatenate[ClipperConnection, _P], _R],
) -> Callable[Concatenate[ClipperConnection, _P], _R]:
    """The original's inline guard: raise ``UnconnectedException`` before doing anything else."""

    @functools.wraps(method)
    def guarded(self: ClipperConnection, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        if not self.connected:
            raise UnconnectedException()
        return method(self, *args, **kwargs)

    return guarded


class ClipperConnection:
    def __init__(self, container_manager):
        """Create a new ClipperConnection object.

        After creating a ``ClipperConnection`` instance, you still need to connect to a Clipper
        cluster: either ``connect()`` to an existing one or ``start_clipper()`` to create a new one.

        Parameters
        ----------
        container_manager : :py:meth:`clipper_admin.container_manager.ContainerManager`
            The ``ContainerManager`` (local processes, Docker or Kubernetes) that manages the cluster.
        """
        self.connected = False
        self.cm = container_manager
        self.logger = ClusterAdapter(logger, {"cluster_name": self.cm.cluster_identifier})
        self._admin = AdminClient(self.cm)

    # -- lifecycle -------------------------------------------------------------------------------
    def start_clipper(
        self,
        query_frontend_image=f"{__registry__}/query_frontend:{__version__}",
        mgmt_frontend_image=f"{__registry__}/management_frontend:{__version__}",
        frontend_exporter_image=f"{__registry__}/frontend-exporter:{__version__}",
        cache_size=DEFAULT_PREDICTION_CACHE_SIZE_BYTES,
        qf_http_thread_pool_size=1,
        qf_http_timeout_request=5,
        qf_http_timeout_content=300,
        num_frontend_replicas=1,
    ):
        """Start a new Clipper cluster and connect to it.

        The images are used by the Docker and Kubernetes managers; the local manager runs the same
        servers as processes. Raises ``ClipperException`` when the cluster cannot be started (it
        already exists, a port is taken, a process crashes at start-up).
        """
        try:
            self.cm.start_clipper(
                query_frontend_image,
                mgmt_frontend_image,
                frontend_exporter_image,
                cache_size,
                qf_http_thread_pool_size,
                qf_http_timeout_request,
                qf_http_timeout_content,
                num_frontend_replicas,
            )
        except ClipperException as e:
            self.logger.warning(f"Error starting Clipper: {e.msg}")
            raise e

        if not self.cm.waits_for_frontends:  # else the manager has just waited for the same answers
            timeout = self.cm.timeouts.frontend_start_s
            wait_for_frontends(
                self.cm.get_query_addr(), self.cm.get_admin_addr(), self._admin.headers(), timeout
            )
        self.logger.info("Clipper is running")
        self.connected = True

    def connect(self):
        """Connect to a running Clipper cluster."""
        self.cm.connect()
        self.connected = True
        self.logger.info(f"Successfully connected to Clipper cluster at {self.cm.get_query_addr()}")

    # -- applications ----------------------------------------------------------------------------
    @_connected
    def register_application(self, name, input_type, default_output, slo_micros):
        """Register a new application with Clipper.

        ``input_type`` is one of "integers", "floats", "doubles", "bytes", "strings";
        ``default_output`` (a string) is returned when the latency objective ``slo_micros`` is missed.
        """
        self._admin.post(
            "add_app",
            {
                "name": name,
                "input_type": input_type,
                "default_output": default_output,
                "latency_slo_micros": slo_micros,
            },
        )
        self.logger.info(f"Application {name} was successfully registered")

    @_connected
    def update_application(
        self, name: str, default_output: str | None = None, slo_micros: int | None = None
    ) -> None:
        """Change a registered application's default output and/or latency objective in place
        (``None``: unchanged). The app stays registered and linked, so requests keep being served
        while it changes; the query frontends use the new values from their next request. An
        unknown app, or neither value given, raises ``ClipperException``."""
        body: dict[str, object] = {"name": name}
        if default_output is not None:
            body["default_output"] = default_output
        if slo_micros is not None:
            body["latency_slo_micros"] = slo_micros
        self._admin.post("update_app", body)
        self.logger.info(f"Application {name} was successfully updated")

    def delete_application(self, name):
        self.logger.warning("[DEPRECATED] Use 'unregister_application' API instead of this.")
        self.unregister_application(name)

    @_connected
    def unregister_application(self, name):
        self._admin.post("delete_app", {"name": name})
        self.logger.info(f"Application {name} was successfully unregistered")

    @_connected
    def link_model_to_app(self, app_name, model_name):
        """Routes requests for ``app_name`` to the current version of ``model_name``."""
        self._admin.post("add_model_links", {"app_name": app_name, "model_names": [model_name]})
        self.logger.info(f"Model {model_name} is now linked to application {app_name}")

    @_connected
    def unlink_model_from_app(self, app_name, model_name):
        self._admin.post("delete_model_links", {"app_name": app_name, "model_names": [model_name]})
        logger.info(f"Model {model_name} is now removed to application {app_name}")

    # -- models ----------------------------------------------------------------------------------
    @_connected
    def build_and_deploy_model(
        self,
        name,
        version,
        input_type,
        model_data_path,
        base_image,
        labels=None,
        container_registry=None,
        num_replicas=1,
        batch_size=-1,
        pkgs_to_install=None,
    ):
        """Build a model image from ``model_data_path`` and deploy it (``build_model`` + ``deploy_model``)."""
        version = str(version)
        validate_input_type(input_type)
        image = self.build_model(
            name, version, model_data_path, base_image, container_registry, pkgs_to_install
        )
        self.deploy_model(name, version, input_type, image, labels, num_replicas, batch_size)

    def build_model(
        self,
        name,
        version,
        model_data_path,
        base_image,
        container_registry=None,
        pkgs_to_install=None,
    ):
        """Build a model image from the model directory ``model_data_path`` and return its name.

        The container manager decides what an image is (a Docker tag, or ``local:<path>`` on the
        local backend). ``pkgs_to_install`` (pip requirement strings) are installed at build time.
        """
        version = str(version)
        validate_versioned_model_name(name, version)
        if pkgs_to_install is not None and (
            isinstance(pkgs_to_install, str) or not all(isinstance(p, str) for p in pkgs_to_install)
        ):
            raise ClipperException(
                f"pkgs_to_install must be a list of pip requirement strings, got {pkgs_to_install!r}"
            )
        image = self.cm.build_model(
            name, version, model_data_path, base_image, container_registry, pkgs_to_install
        )
        self.logger.info(f"Built model image {image} for {name}:{version}")
        return image

    @_connected
    def deploy_model(self, name, version, input_type, image, labels=None, num_replicas=1, batch_size=-1):
        """Start ``num_replicas`` replicas of ``image`` and register them as model ``name:version``.

        The new version becomes the model's current version. Unlike the original, nothing is left
        running when the model cannot be registered, and an invalid input type, replica count or an
        existing ``name:version`` is refused before any replica starts.
        """
        version = str(version)
        validate_versioned_model_name(name, version)
        validate_input_type(input_type)
        validate_num_replicas(num_replicas)
        if self._admin.post_json("get_model", {"model_name": name, "model_version": version}):
            raise AlreadyExists(
                f"Model {name}:{version} is already deployed (model with name '{name}' and version "
                f"'{version}' already exists). Deploy a new version, or stop this one first."
            )
        self.cm.deploy_model(
            name=name, version=version, input_type=input_type, image=image, num_replicas=num_replicas
        )
        try:
            self.register_model(name, version, input_type, image=image, labels=labels, batch_size=batch_size)
        except ClipperException:
            self.logger.warning(f"Registering {name}:{version} failed; stopping its replicas")
            self.cm.stop_models({name: [version]})
            raise
        self.logger.info(f"Done deploying model {name}:{version}.")

    @_connected
    def register_model(self, name, version, input_type, image=None, labels=None, batch_size=-1):
        """Register a model version with Clipper; it becomes the current version of ``name``."""
        version = str(version)
        if image is None:
            image = CONTAINERLESS_MODEL_IMAGE
        if labels is None:
            labels = DEFAULT_LABEL
        self._admin.post(
            "add_model",
            {
                "model_name": name,
                "model_version": version,
                "labels": labels,
                "input_type": input_type,
                "container_name": image,
                "model_data_path": "DEPRECATED",
                "batch_size": batch_size,
            },
        )
        self.logger.info(f"Successfully registered model {name}:{version}")

    @_connected
    def get_current_model_version(self, name):
        for m in self.get_all_models(verbose=True):
            if m["model_name"] == name and m["is_current_version"]:
                return m["model_version"]
        raise NotFound(f"No versions of model {name} registered with Clipper")

    @_connected
    def get_num_replicas(self, name, version=None):
        version = self.get_current_model_version(name) if version is None else str(version)
        return self.cm.get_num_replicas(name, version)

    @_connected
    def set_num_replicas(self, name, num_replicas, version=None):
        """Scale model ``name`` (its current version unless ``version`` is given) to ``num_replicas``."""
        version = self.get_current_model_version(name) if version is None else str(version)
        validate_num_replicas(num_replicas)
        model_data = self.get_model_info(name, version)
        if model_data is None:
            raise NotFound(f"Cannot add container for non-registered model {name}:{version}")
        if model_data["container_name"] == CONTAINERLESS_MODEL_IMAGE:
            raise InvalidState(f"Cannot resize the replica set for containerless model {name}:{version}")
        self.cm.set_num_replicas(
            name, version, model_data["input_type"], model_data["container_name"], num_replicas
        )

    @_connected
    def set_model_version(self, name, version, num_replicas=None):
        """Make ``version`` the current version of ``name`` (roll forward or back)."""
        version = str(version)
        self._admin.post("set_model_version", {"model_name": name, "model_version": version})
        self.logger.info(f"Successfully set model version of {name} to {version}")
        if num_replicas is not None:
            self.set_num_replicas(name, num_replicas, version)

    # -- queries ---------------------------------------------------------------------------------
    @_connected
    def get_all_apps(self, verbose=False):
        return self._admin.post_json("get_all_applications", {"verbose": verbose})

    @_connected
    def get_app_info(self, name):
        app_info = self._admin.post_json("get_application", {"name": name})
        if len(app_info) == 0:
            self.logger.warning(f"Application {name} is not registered with Clipper")
            return None
        return app_info

    @_connected
    def get_linked_models(self, app_name):
        return self._admin.post_json("get_linked_models", {"app_name": app_name})

    @_connected
    def get_all_models(self, verbose=False):
        return self._admin.post_json("get_all_models", {"verbose": verbose})

    @_connected
    def get_model_info(self, name, version):
        version = str(version)
        model_info = self._admin.post_json("get_model", {"model_name": name, "model_version": version})
        if len(model_info) == 0:
            self.logger.warning(f"Model {name}:{version} is not registered with Clipper.")
            return None
        return model_info

    # -- traffic splitting, shadow, selection policies (added; README "Traffic splitting") -------
    @_connected
    def set_app_traffic(
        self,
        app_name: str,
        targets: list[tuple[str, str, float]],
        sticky_key: str | None = None,
        shadow: tuple[str, str, float] | None = None,
        selection: str | None = None,
        eta: float | None = None,
        gamma: float | None = None,
    ) -> dict[str, object]:
        """Route ``app_name`` to weighted ``(model, version, weight)`` targets instead of its linked
        model's current version. ``sticky_key``: a JSON field or header whose value keeps a client on
        one target; ``shadow``: ``(model, version, percent)`` also queried, answers only compared;
        ``selection``: ``"exp3"`` or ``"exp4"`` (learning from ``/{app}/update`` feedback; ``eta``
        learning rate, ``gamma`` exp3 exploration). Returns the app's traffic report; a 400 (unknown
        model or version, bad weights, input type mismatch) raises ``ClipperException``."""
        body: dict[str, object] = {
            "name": app_name,
            "targets": [
                {"model_name": m, "model_version": str(v), "weight": float(w)} for m, v, w in targets
            ],
        }
        if sticky_key is not None:
            body["sticky_key"] = sticky_key
        if shadow is not None:
            m, v, pct = shadow
            body["shadow"] = {"model_name": m, "model_version": str(v), "percent": float(pct)}
        if selection is not None:
            sel: dict[str, object] = {"policy": selection}
            if eta is not None:
                sel["eta"] = float(eta)
            if gamma is not None:
                sel["gamma"] = float(gamma)
            body["selection"] = sel
        report: dict[str, object] = self._admin.post_json("set_app_traffic", body)
        self.logger.info(f"Successfully set the traffic of application {app_name}")
        return report

    @_connected
    def get_app_traffic(self, app_name: str) -> dict[str, object]:
        """The app's traffic configuration and per-target statistics (requests, defaults, errors,
        latency, shadow agreement; since the configuration took effect) and selection weights."""
        report: dict[str, object] = self._admin.post_json("get_app_traffic", {"name": app_name})
        return report

    @_connected
    def clear_app_traffic(self, app_name: str) -> dict[str, object]:
        """Back to a plain app: its linked model's current version takes all traffic."""
        report: dict[str, object] = self._admin.post_json("clear_app_traffic", {"name": app_name})
        return report

    @_connected
    def get_all_model_replicas(self, verbose=False):
        return self._admin.post_json("get_all_containers", {"verbose": verbose})

    @_connected
    def get_model_replica_info(self, name, version, replica_id):
        version = str(version)
        info = self._admin.post_json(
            "get_container", {"model_name": name, "model_version": version, "replica_id": replica_id}
        )
        if len(info) == 0:
            self.logger.warning(f"No model replica with ID {replica_id} found for model {name}:{version}")
            return None
        return info

    @_connected
    def get_clipper_logs(self, logging_dir="clipper_logs/"):
        """Copy the cluster's logs to ``logging_dir``; returns the list of files written."""
        return self.cm.get_logs(logging_dir)

    @_connected
    def inspect_instance(self):
        """The query frontend's ``GET /metrics`` JSON (a dict)."""
        url = f"http://{self.cm.get_query_addr()}/metrics"
        try:
            r = requests.get(url, timeout=self._admin.timeout)
        except requests.exceptions.RequestException as e:
            raise ClipperConnectionError(f"Could not reach the Clipper query frontend at {url}: {e}") from e
        if r.status_code == requests.codes.ok:
            return r.json()
        msg = f"Received error status code: {r.status_code} and message: {r.text}"
        self.logger.error(msg)
        raise http_error(msg, r.status_code)

    @_connected
    def get_query_addr(self):
        return self.cm.get_query_addr()

    @_connected
    def get_metric_addr(self):
        return self.cm.get_metric_addr()

    # -- stopping --------------------------------------------------------------------------------
    @_connected
    def _unregister_versioned_models(self, model_versions_dict, ignore_gone=False):
        """Soft-delete each version. With ``ignore_gone`` (lists read back from the server), a version
        deleted meanwhile is skipped: the query frontend purges deleted versions asynchronously, so
        the original failed here when a ``stop_*`` call followed another too quickly. "Deleted
        meanwhile" is read from the server's state (the version is no longer listed), not from the
        refusal's text."""
        for model_name in model_versions_dict:
            for model_version in model_versions_dict[model_name]:
                try:
                    self._admin.post(
                        "delete_versioned_model", {"model_name": model_name, "model_version": model_version}
                    )
                except ClipperException as e:
                    if (
                        ignore_gone
                        and e.kind is ErrorKind.REJECTED
                        and self._version_gone(model_name, model_version)
                    ):
                        continue
                    raise
                self.logger.info(f"Model {model_name}:{model_version} was successfully deleted")

    def _version_gone(self, name, version) -> bool:
        """Not (or no longer) a registered valid version: never listed, or deleted meanwhile."""
        return not self._admin.post_json("get_model", {"model_name": name, "model_version": str(version)})

    def _versions_of(self, predicate) -> dict[str, list[str]]:
        model_dict: dict[str, list[str]] = {}
        for m in self.get_all_models(verbose=True):
            if predicate(m):
                model_dict.setdefault(m["model_name"], []).append(m["model_version"])
        return model_dict

    @_connected
    def stop_models(self, model_names):
        """Stop every replica of every version of ``model_names`` and unregister those versions."""
        if isinstance(model_names, str):
            model_names = [model_names]
        model_dict = self._versions_of(lambda m: m["model_name"] in model_names)
        self.cm.stop_models(model_dict)
        self._unregister_versioned_models(model_dict, ignore_gone=True)
        self.logger.info(
            f"Stopped all containers for these models and versions:\n{pprint.pformat(model_dict)}"
        )

    @_connected
    def stop_versioned_models(self, model_versions_dict):
        """Stop and unregister ``{name: [version, ...]}`` (this can stop a current version)."""
        self.cm.stop_models(model_versions_dict)
        self._unregister_versioned_models(model_versions_dict)
        self.logger.info(
            f"Stopped all containers for these models and versions:\n{pprint.pformat(model_versions_dict)}"
        )

    @_connected
    def stop_inactive_model_versions(self, model_names):
        """Stop and unregister every version of ``model_names`` that is not the current one."""
        if isinstance(model_names, str):
            model_names = [model_names]
        model_dict = self._versions_of(
            lambda m: m["model_name"] in model_names and not m["is_current_version"]
        )
        self.cm.stop_models(model_dict)
        self._unregister_versioned_models(model_dict, ignore_gone=True)
        self.logger.info(
            f"Stopped all containers for these models and versions:\n{pprint.pformat(model_dict)}"
        )

    @_connected
    def stop_all_model_containers(self):
        """Stop every model replica of the cluster and unregister every model version."""
        model_dict = self._versions_of(lambda m: True)
        self.cm.stop_all_model_containers()
        self._unregister_versioned_models(model_dict, ignore_gone=True)
        self.logger.info("Stopped all Clipper model containers")

    def stop_all(self, graceful=True):
        """Stop the whole cluster (frontends, store, model replicas). Works without ``connect``."""
        self.cm.stop_all(graceful=graceful)
        self.logger.info("Stopped all Clipper cluster and all model containers")

    def test_predict_function(self, query, func, input_type):
        """Run ``func`` locally on ``query`` (``{"input": ...}`` or ``{"input_batch": [...]}``).

        The function goes through a cloudpickle round trip first, as it would when deployed.
        """
        if not self.connected:
            self.connect()
        return predict_test.test_predict_function(query, func, input_type)
