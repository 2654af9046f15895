"""Kubernetes CustomResourceDefinitions of the manifest kinds, generated from the same pydantic models.

A manifest that ``clipper apply`` accepts is also a custom resource (same YAML), so each CRD's
``spec`` schema is the kind's JSON Schema, rewritten into the *structural* OpenAPI v3 subset an API
server accepts: ``$ref`` inlined, ``X | None`` as ``nullable``, unions of different types left to the
controller (``x-kubernetes-preserve-unknown-fields``), draft 2020-12 keywords turned into their
OpenAPI v3.0 form. ``additionalProperties: false`` is dropped (Kubernetes forbids it next to
``properties``; it prunes unknown fields instead, and the controller's pydantic validation still
rejects extras it sees). Unlike the editors' JSON Schemas, values do not accept ``${VAR}``: custom
resources are not substituted.

``status`` is not from a model: the controller writes it (the fields below), through the status
subresource only.
"""

from __future__ import annotations

from typing import Any

from schemas.common import API_VERSION
from schemas.kinds import KINDS

GROUP, VERSION = API_VERSION.split("/")
CATEGORY = "clipper"
#: the values of reconciler.status.Sync and Health (schemas imports nothing above it; a test compares)
SYNC_VALUES = ("Synced", "OutOfSync", "Conflict", "Unknown")
HEALTH_VALUES = ("Healthy", "Progressing", "Degraded", "Missing", "Unknown")
CONDITION_TYPES = ("Ready", "Synced", "Progressing", "Degraded")
CONDITION_STATUSES = ("True", "False", "Unknown")

# keywords copied as they are (the OpenAPI v3.0 subset of JSON Schema that CRDs accept)
_KEPT = (
    "type", "description", "default", "enum", "pattern", "format",
    "minimum", "maximum", "minLength", "maxLength", "minItems", "maxItems",
    "minProperties", "maxProperties", "multipleOf", "required",
)  # fmt: skip
_DROPPED = ("title", "$schema", "$id", "$defs", "discriminator")
#: fields whose default the API server must not fill in: the controller tells "given" from "absent"
#: (a Cluster CR's kubernetes.namespace, when given, must be the CR's own namespace; the ports, when
#: given, are refused on the kubernetes backend, reconciler/backend_options.py)
NOT_DEFAULTED = frozenset(
    {".spec.kubernetes.namespace", ".spec.queryPort", ".spec.managementPort", ".spec.rpcPort"}
)


class UnsupportedSchema(ValueError):
    """A model uses a JSON Schema construct this generator cannot express structurally."""


def plural(kind: str) -> str:
    return kind.lower() + "s"


def crd_name(kind: str) -> str:
    return f"{plural(kind)}.{GROUP}"


def crd_filename(kind: str) -> str:
    return f"{GROUP}_{plural(kind)}.yaml"


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """``node`` with its ``$ref`` (or pydantic's single-branch ``allOf``) merged in; siblings win."""
    if "allOf" in node and len(node["allOf"]) == 1:
        node = {**{k: v for k, v in node.items() if k != "allOf"}, **node["allOf"][0]}
    if "$ref" not in node:
        return node
    ref = node["$ref"]
    prefix = "#/$defs/"
    if not ref.startswith(prefix) or ref[len(prefix) :] not in defs:
        raise UnsupportedSchema(f"cannot resolve $ref {ref!r}")
    target = _resolve(defs[ref[len(prefix) :]], defs)
    return {**target, **{k: v for k, v in node.items() if k != "$ref"}}


