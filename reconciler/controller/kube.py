"""The controller's port to the Kubernetes API: the clipper.ai/v1 custom resources of a namespace,
Leases and Events, as plain dicts. :class:`KubeClient` implements it over the official client (its
``ApiClient`` through :class:`clipper_admin.kubernetes.api.KubeApi`, and ``kubernetes.watch``); the
unit tests use an in-memory one (``tests/fakes/kube.py``).

Errors: :class:`Conflict` (409: a stale ``resourceVersion``, or a create of something that exists),
:class:`Gone` (410: a watch's ``resourceVersion`` is too old: list again), :class:`NotFound` (404),
:class:`KubeError` for anything else the API server or the connection refuses.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, Protocol
from urllib.parse import quote

from reconciler.controller import COMPONENT, GROUP, PLURALS, VERSION

MERGE_PATCH = "application/merge-patch+json"
JSON = "application/json"


class KubeError(Exception):
    """A request the API server refused (or could not be sent); ``status``: the HTTP status, if any."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Conflict(KubeError):
    pass


class Gone(KubeError):
    pass


class NotFound(KubeError):
    pass


class KubePort(Protocol):
    def list_objects(self, kind: str, namespace: str) -> tuple[list[dict[str, Any]], str]:
        """The custom resources of ``kind`` in ``namespace`` and the list's ``resourceVersion``."""

    def watch(
        self, kind: str, namespace: str, resource_version: str, timeout_s: int
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """``(type, object)`` per change after ``resource_version`` (ADDED, MODIFIED, DELETED); ends
        after ``timeout_s``. :class:`Gone` when ``resource_version`` is too old."""

    def patch_status(self, kind: str, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """Merge-patch ``status`` through the status subresource; returns the object."""

    def set_finalizers(
        self, kind: str, namespace: str, name: str, finalizers: list[str], resource_version: str
    ) -> dict[str, Any]:
        """Replace ``metadata.finalizers``; :class:`Conflict` when the object changed since
        ``resource_version``, :class:`NotFound` when it is gone. Returns the object."""

    def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def create_lease(self, namespace: str, lease: dict[str, Any]) -> dict[str, Any]:
        """:class:`Conflict` when it exists."""

    def replace_lease(self, namespace: str, lease: dict[str, Any]) -> dict[str, Any]:
        """:class:`Conflict` when ``lease``'s ``metadata.resourceVersion`` is not the current one."""

    def create_event(self, namespace: str, event: dict[str, Any]) -> None: ...


def _error(e: Exception, what: str) -> KubeError:
    from kubernetes.client.exceptions import ApiException

    if isinstance(e, KubeError):
        return e
    if isinstance(e, ApiException):
        status = int(e.status or 0)
        try:
            message = json.loads(e.body or "{}").get("message") or e.reason
        except (ValueError, AttributeError):
            message = e.reason
        cls = {409: Conflict, 410: Gone, 404: NotFound}.get(status, KubeError)
        return cls(f"{what}: {status} {message}", status)
    return KubeError(f"{what}: {type(e).__name__}: {e}")


def _path(kind: str, namespace: str, name: str | None = None) -> str:
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{quote(namespace, safe='')}/{PLURALS[kind]}"
    return path + (f"/{quote(name, safe='')}" if name is not None else "")


def _lease_path(namespace: str, name: str | None = None) -> str:
    path = f"/apis/coordination.k8s.io/v1/namespaces/{quote(namespace, safe='')}/leases"
    return path + (f"/{quote(name, safe='')}" if name is not None else "")


class KubeClient:
    """:class:`KubePort` over the official client (kubeconfig or in-cluster configuration)."""

    def __init__(self, api_client: Any, request_timeout: float = 30.0) -> None:
        from kubernetes import client

        from clipper_admin.kubernetes.api import KubeApi

        self.api = KubeApi(api_client, request_timeout)
        self.custom = client.CustomObjectsApi(api_client)

    @staticmethod
    def configured(kubeconfig: str | None = None, context: str | None = None) -> KubeClient:
        """In a pod (and without ``kubeconfig``/``context``): the service account's configuration;
        elsewhere the kubeconfig's (``$KUBECONFIG``, ``~/.kube/config``)."""
        import os

        from kubernetes import client, config

        cfg = client.Configuration()
        try:
            if kubeconfig or context or "KUBERNETES_SERVICE_HOST" not in os.environ:
                config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=cfg)
            else:
                config.load_incluster_config(client_configuration=cfg)
        except (config.ConfigException, OSError, TypeError) as e:
            raise KubeError(f"no usable Kubernetes configuration: {e}") from e
        return KubeClient(client.ApiClient(cfg))

    def _call(self, what: str, method: str, path: str, body: Any = None, content_type: str | None = None,
              field_manager: bool = False) -> Any:  # fmt: skip
        query = [("fieldManager", COMPONENT)] if field_manager else []
        try:
            return self.api.request(method, path, query, body=body, content_type=content_type)
        except Exception as e:
            raise _error(e, what) from e

    def list_objects(self, kind: str, namespace: str) -> tuple[list[dict[str, Any]], str]:
        doc = self._call(f"list {PLURALS[kind]} in {namespace}", "GET", _path(kind, namespace))
        return list(doc.get("items") or []), str(doc.get("metadata", {}).get("resourceVersion", ""))

    def watch(
        self, kind: str, namespace: str, resource_version: str, timeout_s: int
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        from kubernetes import watch

        w = watch.Watch()
        try:
            for ev in w.stream(self.custom.list_namespaced_custom_object, GROUP, VERSION, namespace,
                               PLURALS[kind], resource_version=resource_version, timeout_seconds=timeout_s,
                               _request_timeout=timeout_s + 10):  # fmt: skip
                yield str(ev.get("type")), ev.get("raw_object") or {}
        except Exception as e:
            raise _error(e, f"watch {PLURALS[kind]} in {namespace}") from e
        finally:
            w.stop()

    def patch_status(self, kind: str, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = self._call(
            f"patch the status of {kind}/{name}", "PATCH", _path(kind, namespace, name) + "/status",
            {"status": patch}, MERGE_PATCH, field_manager=True)  # fmt: skip
        return out

    def set_finalizers(
        self, kind: str, namespace: str, name: str, finalizers: list[str], resource_version: str
    ) -> dict[str, Any]:
        body = {"metadata": {"finalizers": finalizers, "resourceVersion": resource_version}}
        out: dict[str, Any] = self._call(f"set the finalizers of {kind}/{name}", "PATCH",
                                         _path(kind, namespace, name), body, MERGE_PATCH, field_manager=True)  # fmt: skip
        return out

    def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            out: dict[str, Any] = self._call(f"read Lease {name}", "GET", _lease_path(namespace, name))
        except NotFound:
            return None
        return out

    def create_lease(self, namespace: str, lease: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = self._call("create the Lease", "POST", _lease_path(namespace), lease, JSON,
                                         field_manager=True)  # fmt: skip
        return out

    def replace_lease(self, namespace: str, lease: dict[str, Any]) -> dict[str, Any]:
        name = lease["metadata"]["name"]
        out: dict[str, Any] = self._call(f"update Lease {name}", "PUT", _lease_path(namespace, name), lease,
                                         JSON, field_manager=True)  # fmt: skip
        return out

    def create_event(self, namespace: str, event: dict[str, Any]) -> None:
        self._call("create an Event", "POST", f"/api/v1/namespaces/{quote(namespace, safe='')}/events", event,
                   JSON)  # fmt: skip
