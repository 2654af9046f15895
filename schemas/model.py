"""The ``Model`` kind: a versioned prediction function and how many replicas serve it."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from schemas.common import NAME_PATTERN, InputType, Manifest, Strict

#: ``path/to/file.py:func`` or ``package.module:func`` (attribute may be dotted: ``mod:Class.method``).
FUNCTION_REF_PATTERN = r"^[^:\s]+:[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"


class PythonSource(Strict):
    function: str = Field(
        pattern=FUNCTION_REF_PATTERN,
        description="The prediction function: 'path/to/file.py:func' (relative to the manifest's "
        "directory) or 'package.module:func' (importable). It is called with a batch of inputs and "
        "returns one output per input.",
    )


class PySparkSource(Strict):
    function: str = Field(
        pattern=FUNCTION_REF_PATTERN,
        description="The prediction function 'file.py:func' or 'module:func', called as "
        "func(spark, model, inputs).",
    )
    model_path: str = Field(
        description="Directory written by model.save(...), relative to the manifest's directory."
    )
    model_class: str = Field(
        pattern=r"^pyspark(\.[A-Za-z_][A-Za-z0-9_]*)+$",
        description="Dotted class of the saved model, e.g. "
        "pyspark.ml.classification.LogisticRegressionModel.",
    )


class ModelSource(Strict):
    """Exactly one of python, pyspark or image."""

    python: PythonSource | None = Field(default=None, description="A Python function (closure).")
    pyspark: PySparkSource | None = Field(default=None, description="A PySpark model with a function.")
    image: str | None = Field(
        default=None,
        min_length=1,
        description="A prebuilt model-container image (docker, kubernetes) that serves the model.",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> ModelSource:
        given = [k for k in ("python", "pyspark", "image") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "exactly one of python, pyspark or image is required"
                + (f" (got {', '.join(given)})" if given else "")
            )
        return self

    @property
    def kind(self) -> str:
        return "python" if self.python else "pyspark" if self.pyspark else "image"


class HealthCheck(Strict):
    input: list[int | float] | str = Field(
        description="Sample input of a smoke prediction, as in a predict request: a list of numbers for "
        "ints/floats/doubles models, a string for strings models (base64 for bytes models). A new version takes traffic only once each rollout's "
        "smoke prediction on it answers without error."
    )
    timeout_seconds: float = Field(
        default=10.0, gt=0, description="How long the smoke prediction may take before it counts as failed."
    )


class ModelSpec(Strict):
    input_type: InputType
    version: str | None = Field(
        default=None,
        pattern=NAME_PATTERN,
        max_length=63,
        description="Version of the model. When absent it is derived from the content (a short hash of "
        "the function's source, packages, base image, input type and batch size): an unchanged model "
        "is never rebuilt; a changed one rolls out as a new version.",
    )
    replicas: int = Field(
        default=1, ge=0, description="Number of model containers serving the current version."
    )
    batch_size: int = Field(
        default=-1,
        description="Largest batch sent to a replica; -1 lets Clipper size batches adaptively from the "
        "applications' latency objectives.",
    )
    source: ModelSource = Field(description="What serves the model: python, pyspark or image.")
    packages: list[str] = Field(
        default_factory=list,
        description="pip requirements installed into the model image (e.g. 'numpy>=1.24').",
    )
    base_image: str | None = Field(
        default=None,
        description="Base image of the model container; the closure image matching this Python when absent.",
    )
    health: HealthCheck | None = Field(
        default=None,
        description="Health gate of a rollout: a smoke prediction on a sample input that must answer "
        "without error before the new version takes traffic. Absent: a new version takes traffic once its "
        "replicas are connected and not reported hung (no prediction is sent).",
    )

    @field_validator("batch_size")
    @classmethod
    def _batch(cls, v: int) -> int:
        if v != -1 and v <= 0:
            raise ValueError("batchSize must be -1 (adaptive) or greater than 0")
        return v

    @field_validator("packages")
    @classmethod
    def _pkgs(cls, v: list[str]) -> list[str]:
        for p in v:
            if not p.strip() or re.search(r"\s", p.strip()):
                raise ValueError(f"package {p!r} must be one pip requirement without spaces")
        return v

    @model_validator(mode="after")
    def _health_input_fits(self) -> ModelSpec:
        if self.health is not None:
            wants_string = self.input_type in ("strings", "bytes")
            if wants_string != isinstance(self.health.input, str):
                kind = "a string" if wants_string else "a list of numbers"
                raise ValueError(f"health.input of a {self.input_type} model must be {kind}")
        return self

    @model_validator(mode="after")
    def _image_has_no_build_inputs(self) -> ModelSpec:
        if self.source.image is not None and (self.packages or self.base_image):
            raise ValueError("packages and baseImage apply only to python and pyspark sources")
        return self


class Model(Manifest):
    """A model: its source, version and replicas."""

    kind: Literal["Model"] = Field(description="Always 'Model'.")
    spec: ModelSpec = Field(description="Source, version, replicas and build settings.")
