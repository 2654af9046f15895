"""A strict HTTP-level test double of the Kubernetes API server.

The real ``kubernetes`` client talks to it over HTTP. It implements only the subset of paths the
Clipper manager uses and is strict about everything else:

* unknown paths -> 404, unsupported methods -> 405;
* a PATCH with a content type the path does not accept -> 415; apply without ``fieldManager`` -> 422;
* malformed bodies -> 400; bodies that do not match the URL (kind, name, namespace) -> 400;
* objects that fail the official OpenAPI schema (``kubernetes-validate``, strict: unknown fields
  rejected) of ``schema_version``, or invalid names / label values -> 422.

It also plays the controllers a cluster would run: Deployments get Pods and ``status``
(available immediately, unless a Deployment's name is in ``stuck``), Services get a cluster IP and,
for NodePort/LoadBalancer, a node port that is a free port on 127.0.0.1 (so tests can put real
servers behind it), LoadBalancers an ingress IP of 127.0.0.1.

Pod port-forward (``/api/v1/namespaces/<ns>/pods/<pod>/portforward``) speaks the
``v4.channel.k8s.io`` WebSocket protocol and connects to ``port_targets[(pod_prefix, port)]``.
"""

from __future__ import annotations

import base64
import copy
import functools
import hashlib
import itertools
import json
import re
import socket
import struct
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import jsonschema
import kubernetes_validate.utils as kv_utils
import yaml
from referencing import Registry, Resource

from clipper.net import free_port

APPLY = "application/apply-patch+yaml"
PATCH_TYPES = {"application/merge-patch+json", "application/strategic-merge-patch+json"}

