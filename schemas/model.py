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


class CanaryStep(Strict):
    weight: float = Field(
        gt=0,
        le=100,
        description="Percent of each affected application's traffic (of the share that went to the "
        "model's current version) sent to the new version during this step.",
    )
    pause: float = Field(
        default=0,
        ge=0,
        description="Seconds the step lasts at least before its analysis may pass (it also needs the "
        "analysis' minRequests); a failing analysis rolls back at once, without waiting for the pause.",
    )


class RolloutAnalysis(Strict):
    """Thresholds on the new version's statistics of one step (its requests since the step began)."""

    max_default_rate: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Largest share of the new version's requests answered with the default output "
        "(model errors, missed objectives, no replica) before the rollout rolls back.",
    )
    max_error_rate: float | None = Field(
        default=0.05,
        ge=0,
        le=1,
        description="Largest share of the new version's requests that raised a model error before the "
        "rollout rolls back (default 0.05).",
    )
    max_p99_latency_ratio: float | None = Field(
        default=None,
        gt=0,
        description="Largest p99 latency of the new version, as a multiple of the application's "
        "latencySloMicros (the p99 is a histogram bucket's upper bound: 0.5 ms ... 5 s).",
    )
    min_requests: int = Field(
        default=20,
        ge=1,
        description="Requests the new version must have answered in a step before its analysis counts "
        "(a step passes only with at least this many, and a failure needs them too).",
    )
    step_timeout_seconds: float = Field(
        default=600,
        gt=0,
        description="A step that has not seen minRequests after this many seconds rolls back "
        "(no traffic is no evidence).",
    )


#: strategies of ``Model.spec.rollout``
RolloutStrategy = Literal["immediate", "canary", "blueGreen"]


class Rollout(Strict):
    strategy: RolloutStrategy = Field(
        default="immediate",
        description="How a new version takes traffic. immediate: all at once as soon as its replicas "
        "are ready (and its health check passes). canary: the applications' traffic moves to it "
        "through 'steps', each analysed; a failing analysis rolls back. blueGreen: all traffic at "
        "once after the health gate, the previous version's replicas kept until one analysed step "
        "passes (steps: at most one, of weight 100; its pause is the observation window).",
    )
    steps: list[CanaryStep] = Field(
        default_factory=list,
        description="canary: the steps, weights strictly increasing (e.g. 10, 50, 100). After the "
        "last step passes the version becomes current (100 %).",
    )
    analysis: RolloutAnalysis = Field(
        default_factory=RolloutAnalysis,
        description="Thresholds checked during every step (canary, blueGreen).",
    )

    @model_validator(mode="after")
    def _steps_fit(self) -> Rollout:
        weights = [s.weight for s in self.steps]
        if self.strategy == "immediate" and self.steps:
            raise ValueError("steps apply only to the canary and blueGreen strategies")
        if self.strategy == "canary":
            if not weights:
                raise ValueError(
                    "a canary rollout needs at least one step (e.g. steps: [{weight: 10, pause: 60}])"
                )
            for a, b in zip(weights, weights[1:], strict=False):
                if not b > a:
                    raise ValueError(f"canary step weights must increase strictly, got {a:g} then {b:g}")
        if self.strategy == "blueGreen" and (len(weights) > 1 or any(w != 100 for w in weights)):
            raise ValueError("a blueGreen rollout has at most one step, of weight 100 (its pause: how long "
                             "the previous version is kept while the new one is analysed)")  # fmt: skip
        return self

    def effective_steps(self) -> list[CanaryStep]:
        """The steps the rollout walks: blueGreen without steps is one step of weight 100, no pause."""
        if self.strategy == "blueGreen" and not self.steps:
            return [CanaryStep(weight=100)]
        return list(self.steps)


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
    rollout: Rollout = Field(
        default_factory=Rollout,
        description="How a new version takes traffic from the current one: immediate (default), "
        "canary (weighted steps with analysis and automatic rollback) or blueGreen.",
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
