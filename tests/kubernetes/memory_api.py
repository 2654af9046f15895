"""An in-memory stand-in for ``clipper_admin.kubernetes.api.KubeApi``, injected with ``api=``.

It keeps objects in a dict and makes every Deployment available at once (``stuck`` names the ones
that never become available). No HTTP, no schema validation: tests of the manager's own logic use
it; the strict HTTP double (``fake_apiserver.py``) stays for the tests of what goes over the wire.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

Key = tuple[str, str | None, str]  # kind, namespace, name


def _matches(labels: dict[str, str], selector: str | None) -> bool:
    for term in (selector or "").split(","):
        if not term:
            continue
        key, eq, value = term.partition("=")
        if key not in labels or (eq and labels[key] != value):
            return False
    return True


@dataclass
class MemoryKubeApi:
    objects: dict[Key, dict[str, Any]] = field(default_factory=dict)
    stuck: set[str] = field(default_factory=set)
    calls: list[tuple[str, str, str | None]] = field(default_factory=list)  # verb, kind, name

    def add_node(self, name: str, internal_ip: str) -> None:
        self.objects[("Node", None, name)] = {
            "kind": "Node",
            "metadata": {"name": name},
            "status": {"addresses": [{"type": "InternalIP", "address": internal_ip}]},
        }

    def _key(self, kind: str, name: str, namespace: str | None) -> Key:
        return (kind, None if kind in ("Namespace", "Node") else namespace, name)

    def _settle(self, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        meta["generation"] = meta.get("generation", 0) + 1
        if obj["kind"] == "Deployment":
            want = obj["spec"].get("replicas", 1)
            ready = 0 if meta["name"] in self.stuck else want
            obj["status"] = {
                "replicas": want,
                "availableReplicas": ready,
                "observedGeneration": meta["generation"],
            }
        if obj["kind"] == "Service":
            if obj["spec"].get("clusterIP") is None:  # allocated once, like the API server
                obj["spec"]["clusterIP"] = f"10.96.0.{len(self.objects) % 250 + 1}"
            for i, port in enumerate(obj["spec"]["ports"]):
                if obj["spec"].get("type") in ("NodePort", "LoadBalancer"):
                    port.setdefault("nodePort", 30000 + len(self.objects) * 10 + i)

    # --- KubeApi's verbs ---------------------------------------------------------------------------

    def apply(self, obj: dict[str, Any], force: bool = True) -> dict[str, Any]:
        meta = obj["metadata"]
        self.calls.append(("apply", obj["kind"], meta["name"]))
        key = self._key(obj["kind"], meta["name"], meta.get("namespace"))
        stored = copy.deepcopy(obj)
        stored["metadata"]["generation"] = self.objects.get(key, {}).get("metadata", {}).get("generation", 0)
        self._settle(stored)
        self.objects[key] = stored
        return copy.deepcopy(stored)

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        self.calls.append(("get", kind, name))
        obj = self.objects.get(self._key(kind, name, namespace))
        return copy.deepcopy(obj) if obj is not None else None

    def list(
        self, kind: str, namespace: str | None = None, label_selector: str | None = None
    ) -> list[dict[str, Any]]:
        self.calls.append(("list", kind, None))
        return [
            copy.deepcopy(o)
            for (k, ns, _), o in sorted(self.objects.items())
            if k == kind
            and (namespace is None or ns == namespace)
            and _matches(o["metadata"].get("labels", {}), label_selector)
        ]

    def delete(self, kind: str, name: str, namespace: str | None = None) -> bool:
        self.calls.append(("delete", kind, name))
        return self.objects.pop(self._key(kind, name, namespace), None) is not None

    def delete_selected(self, kind: str, namespace: str | None, label_selector: str) -> list[str]:
        names = [o["metadata"]["name"] for o in self.list(kind, namespace, label_selector)]
        return [name for name in names if self.delete(kind, name, namespace)]

    def get_scale(self, name: str, namespace: str) -> dict[str, Any] | None:
        dep = self.get("Deployment", name, namespace)
        return None if dep is None else {"spec": {"replicas": dep["spec"].get("replicas", 1)}}

    def patch_scale(self, name: str, namespace: str, replicas: int) -> dict[str, Any]:
        self.calls.append(("patch_scale", "Deployment", name))
        dep = self.objects[self._key("Deployment", name, namespace)]
        dep["spec"]["replicas"] = replicas
        self._settle(dep)
        return {"spec": {"replicas": replicas}}

    def pod_log(self, name: str, namespace: str, container: str | None = None) -> str:
        return ""