# (prefix, plural) -> (apiVersion, kind, namespaced)
KINDS: dict[tuple[str, str], tuple[str, str, bool]] = {
    ("/api/v1", "namespaces"): ("v1", "Namespace", False),
    ("/api/v1", "nodes"): ("v1", "Node", False),
    ("/api/v1", "pods"): ("v1", "Pod", True),
    ("/api/v1", "services"): ("v1", "Service", True),
    ("/api/v1", "configmaps"): ("v1", "ConfigMap", True),
    ("/api/v1", "secrets"): ("v1", "Secret", True),
    ("/api/v1", "serviceaccounts"): ("v1", "ServiceAccount", True),
    ("/api/v1", "persistentvolumeclaims"): ("v1", "PersistentVolumeClaim", True),
    ("/apis/apps/v1", "deployments"): ("apps/v1", "Deployment", True),
    ("/apis/rbac.authorization.k8s.io/v1", "roles"): ("rbac.authorization.k8s.io/v1", "Role", True),
    ("/apis/rbac.authorization.k8s.io/v1", "rolebindings"): (
        "rbac.authorization.k8s.io/v1",
        "RoleBinding",
        True,
    ),
}
APPLIABLE = {k for k in KINDS.values() if k[1] not in ("Node", "Pod")}
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
LABEL_NAME = re.compile(r"^([a-z0-9.-]{1,253}/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
IANA_SVC_NAME = re.compile(r"^(?=.*[a-z])[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@functools.cache
def schema_validator(version: str, api_version: str, kind: str) -> jsonschema.Draft202012Validator:
    """The strict official schema of ``kind`` (as ``kubernetes_validate.validate`` loads it), cached:
    parsing the definitions file per request would make every apply cost ~50 ms."""
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    schema_dir = f"kubernetes-json-schema/v{version}.0-local-strict"
    schema = kv_utils.schema_contents(f"{schema_dir}/{kind.lower()}-{group_version}.json", version)
    definitions = kv_utils.schema_contents(f"{schema_dir}/_definitions.json", version)
    registry = Resource.from_contents(schema) @ Registry()
    registry = Resource.from_contents(definitions) @ registry
    return jsonschema.Draft202012Validator(schema, registry=registry)


def _owner(pod: dict[str, Any]) -> str | None:
    refs = pod["metadata"].get("ownerReferences") or [{}]
    return refs[0].get("name")


class HttpError(Exception):
    def __init__(self, code: int, reason: str, message: str):
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message


def parse_selector(text: str) -> list[tuple[str, str, str | None]]:
    """``a=b,c!=d,e,!f`` -> [(op, key, value)]; raises 400 on anything else."""
    terms = []
    for raw in filter(None, (t.strip() for t in text.split(","))):
        if m := re.fullmatch(r"([^=!\s]+)\s*(==|=|!=)\s*([^=!\s]*)", raw):
            key, op, value = m.groups()
            terms.append(("!=" if op == "!=" else "=", key, value))
        elif m := re.fullmatch(r"!\s*([^=!\s]+)", raw):
            terms.append(("!", m.group(1), None))
        elif re.fullmatch(r"[^=!\s]+", raw):
            terms.append(("exists", raw, None))
        else:
            raise HttpError(400, "BadRequest", f"unable to parse requirement: {raw!r}")
        if not LABEL_NAME.match(terms[-1][1]):
            raise HttpError(400, "BadRequest", f"invalid label key {terms[-1][1]!r}")
    return terms


def selector_matches(terms: list[tuple[str, str, str | None]], labels: dict[str, str]) -> bool:
    for op, key, value in terms:
        if op == "=" and labels.get(key) != value:
            return False
        if op == "!=" and labels.get(key) == value:
            return False
        if op == "exists" and key not in labels:
            return False
        if op == "!" and key in labels:
            return False
    return True


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    content_type: str | None


@dataclass
class FakeKubernetes:
    """State and behaviour; ``serve()`` puts it behind HTTP."""

    schema_version: str = "1.30"
    node_addresses: list[dict[str, str]] = field(
        default_factory=lambda: [{"type": "InternalIP", "address": "127.0.0.1"}]
    )
    stuck: set[str] = field(default_factory=set)  # Deployments that never become available
    port_targets: dict[tuple[str, int], tuple[str, int]] = field(default_factory=dict)
    #: seconds a port-forward handshake waits before the server answers it (a slow API server)
    portforward_delay: float = 0.0
    objects: dict[tuple[str, str | None, str], dict[str, Any]] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.lock = threading.RLock()
        self._rv = itertools.count(1000)
        self.objects[("Node", None, "node-1")] = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": "node-1", "labels": {}},
            "status": {"addresses": self.node_addresses},
        }
        self._put_namespace("default")

    # --- helpers ---------------------------------------------------------------------------------

    def _put_namespace(self, name: str) -> None:
        self._store(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
            status={"phase": "Active"},
        )

    def _store(self, obj: dict[str, Any], status: dict[str, Any] | None = None) -> dict[str, Any]:
        meta = obj["metadata"]
        key = (obj["kind"], meta.get("namespace"), meta["name"])
        old = self.objects.get(key)
        meta.setdefault("labels", {})
        if old is not None:
            meta["uid"] = old["metadata"]["uid"]
            meta["creationTimestamp"] = old["metadata"]["creationTimestamp"]
            meta["resourceVersion"] = old["metadata"]["resourceVersion"]
            meta["generation"] = old["metadata"].get("generation", 1)
        else:
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = "2024-01-01T00:00:00Z"
            meta["generation"] = 1
        if status is not None:
            obj["status"] = status
        elif old is not None and "status" in old:
            obj["status"] = old["status"]
        if old is not None and old != obj:
            meta["resourceVersion"] = str(next(self._rv))
            if old.get("spec") != obj.get("spec"):
                meta["generation"] += 1
        elif old is None:
            meta["resourceVersion"] = str(next(self._rv))
        self.objects[key] = obj
        return obj

    def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        with self.lock:
            obj = self.objects.get((kind, namespace, name))
            return copy.deepcopy(obj) if obj else None

    def list(self, kind: str, namespace: str | None = None, selector: str = "") -> list[dict[str, Any]]:
        terms = parse_selector(selector)
        with self.lock:
            return [
                copy.deepcopy(o)
                for (k, ns, _), o in sorted(self.objects.items(), key=lambda kv: str(kv[0]))
                if k == kind
                and (namespace is None or ns == namespace)
                and selector_matches(terms, o["metadata"].get("labels", {}))
            ]

    # --- validation ------------------------------------------------------------------------------

    def validate(self, obj: dict[str, Any]) -> None:
        error = jsonschema.exceptions.best_match(
            schema_validator(self.schema_version, obj["apiVersion"], obj["kind"]).iter_errors(obj)
        )
        if error is not None:
            path = ".".join(str(p) for p in error.absolute_path)
            raise HttpError(422, "Invalid", f"{obj['kind']} {path}: {error.message}")
        meta = obj["metadata"]
        name_re = DNS_LABEL if obj["kind"] in ("Namespace", "Service") else DNS_SUBDOMAIN
        if not name_re.match(meta["name"]) or len(meta["name"]) > (63 if name_re is DNS_LABEL else 253):
            raise HttpError(422, "Invalid", f"metadata.name: Invalid value: {meta['name']!r}")
        label_sets = [meta.get("labels") or {}]
        spec = obj.get("spec") or {}
        if obj["kind"] == "Deployment":
            tmpl_labels = spec["template"]["metadata"].get("labels") or {}
            label_sets += [spec["selector"].get("matchLabels") or {}, tmpl_labels]
            if not selector_matches(
                [("=", k, v) for k, v in (spec["selector"].get("matchLabels") or {}).items()], tmpl_labels
            ):
                raise HttpError(
                    422,
                    "Invalid",
                    "spec.template.metadata.labels: `selector` does not match template `labels`",
                )
            for c in spec["template"]["spec"]["containers"]:
                for p in c.get("ports", []):
                    if "name" in p and (not IANA_SVC_NAME.match(p["name"]) or len(p["name"]) > 15):
                        raise HttpError(
                            422, "Invalid", f"containers.ports.name: Invalid value: {p['name']!r}"
                        )
        if obj["kind"] == "Service":
            label_sets.append(spec.get("selector") or {})
            for p in spec.get("ports", []):
                if "name" in p and (not IANA_SVC_NAME.match(p["name"]) or len(p["name"]) > 15):
                    raise HttpError(422, "Invalid", f"spec.ports.name: Invalid value: {p['name']!r}")
        for labels in label_sets:
            for k, v in labels.items():
                if not LABEL_NAME.match(k) or not LABEL_VALUE.match(str(v)) or len(str(v)) > 63:
                    raise HttpError(422, "Invalid", f"metadata.labels: Invalid value: {k}={v!r}")

    # --- controllers -----------------------------------------------------------------------------

    def _reconcile_service(self, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        spec = obj["spec"]
        old_spec = (old or {}).get("spec", {})
        spec["clusterIP"] = (
            old_spec.get("clusterIP") or f"10.96.{len(self.objects) % 250}.{next(self._rv) % 250}"
        )
        old_ports = {p.get("name"): p for p in old_spec.get("ports", [])}
        for p in spec.get("ports", []):
            if spec.get("type") in ("NodePort", "LoadBalancer"):
                p.setdefault("nodePort", old_ports.get(p.get("name"), {}).get("nodePort") or free_port())
            else:
                p.pop("nodePort", None)
        lb = {"ingress": [{"ip": "127.0.0.1"}]} if spec.get("type") == "LoadBalancer" else {}
        obj["status"] = {"loadBalancer": lb}

    def _reconcile_deployment(self, dep: dict[str, Any]) -> None:
        ns, name = dep["metadata"]["namespace"], dep["metadata"]["name"]
        want = dep["spec"].get("replicas", 1)
        tmpl = dep["spec"]["template"]
        pod_hash = hashlib.sha256(json.dumps(tmpl, sort_keys=True).encode()).hexdigest()[:10]
        pods = [
            o
            for (k, pns, _), o in list(self.objects.items())
            if k == "Pod" and pns == ns and _owner(o) == name
        ]
        for pod in pods:  # a changed template replaces every pod (a finished rolling update)
            if pod["metadata"]["labels"].get("pod-template-hash") != pod_hash:
                del self.objects[("Pod", ns, pod["metadata"]["name"])]
        pods = [p for p in pods if p["metadata"]["labels"].get("pod-template-hash") == pod_hash]
        for pod in pods[want:]:
            del self.objects[("Pod", ns, pod["metadata"]["name"])]
        for _ in range(len(pods), want):
            pod_name = f"{name}-{pod_hash}-{uuid.uuid4().hex[:5]}"
            ready = name not in self.stuck
            self.objects[("Pod", ns, pod_name)] = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": pod_name,
                    "namespace": ns,
                    "labels": {**tmpl["metadata"].get("labels", {}), "pod-template-hash": pod_hash},
                    "annotations": copy.deepcopy(tmpl["metadata"].get("annotations", {})),
                    "ownerReferences": [
                        {
                            "apiVersion": "apps/v1",
                            "kind": "Deployment",
                            "name": name,
                            "uid": dep["metadata"]["uid"],
                        }
                    ],
                    "uid": str(uuid.uuid4()),
                    "resourceVersion": str(next(self._rv)),
                },
                "spec": copy.deepcopy(tmpl["spec"]),
                "status": {
                    "phase": "Running" if ready else "Pending",
                    "podIP": "127.0.0.1",
                    "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                    "containerStatuses": [
                        {"name": c["name"], "image": c["image"], "ready": ready, "restartCount": 0}
                        for c in tmpl["spec"]["containers"]
                    ],
                },
            }
        available = 0 if name in self.stuck else want
        dep["status"] = {
            "observedGeneration": dep["metadata"]["generation"],
            "replicas": want,
            "updatedReplicas": want,
            **({"readyReplicas": available, "availableReplicas": available} if available else {}),
        }

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.validate(obj)
            meta = obj["metadata"]
            ns = meta.get("namespace")
            if ns is not None and ("Namespace", None, ns) not in self.objects:
                raise HttpError(404, "NotFound", f'namespaces "{ns}" not found')
            key = (obj["kind"], ns, meta["name"])
            old = self.objects.get(key)
            obj = copy.deepcopy(obj)
            if obj["kind"] == "Namespace":
                return copy.deepcopy(self._store(obj, status={"phase": "Active"}))
            if obj["kind"] == "Service":
                self._reconcile_service(obj, old)
            if obj["kind"] == "Deployment":
                obj["spec"].setdefault("replicas", 1)
                if old is not None:
                    obj["status"] = old.get("status", {})
            stored = self._store(obj)
            if obj["kind"] == "Deployment":
                self._reconcile_deployment(stored)
            return copy.deepcopy(stored)

    def scale(self, namespace: str, name: str, replicas: int | None = None) -> dict[str, Any]:
        with self.lock:
            dep = self.objects.get(("Deployment", namespace, name))
            if dep is None:
                raise HttpError(404, "NotFound", f'deployments.apps "{name}" not found')
            if replicas is not None:
                if not isinstance(replicas, int) or replicas < 0:
                    raise HttpError(422, "Invalid", f"spec.replicas: Invalid value: {replicas!r}")
                if dep["spec"]["replicas"] != replicas:
                    dep["spec"]["replicas"] = replicas
                    dep["metadata"]["generation"] += 1
                    dep["metadata"]["resourceVersion"] = str(next(self._rv))
                    self._reconcile_deployment(dep)
            return {
                "apiVersion": "autoscaling/v1",
                "kind": "Scale",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"replicas": dep["spec"]["replicas"]},
                "status": {"replicas": dep["status"].get("replicas", 0)},
            }

    def delete(self, kind: str, namespace: str | None, name: str) -> dict[str, Any]:
        with self.lock:
            obj = self.objects.pop((kind, namespace, name), None)
            if obj is None:
                raise HttpError(404, "NotFound", f'{kind.lower()}s "{name}" not found')
            if kind == "Deployment":
                for key, o in list(self.objects.items()):
                    if key[0] == "Pod" and key[1] == namespace and _owner(o) == name:
                        del self.objects[key]
            if kind == "Namespace":
                for key in [k for k in self.objects if k[1] == name]:
                    del self.objects[key]
            return obj

    # --- HTTP ------------------------------------------------------------------------------------

    def serve(self) -> FakeServer:
        return FakeServer(self)


