"""Manifests as pydantic models (pure data, no I/O).

Kinds: ``Cluster``, ``Model``, ``Application`` (apiVersion ``clipper.ai/v1``). The field descriptions
are the documentation; ``clipper schema`` writes their JSON Schemas (one per kind and one,
``clipper.schema.json``, for any manifest) to ``schemas/json/``.
"""

from schemas.application import Application, ApplicationSpec
from schemas.cluster import Cluster, ClusterSpec
from schemas.common import API_VERSION, INPUT_TYPE_ALIASES, ObjectMeta, canonical_input_type
from schemas.kinds import KINDS, json_schema
from schemas.model import Model, ModelSource, ModelSpec, PySparkSource, PythonSource

__all__ = [
    "API_VERSION",
    "INPUT_TYPE_ALIASES",
    "KINDS",
    "Application",
    "ApplicationSpec",
    "Cluster",
    "ClusterSpec",
    "Model",
    "ModelSource",
    "ModelSpec",
    "ObjectMeta",
    "PySparkSource",
    "PythonSource",
    "canonical_input_type",
    "json_schema",
]
