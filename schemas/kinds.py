"""The registry of manifest kinds and their JSON Schemas."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from schemas.application import Application
from schemas.cluster import Cluster
from schemas.model import Model

KINDS: dict[str, type[BaseModel]] = {"Cluster": Cluster, "Model": Model, "Application": Application}


def json_schema(kind: str) -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of one kind, as editors use it to validate and complete YAML."""
    schema = KINDS[kind].model_json_schema(by_alias=True, mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://clipper.ai/schemas/v1/{kind.lower()}.schema.json"
    return schema


def json_schema_text(kind: str) -> str:
    return json.dumps(json_schema(kind), indent=2, sort_keys=True) + "\n"


def schema_filename(kind: str) -> str:
    return f"{kind.lower()}.schema.json"