def _union(node: dict[str, Any], defs: dict[str, Any], where: str) -> dict[str, Any]:
    """An ``anyOf``: ``X | None`` -> X nullable; int | str -> int-or-string; int | float -> number."""
    outer = {k: v for k, v in node.items() if k != "anyOf"}
    branches = [b for b in node["anyOf"] if b != {"type": "null"}]
    nullable = len(branches) < len(node["anyOf"])
    if outer.get("default", 0) is None:
        del outer["default"]  # the absent value; a null default would be written into every object
    if len(branches) == 1:
        merged = {**_resolve(branches[0], defs), **outer}
        out = structural(merged, defs, where)
    else:
        converted = [structural(b, defs, where) for b in branches]
        types = {b.get("type") for b in converted}
        out = {k: v for k, v in outer.items() if k in ("description", "default")}
        if types == {"integer", "string"}:
            out["x-kubernetes-int-or-string"] = True
        elif types == {"integer", "number"}:
            out["type"] = "number"
        else:
            # e.g. list[float] | str: the API server keeps the value as it is; the controller validates it
            out["x-kubernetes-preserve-unknown-fields"] = True
    if nullable:
        out["nullable"] = True
    return out


def structural(node: dict[str, Any], defs: dict[str, Any], where: str = "") -> dict[str, Any]:
    """One pydantic JSON Schema node as a structural OpenAPI v3 schema (``defs``: its ``$defs``)."""
    node = _resolve(node, defs)
    if "anyOf" in node:
        return _union(node, defs, where)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "default" and where in NOT_DEFAULTED:
            continue
        if key in _KEPT:
            out[key] = value
        elif key in _DROPPED:
            continue
        elif key == "const":
            out["enum"] = [value]
        elif key in ("exclusiveMinimum", "exclusiveMaximum"):
            if isinstance(value, bool):  # already the OpenAPI v3.0 form
                out[key] = value
            else:  # draft 2020-12: a number; OpenAPI v3.0: the bound plus a flag
                out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
                out[key] = True
        elif key == "properties":
            out[key] = {k: structural(v, defs, f"{where}.{k}") for k, v in value.items()}
        elif key == "items":
            out[key] = structural(value, defs, f"{where}[]")
        elif key == "additionalProperties":
            if value is False:
                continue  # Kubernetes prunes unknown fields; the controller's models reject them
            if value is True:
                out["x-kubernetes-preserve-unknown-fields"] = True
            else:
                out[key] = structural(value, defs, f"{where}.*")
        else:
            raise UnsupportedSchema(f"{where or '<root>'}: {key!r} has no structural equivalent")
    if out.get("type") == "object" and "properties" in out and "additionalProperties" in out:
        raise UnsupportedSchema(f"{where}: properties and additionalProperties together")
    return out


def _condition_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "The state of one aspect of the object (Kubernetes condition conventions).",
        "required": ["type", "status"],
        "properties": {
            "type": {
                "type": "string",
                "enum": list(CONDITION_TYPES),
                "description": "Ready, Synced, Progressing or Degraded.",
            },
            "status": {"type": "string", "enum": list(CONDITION_STATUSES)},
            "reason": {"type": "string", "description": "Why, in one CamelCase word (e.g. RollingOut)."},
            "message": {"type": "string", "description": "Why, for a human."},
            "lastTransitionTime": {
                "type": "string",
                "format": "date-time",
                "description": "When the status last changed (RFC 3339, UTC).",
            },
            "observedGeneration": {
                "type": "integer",
                "format": "int64",
                "minimum": 0,
                "description": "The metadata.generation the condition describes.",
            },
        },
    }


