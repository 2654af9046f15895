"""An in-memory :class:`reconciler.controller.kube.KubePort`: custom resources with the API server's
bookkeeping that the controller relies on (``resourceVersion`` per write and optimistic concurrency,
``generation`` bumped by spec changes only, the status subresource, finalizers holding a deleted
object with a ``deletionTimestamp`` until the last one goes), Leases, Events and watches.

Test helpers: :meth:`FakeKube.apply` (what ``kubectl apply`` does to a resource), :meth:`FakeKube.delete`,
:meth:`FakeKube.get`; :attr:`FakeKube.calls` records every write of the controller; :meth:`FakeKube.fail`
makes the next call of a verb raise.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator
from typing import Any

from reconciler.controller.kube import Conflict, Gone, KubeError, NotFound

Key = tuple[str, str, str]  # kind, namespace, name


class FakeKube:
    def __init__(self) -> None:
        self.objects: dict[Key, dict[str, Any]] = {}
        self.leases: dict[tuple[str, str], dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.calls: list[tuple[str, ...]] = []
        self.log: list[tuple[int, str, str, dict[str, Any]]] = []  # (rv, kind, type, object)
        self.oldest_watchable = 0  # a watch from before this resourceVersion is Gone
        self._rv = 0
        self._failures: dict[str, KubeError] = {}
        self._changed = threading.Condition()

    # -- test helpers ----------------------------------------------------------------------------
    def fail(self, verb: str, error: KubeError) -> None:
        self._failures[verb] = error

    def _maybe_fail(self, verb: str) -> None:
        e = self._failures.pop(verb, None)
        if e is not None:
            raise e

    def _bump(self, kind: str, type_: str, obj: dict[str, Any]) -> None:
        with self._changed:
            self._rv += 1
            obj["metadata"]["resourceVersion"] = str(self._rv)
            self.log.append((self._rv, kind, type_, copy.deepcopy(obj)))
            self._changed.notify_all()

    def apply(self, doc: dict[str, Any], namespace: str = "ns", created: str | None = None) -> dict[str, Any]:
        """Create the resource, or change its spec and labels (``generation`` + 1 when the spec changed)."""
        kind, name = doc["kind"], doc["metadata"]["name"]
        key = (kind, namespace, name)
        old = self.objects.get(key)
        if old is None:
            obj = copy.deepcopy(doc)
            obj["metadata"].update(namespace=namespace, generation=1, uid=f"uid-{kind}-{name}",
                                   creationTimestamp=created or f"2026-12-01T14:00:{len(self.objects):02d}Z")  # fmt: skip
            self.objects[key] = obj
            self._bump(kind, "ADDED", obj)
            return copy.deepcopy(obj)
        if old["metadata"].get("deletionTimestamp"):
            raise KubeError(f"{kind}/{name} is being deleted")
        if old.get("spec") != doc.get("spec"):
            old["metadata"]["generation"] += 1
        old["spec"] = copy.deepcopy(doc.get("spec"))
        old["metadata"]["labels"] = copy.deepcopy(doc["metadata"].get("labels") or {})
        self._bump(kind, "MODIFIED", old)
        return copy.deepcopy(old)

    def delete(self, kind: str, name: str, namespace: str = "ns") -> None:
        obj = self.objects[(kind, namespace, name)]
        if obj["metadata"].get("finalizers"):
            obj["metadata"].setdefault("deletionTimestamp", "2026-12-01T15:00:00Z")
            self._bump(kind, "MODIFIED", obj)
        else:
            del self.objects[(kind, namespace, name)]
            self._bump(kind, "DELETED", obj)

    def get(self, kind: str, name: str, namespace: str = "ns") -> dict[str, Any] | None:
        obj = self.objects.get((kind, namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    # -- the port --------------------------------------------------------------------------------
    def list_objects(self, kind: str, namespace: str) -> tuple[list[dict[str, Any]], str]:
        self._maybe_fail("list_objects")
        items = [
            copy.deepcopy(o)
            for (k, ns, _), o in sorted(self.objects.items())
            if k == kind and ns == namespace
        ]
        return items, str(self._rv)

    def watch(
        self, kind: str, namespace: str, resource_version: str, timeout_s: int
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        self._maybe_fail("watch")
        after = int(resource_version or 0)
        if after < self.oldest_watchable:
            raise Gone(f"too old resource version: {after}", 410)
        with self._changed:
            self._changed.wait_for(lambda: self._rv > after, timeout=timeout_s)
            events = [(t, copy.deepcopy(o)) for rv, k, t, o in self.log
                      if rv > after and k == kind and o["metadata"]["namespace"] == namespace]  # fmt: skip
        yield from events

    def patch_status(self, kind: str, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        self._maybe_fail("patch_status")
        obj = self.objects.get((kind, namespace, name))
        if obj is None:
            raise NotFound(f"{kind}/{name} not found", 404)
        self.calls.append(("patch_status", kind, name))
        status = obj.setdefault("status", {})
        for k, v in patch.items():
            if v is None:
                status.pop(k, None)
            else:
                status[k] = copy.deepcopy(v)
        self._bump(kind, "MODIFIED", obj)
        return copy.deepcopy(obj)

    def set_finalizers(
        self, kind: str, namespace: str, name: str, finalizers: list[str], resource_version: str
    ) -> dict[str, Any]:
        self._maybe_fail("set_finalizers")
        key = (kind, namespace, name)
        obj = self.objects.get(key)
        if obj is None:
            raise NotFound(f"{kind}/{name} not found", 404)
        if obj["metadata"]["resourceVersion"] != resource_version:
            raise Conflict(f"{kind}/{name} changed", 409)
        self.calls.append(("set_finalizers", kind, name, ",".join(finalizers)))
        obj["metadata"]["finalizers"] = list(finalizers)
        if not finalizers and obj["metadata"].get("deletionTimestamp"):
            del self.objects[key]
            self._bump(kind, "DELETED", obj)
        else:
            self._bump(kind, "MODIFIED", obj)
        return copy.deepcopy(obj)

    def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        self._maybe_fail("get_lease")
        lease = self.leases.get((namespace, name))
        return copy.deepcopy(lease) if lease is not None else None

    def create_lease(self, namespace: str, lease: dict[str, Any]) -> dict[str, Any]:
        self._maybe_fail("create_lease")
        key = (namespace, lease["metadata"]["name"])
        if key in self.leases:
            raise Conflict("lease exists", 409)
        return self._store_lease(key, lease)

    def _store_lease(self, key: tuple[str, str], lease: dict[str, Any]) -> dict[str, Any]:
        self._rv += 1
        stored = copy.deepcopy(lease)
        stored["metadata"]["resourceVersion"] = str(self._rv)
        self.leases[key] = stored
        return copy.deepcopy(stored)

    def replace_lease(self, namespace: str, lease: dict[str, Any]) -> dict[str, Any]:
        self._maybe_fail("replace_lease")
        key = (namespace, lease["metadata"]["name"])
        current = self.leases.get(key)
        if current is None:
            raise NotFound("no lease", 404)
        if current["metadata"]["resourceVersion"] != lease["metadata"].get("resourceVersion"):
            raise Conflict("lease changed", 409)
        return self._store_lease(key, lease)

    def create_event(self, namespace: str, event: dict[str, Any]) -> None:
        self._maybe_fail("create_event")
        self.events.append(copy.deepcopy(event))