def status_body(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


PATH_RE = re.compile(
    r"^(?P<prefix>/api/v1|/apis/apps/v1|/apis/rbac\.authorization\.k8s\.io/v1)"
    r"(?:/namespaces/(?P<ns>[^/]+)(?=/))?/(?P<plural>[a-z]+)(?:/(?P<name>[^/]+))?(?:/(?P<sub>[a-z]+))?$"
)


class Handler(BaseHTTPRequestHandler):
    fake: FakeKubernetes
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # keep pytest output clean
        pass

    def setup(self) -> None:
        super().setup()
        # headers and body go out in separate writes: without this, Nagle + delayed ACK add 40 ms
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _send(self, code: int, body: Any, content_type: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        url = urlparse(self.path)
        query = parse_qs(url.query)
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip() or None
        self.fake.requests.append(Request(self.command, url.path, query, ctype))
        body = self._body()
        try:
            m = PATH_RE.match(url.path)
            if m:
                prefix, ns, plural, name, sub = m["prefix"], m["ns"], m["plural"], m["name"], m["sub"]
            else:
                raise HttpError(404, "NotFound", "the server could not find the requested resource")
            ns = unquote(ns) if ns else None
            name = unquote(name) if name else None
            if (prefix, plural) not in KINDS:
                raise HttpError(404, "NotFound", "the server could not find the requested resource")
            api_version, kind, namespaced = KINDS[(prefix, plural)]
            if namespaced != (ns is not None) and not (ns is None and name is None and self.command == "GET"):
                raise HttpError(404, "NotFound", "the server could not find the requested resource")
            self._route(kind, api_version, ns, name, sub, query, ctype, body)
        except HttpError as e:
            self._send(e.code, status_body(e.code, e.reason, e.message))

    def _route(self, kind, api_version, ns, name, sub, query, ctype, body) -> None:
        method = self.command
        if sub is not None:
            if kind == "Deployment" and sub == "scale" and name:
                if method == "GET":
                    return self._send(200, self.fake.scale(ns, name))
                if method == "PATCH":
                    if ctype not in PATCH_TYPES:
                        raise HttpError(
                            415,
                            "UnsupportedMediaType",
                            f"the body of the request was in an unknown format - accepted media types include: {sorted(PATCH_TYPES)}",
                        )
                    patch = self._json(body)
                    replicas = (patch.get("spec") or {}).get("replicas")
                    if set(patch) - {"spec", "metadata"} or set(patch.get("spec") or {}) - {"replicas"}:
                        raise HttpError(422, "Invalid", f"unexpected scale patch {patch!r}")
                    return self._send(200, self.fake.scale(ns, name, replicas))
                raise HttpError(405, "MethodNotAllowed", f"{method} not allowed on scale")
            if kind == "Pod" and sub == "log" and name and method == "GET":
                # as a real API server (seen on 1.34): the log is text, yet Accept: text/plain is a 406
                accepted = {a.split(";")[0].strip() for a in (self.headers.get("Accept") or "*/*").split(",")}
                if not accepted & {
                    "*/*",
                    "application/json",
                    "application/yaml",
                    "application/vnd.kubernetes.protobuf",
                }:
                    raise HttpError(
                        406,
                        "NotAcceptable",
                        "only the following media types are accepted: application/json, application/yaml, "
                        "application/vnd.kubernetes.protobuf",
                    )
                pod = self.fake.get("Pod", ns, name)
                if pod is None:
                    raise HttpError(404, "NotFound", f'pods "{name}" not found')
                containers = [c["name"] for c in pod["spec"]["containers"]]
                container = (query.get("container") or [None])[0]
                if container is None and len(containers) > 1:
                    raise HttpError(
                        400,
                        "BadRequest",
                        f"a container name must be specified for pod {name}, choose one of: {containers}",
                    )
                if container is not None and container not in containers:
                    raise HttpError(400, "BadRequest", f"container {container} is not valid for pod {name}")
                text = f"log of {name}/{container or containers[0]}\n"
                return self._send(200, text.encode(), "text/plain")
            if kind == "Pod" and sub == "portforward" and name and method == "GET":
                return self._portforward(ns, name, query)
            raise HttpError(404, "NotFound", "the server could not find the requested resource")
        if name is None:
            if method == "GET":
                selector = (query.get("labelSelector") or [""])[0]
                items = self.fake.list(kind, ns, selector)
                return self._send(
                    200,
                    {
                        "apiVersion": api_version,
                        "kind": f"{kind}List",
                        "metadata": {"resourceVersion": "1"},
                        "items": items,
                    },
                )
            raise HttpError(405, "MethodNotAllowed", f"{method} not allowed on a collection here")
        if method == "GET":
            obj = self.fake.get(kind, ns, name)
            if obj is None:
                raise HttpError(404, "NotFound", f'{kind.lower()}s "{name}" not found')
            return self._send(200, obj)
        if method == "DELETE":
            if body:
                opts = self._json(body)
                if opts.get("kind") not in (None, "DeleteOptions"):
                    raise HttpError(400, "BadRequest", "body is not DeleteOptions")
            self.fake.delete(kind, ns, name)
            return self._send(200, status_body(200, "", "deleted") | {"status": "Success"})
        if method == "PATCH":
            if (api_version, kind, ns is not None) not in APPLIABLE:
                raise HttpError(405, "MethodNotAllowed", f"{kind} cannot be applied here")
            if ctype != APPLY:
                raise HttpError(
                    415, "UnsupportedMediaType", f"this double accepts only {APPLY} on objects, got {ctype}"
                )
            if not (query.get("fieldManager") or [""])[0]:
                raise HttpError(
                    422,
                    "Invalid",
                    "PatchOptions.meta.k8s.io: fieldManager: Required value: is required for apply patch",
                )
            try:
                obj = yaml.safe_load(body.decode())
            except (yaml.YAMLError, UnicodeDecodeError) as e:
                raise HttpError(400, "BadRequest", f"error decoding YAML: {e}") from None
            if not isinstance(obj, dict) or not isinstance(obj.get("metadata"), dict):
                raise HttpError(400, "BadRequest", "apply body must be an object with metadata")
            if obj.get("apiVersion") != api_version or obj.get("kind") != kind:
                raise HttpError(
                    400,
                    "BadRequest",
                    f"apiVersion/kind {obj.get('apiVersion')}/{obj.get('kind')} do not match the URL ({api_version}/{kind})",
                )
            if obj["metadata"].get("name") != name:
                raise HttpError(
                    400, "BadRequest", "the name of the object does not match the name on the URL"
                )
            if obj["metadata"].get("namespace", ns) != ns:
                raise HttpError(
                    400, "BadRequest", "the namespace of the object does not match the namespace on the URL"
                )
            if ns is not None:
                obj["metadata"]["namespace"] = ns
            return self._send(200, self.fake.apply(obj))
        raise HttpError(405, "MethodNotAllowed", f"{method} not allowed")

    def _json(self, body: bytes) -> dict[str, Any]:
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as e:
            raise HttpError(400, "BadRequest", f"error decoding JSON: {e}") from None
        if not isinstance(data, dict):
            raise HttpError(400, "BadRequest", "body must be a JSON object")
        return data

    # --- port-forward over WebSocket (v4.channel.k8s.io) -----------------------------------------

    def _portforward(self, ns: str, name: str, query: dict[str, list[str]]) -> None:
        pod = self.fake.get("Pod", ns, name)
        if pod is None:
            raise HttpError(404, "NotFound", f'pods "{name}" not found')
        if (self.headers.get("Upgrade") or "").lower() != "websocket":
            raise HttpError(400, "BadRequest", "Upgrade request required")
        ports = [int(p) for p in ",".join(query.get("ports", [])).split(",") if p]
        if len(ports) != 1:
            raise HttpError(400, "BadRequest", "exactly one port per forward is supported here")
        port = ports[0]
        time.sleep(self.fake.portforward_delay)
        target = next(
            (t for (prefix, p), t in self.fake.port_targets.items() if p == port and name.startswith(prefix)),
            None,
        )
        key = base64.b64encode(
            hashlib.sha1(
                self.headers["Sec-WebSocket-Key"].encode() + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
            ).digest()
        ).decode()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", key)
        self.send_header("Sec-WebSocket-Protocol", "v4.channel.k8s.io")
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        ws = WebSocket(self.connection)
        port_bytes = struct.pack("<H", port)
        ws.send(b"\x00" + port_bytes)
        ws.send(b"\x01" + port_bytes)
        if target is None:
            ws.send(b"\x01" + f"no listener on port {port} in pod {name}".encode())
            ws.close()
            return
        try:
            upstream = socket.create_connection(target, timeout=10)
        except OSError as e:
            ws.send(b"\x01" + f"connecting to port {port}: {e}".encode())
            ws.close()
            return
        upstream.settimeout(None)

        def pump_up() -> None:
            try:
                while data := upstream.recv(65536):
                    ws.send(b"\x00" + data)
            except OSError:
                pass
            ws.close()

        threading.Thread(target=pump_up, daemon=True).start()
        try:
            while (msg := ws.recv()) is not None:
                if msg[:1] == b"\x00" and len(msg) > 1:
                    upstream.sendall(msg[1:])
        except OSError:
            pass
        finally:
            upstream.close()

    do_GET = do_PATCH = do_DELETE = do_POST = do_PUT = _handle


class WebSocket:
    """The server side of RFC 6455, binary frames only; enough for port-forward."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.send_lock = threading.Lock()
        self.closed = False

    def _read(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise OSError("closed")
            buf += chunk
        return buf

    def recv(self) -> bytes | None:
        message = b""
        while True:
            b1, b2 = self._read(2)
            opcode, length = b1 & 0x0F, b2 & 0x7F
            if length == 126:
                (length,) = struct.unpack(">H", self._read(2))
            elif length == 127:
                (length,) = struct.unpack(">Q", self._read(8))
            mask = self._read(4) if b2 & 0x80 else b"\0\0\0\0"
            payload = bytes(c ^ mask[i % 4] for i, c in enumerate(self._read(length)))
            if opcode == 0x8:
                self.close()
                return None
            if opcode == 0x9:  # ping
                self._frame(0xA, payload)
                continue
            if opcode == 0xA:
                continue
            message += payload
            if b1 & 0x80:
                return message

    def _frame(self, opcode: int, payload: bytes) -> None:
        header = bytes([0x80 | opcode])
        n = len(payload)
        if n < 126:
            header += bytes([n])
        elif n < 65536:
            header += bytes([126]) + struct.pack(">H", n)
        else:
            header += bytes([127]) + struct.pack(">Q", n)
        with self.send_lock:
            if not self.closed:
                self.sock.sendall(header + payload)

    def send(self, payload: bytes) -> None:
        try:
            self._frame(0x2, payload)
        except OSError:
            self.closed = True

    def close(self) -> None:
        try:
            self._frame(0x8, b"")
        except OSError:
            pass
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class FakeServer:
    """``FakeKubernetes`` served on a free 127.0.0.1 port; a context manager."""

    def __init__(self, fake: FakeKubernetes):
        self.fake = fake
        handler = type("BoundHandler", (Handler,), {"fake": fake})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FakeServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)
