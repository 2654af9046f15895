"""The one place that talks to the Kubernetes API server, through the official client's ``ApiClient``.

Objects are plain dicts (see ``objects.py``); writes are server-side apply
(``application/apply-patch+yaml``, field manager ``clipper``), so re-applying is idempotent. Using
the generic ``ApiClient`` keeps auth (kubeconfig, tokens, exec plugins, TLS) in the official client
while avoiding its typed models for objects we build ourselves.
"""

from __future__ import annotations

import builtins
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from .names import FIELD_MANAGER

APPLY_CONTENT_TYPE = "application/apply-patch+yaml"
MERGE_PATCH_CONTENT_TYPE = "application/merge-patch+json"


@dataclass(frozen=True)
class Resource:
    prefix: str  # "/api/v1" or "/apis/<group>/<version>"
    plural: str
    namespaced: bool


RESOURCES: dict[str, Resource] = {
    "Namespace": Resource("/api/v1", "namespaces", False),
    "Node": Resource("/api/v1", "nodes", False),
    "Pod": Resource("/api/v1", "pods", True),
    "Service": Resource("/api/v1", "services", True),
    "ConfigMap": Resource("/api/v1", "configmaps", True),
    "Secret": Resource("/api/v1", "secrets", True),
    "ServiceAccount": Resource("/api/v1", "serviceaccounts", True),
    "PersistentVolumeClaim": Resource("/api/v1", "persistentvolumeclaims", True),
    "Deployment": Resource("/apis/apps/v1", "deployments", True),
    "Role": Resource("/apis/rbac.authorization.k8s.io/v1", "roles", True),
    "RoleBinding": Resource("/apis/rbac.authorization.k8s.io/v1", "rolebindings", True),
}


def resource_path(kind: str, namespace: str | None = None, name: str | None = None) -> str:
    res = RESOURCES[kind]
    path = res.prefix
    if res.namespaced:
        if namespace is None:
            raise ValueError(f"{kind} is namespaced: a namespace is required")
        path += f"/namespaces/{quote(namespace, safe='')}"
    path += f"/{res.plural}"
    if name is not None:
        path += f"/{quote(name, safe='')}"
    return path


class KubeApi:
    """Thin verbs over the API server: apply, get, list, delete, scale, logs."""

    def __init__(self, api_client: ApiClient, request_timeout: float = 30.0):
        self.api_client = api_client
        self.request_timeout = request_timeout

    def request(
        self,
        method: str,
        path: str,
        query: list[tuple[str, Any]] | None = None,
        body: Any = None,
        content_type: str | None = None,
        accept: str = "application/json",
    ) -> Any:
        headers = {"Accept": accept}
        if content_type:
            headers["Content-Type"] = content_type
        _, url, header_params, serialized_body, _ = self.api_client.param_serialize(
            method=method,
            resource_path=path,
            query_params=query or [],
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self.api_client.call_api(
            method,
            url,
            header_params=header_params,
            body=serialized_body,
            _request_timeout=self.request_timeout,
        )
        data = response.read()
        if not 200 <= response.status < 300:
            raise ApiException(
                status=response.status,
                reason=response.reason,
                body=data.decode("utf-8", "replace") if isinstance(data, bytes) else data,
            )
        if accept != "application/json":
            return data.decode("utf-8", "replace") if isinstance(data, bytes) else data
        return json.loads(data) if data else None

    # --- verbs -----------------------------------------------------------------------------------

    def apply(self, obj: dict[str, Any], force: bool = True) -> dict[str, Any]:
        """Server-side apply ``obj``: create it or converge the fields ``clipper`` owns."""
        meta = obj["metadata"]
        path = resource_path(obj["kind"], meta.get("namespace"), meta["name"])
        query = [("fieldManager", FIELD_MANAGER), ("force", "true" if force else "false")]
        applied: dict[str, Any] = self.request(
            "PATCH", path, query, body=obj, content_type=APPLY_CONTENT_TYPE
        )
        return applied

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        try:
            obj: dict[str, Any] | None = self.request("GET", resource_path(kind, namespace, name))
            return obj
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def list(
        self, kind: str, namespace: str | None = None, label_selector: str | None = None
    ) -> list[dict[str, Any]]:
        query = [("labelSelector", label_selector)] if label_selector else []
        items: list[dict[str, Any]] = self.request("GET", resource_path(kind, namespace), query)["items"]
        return items

    def delete(self, kind: str, name: str, namespace: str | None = None) -> bool:
        """Delete one object (its dependents in the background); ``False`` when it was absent."""
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"}
        try:
            self.request(
                "DELETE",
                resource_path(kind, namespace, name),
                body=body,
                content_type="application/json",
            )
            return True
        except ApiException as e:
            if e.status == 404:
                return False
            raise

    def delete_selected(self, kind: str, namespace: str | None, label_selector: str) -> builtins.list[str]:
        """Delete every ``kind`` matching the selector, one by one (Services have no
        ``deletecollection`` before 1.31); returns the names deleted."""
        deleted = []
        for item in self.list(kind, namespace, label_selector):
            if self.delete(kind, item["metadata"]["name"], namespace):
                deleted.append(item["metadata"]["name"])
        return deleted

    def get_scale(self, name: str, namespace: str) -> dict[str, Any] | None:
        try:
            scale: dict[str, Any] | None = self.request(
                "GET", resource_path("Deployment", namespace, name) + "/scale"
            )
            return scale
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def patch_scale(self, name: str, namespace: str, replicas: int) -> dict[str, Any]:
        """Change ``spec.replicas`` only, through the ``scale`` subresource."""
        scale: dict[str, Any] = self.request(
            "PATCH",
            resource_path("Deployment", namespace, name) + "/scale",
            [("fieldManager", FIELD_MANAGER)],
            body={"spec": {"replicas": replicas}},
            content_type=MERGE_PATCH_CONTENT_TYPE,
        )
        return scale

    def pod_log(self, name: str, namespace: str, container: str | None = None) -> str:
        query = [("container", container)] if container else []
        text: str = self.request(
            # the body is text, but the API server answers 406 to Accept: text/plain (1.34)
            "GET",
            resource_path("Pod", namespace, name) + "/log",
            query,
            accept="*/*",
        )
        return text