def status_schema(kind: str) -> dict[str, Any]:
    """``status``, written by the clipper controller through the status subresource."""
    properties: dict[str, Any] = {
        "observedGeneration": {
            "type": "integer",
            "format": "int64",
            "minimum": 0,
            "description": "The metadata.generation this status describes.",
        },
        "sync": {
            "type": "string",
            "enum": list(SYNC_VALUES),
            "description": "Whether the cluster matches the spec.",
        },
        "health": {
            "type": "string",
            "enum": list(HEALTH_VALUES),
            "description": "Whether what the spec asks for serves.",
        },
        "message": {"type": "string", "description": "The reason for sync and health, for a human."},
        "conditions": {
            "type": "array",
            "description": "Ready (True iff Synced and Healthy), Synced, Progressing, Degraded.",
            "items": _condition_schema(),
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
        },
    }
    if kind == "Model":
        properties |= {
            "currentVersion": {"type": "string", "description": "The version that takes the traffic."},
            "previousVersion": {
                "type": "string",
                "description": "The version before it (rollback target).",
            },
            "readyReplicas": {
                "type": "integer",
                "format": "int32",
                "minimum": 0,
                "description": "Replicas of the current version connected and serving.",
            },
            "replicas": {
                "type": "integer",
                "format": "int32",
                "minimum": 0,
                "description": "Replicas of the current version that exist.",
            },
        }
    return {
        "type": "object",
        "description": "Written by the clipper controller.",
        "properties": properties,
    }


def openapi_schema(kind: str) -> dict[str, Any]:
    """The ``openAPIV3Schema`` of one kind's CRD."""
    model_schema = KINDS[kind].model_json_schema(by_alias=True, mode="validation")
    defs = model_schema.get("$defs", {})
    fields = model_schema["properties"]
    name = structural(_resolve(fields["metadata"], defs)["properties"]["name"], defs, ".metadata.name")
    name.pop("description", None)
    schema: dict[str, Any] = {
        "type": "object",
        "description": model_schema.get("description", kind),
        "properties": {
            "apiVersion": {
                "type": "string",
                "description": structural(fields["apiVersion"], defs)["description"],
            },
            "kind": {"type": "string", "description": structural(fields["kind"], defs)["description"]},
            # only metadata.name may be restricted; the rest is Kubernetes' ObjectMeta
            "metadata": {"type": "object", "properties": {"name": name}},
            "spec": structural(fields["spec"], defs, ".spec"),
            "status": status_schema(kind),
        },
    }
    if "spec" in model_schema.get("required", []):
        schema["required"] = ["spec"]
    return schema


def _columns(kind: str) -> list[dict[str, Any]]:
    def col(name: str, path: str, typ: str = "string", description: str = "") -> dict[str, Any]:
        c = {"name": name, "type": typ, "jsonPath": path}
        return c | {"description": description} if description else c

    own = {
        "Model": [
            col("Version", ".status.currentVersion", description="The version that takes the traffic."),
            col("Ready", ".status.readyReplicas", "integer", "Replicas of the current version serving."),
            col("Desired", ".spec.replicas", "integer", "Replicas the spec asks for."),
        ],
        "Application": [col("Model", ".spec.model", description="The model that answers.")],
        "Cluster": [col("Backend", ".spec.backend", description="Where Clipper runs.")],
    }[kind]
    return [
        *own,
        col("Health", ".status.health"),
        col("Sync", ".status.sync"),
        col("Age", ".metadata.creationTimestamp", "date"),
    ]


def crd(kind: str) -> dict[str, Any]:
    """The apiextensions.k8s.io/v1 CustomResourceDefinition of one kind."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": crd_name(kind)},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural(kind),
                "singular": kind.lower(),
                "categories": [CATEGORY],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": openapi_schema(kind)},
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": _columns(kind),
                }
            ],
        },
    }


def crds() -> dict[str, dict[str, Any]]:
    """Every kind's CRD, by kind."""
    return {kind: crd(kind) for kind in KINDS}


GENERATED_BY = "python -m schemas crd deploy/crds"


def crd_text(kind: str) -> str:
    """The committed YAML of one kind's CRD (deploy/crds/<group>_<plural>.yaml)."""
    import io

    from ruamel.yaml import YAML

    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.width = 4096  # long descriptions stay on one line: stable diffs
    out = io.StringIO()
    out.write(f"# Generated from the {kind} model in schemas/ by `{GENERATED_BY}`; do not edit.\n")
    yaml.dump(crd(kind), out)
    return out.getvalue()
