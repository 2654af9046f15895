"""The registry of manifest kinds and their JSON Schemas.

Editors validate the manifests' raw text, before ``clipper`` substitutes ``${VAR}`` and
``${VAR:-default}`` in every string value. So wherever a value is constrained (a number, a boolean,
an enum, a pattern), the published schemas also accept a string that contains a substitution:
``queryPort: ${QUERY_PORT:-1337}`` is valid to the editor as it is to the loader, which checks the
substituted value.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from schemas.application import Application
from schemas.cluster import Cluster
from schemas.model import Model

KINDS: dict[str, type[BaseModel]] = {"Cluster": Cluster, "Model": Model, "Application": Application}

DRAFT = "https://json-schema.org/draft/2020-12/schema"
ALL_KINDS = "clipper"  # the name of the schema that dispatches on ``kind``: clipper.schema.json

# a string value that contains a ``${VAR}`` or ``${VAR:-default}`` the loader substitutes
SUBSTITUTION_PATTERN = r"\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}"
SUBSTITUTION: dict[str, Any] = {
    "type": "string",
    "pattern": SUBSTITUTION_PATTERN,
    "description": "${VAR} or ${VAR:-default}, substituted from the environment when loaded",
}
_SCHEMA_MAPS = ("properties", "patternProperties", "$defs")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SCHEMA_VALUES = ("items", "additionalProperties", "not", "if", "then", "else")
_LIFTED = ("description", "default", "title")


def _constrained(node: dict[str, Any]) -> bool:
    """A value a substitution must be allowed for: not a plain, unconstrained string."""
    if "enum" in node or "const" in node:
        return True
    t = node.get("type")
    if t in ("integer", "number", "boolean"):
        return True
    return t == "string" and any(k in node for k in ("pattern", "format", "minLength", "maxLength"))


def accept_substitutions(node: Any) -> Any:
    """``node`` with every constrained value also accepting a substitution string."""
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {k: accept_substitutions(v) for k, v in value.items()}
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            out[key] = [accept_substitutions(v) for v in value]
        elif key in _SCHEMA_VALUES:
            out[key] = accept_substitutions(value)
        else:
            out[key] = value
    if not _constrained(out):
        return out
    wrapper = {k: out.pop(k) for k in _LIFTED if k in out}
    wrapper["anyOf"] = [out, SUBSTITUTION]
    return wrapper


def json_schema(kind: str) -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of one kind, as editors use it to validate and complete YAML."""
    schema: dict[str, Any] = accept_substitutions(
        KINDS[kind].model_json_schema(by_alias=True, mode="validation")
    )
    schema["$schema"] = DRAFT
    schema["$id"] = f"https://clipper.ai/schemas/v1/{kind.lower()}.schema.json"
    return schema


def manifest_schema() -> dict[str, Any]:
    """One schema for any manifest document: it dispatches on ``kind`` to that kind's schema.

    This is the schema the examples name (``# yaml-language-server: $schema=...``), so a file that
    holds a Cluster, Models and Applications is validated document by document.
    """
    defs: dict[str, Any] = {}
    branches = []
    for kind in KINDS:
        schema = json_schema(kind)
        for name, sub in schema.pop("$defs", {}).items():
            if defs.setdefault(name, sub) != sub:
                raise ValueError(f"two kinds define {name!r} differently")  # a model naming mistake
        for key in ("$schema", "$id"):
            schema.pop(key)
        if kind in defs:
            raise ValueError(f"a definition is named like the kind {kind!r}")
        defs[kind] = schema
        branches.append(
            {
                "if": {"properties": {"kind": {"const": kind}}, "required": ["kind"]},
                "then": {"$ref": f"#/$defs/{kind}"},
            }
        )
    return {
        "$schema": DRAFT,
        "$id": f"https://clipper.ai/schemas/v1/{ALL_KINDS}.schema.json",
        "title": "Clipper manifest",
        "description": "A Cluster, Model or Application manifest (clipper apply -f); the schema of "
        "each kind is chosen by its 'kind'.",
        "type": "object",
        "required": ["apiVersion", "kind", "metadata"],
        "properties": {"kind": {"enum": list(KINDS), "description": "The kind of object."}},
        "allOf": branches,
        "$defs": dict(sorted(defs.items())),
    }


def _text(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def json_schema_text(kind: str) -> str:
    """The published text of one schema: a kind's, or :data:`ALL_KINDS` for the dispatching one."""
    return _text(manifest_schema() if kind == ALL_KINDS else json_schema(kind))


def schema_filename(kind: str) -> str:
    return f"{kind.lower()}.schema.json"


def published() -> list[str]:
    """What ``clipper schema`` writes: the dispatching schema, then one per kind."""
    return [ALL_KINDS, *KINDS]
