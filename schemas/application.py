"""The ``Application`` kind: an HTTP endpoint with a latency objective, linked to a model."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from schemas.common import NAME_PATTERN, InputType, Manifest, Strict


class WeightedModel(Strict):
    name: str = Field(pattern=NAME_PATTERN, description="A Model (same input type as the application).")
    weight: float = Field(
        default=1,
        ge=0,
        description="Relative share of the requests routed to this model's current version "
        "(weights are normalised; they must sum to more than 0).",
    )


class ShadowModel(Strict):
    model: str = Field(pattern=NAME_PATTERN, description="The Model also queried (same input type).")
    version: str | None = Field(
        default=None,
        pattern=NAME_PATTERN,
        max_length=63,
        description="Its version; absent: its current version (required when it is one of the "
        "application's own models).",
    )
    percent: float = Field(
        gt=0,
        le=100,
        description="Percent of the requests also sent to the shadow; its answers are only compared.",
    )


class SelectionPolicy(Strict):
    policy: Literal["exp3", "exp4"] = Field(
        description="exp3: one model per request, learning from /<app>/update feedback; exp4: every "
        "model answers, outputs combined by learned weight."
    )
    eta: float = Field(default=0.1, gt=0, description="Learning rate.")
    gamma: float = Field(default=0.1, gt=0, le=1, description="exp3: share of uniform exploration.")


class ApplicationSpec(Strict):
    input_type: InputType
    default_output: str = Field(
        default="None",
        description="Answer returned when no prediction arrives within the latency objective.",
    )
    latency_slo_micros: int = Field(
        default=100000,
        gt=0,
        description="Latency objective in microseconds; batches are sized to meet it and the default "
        "output is returned when it is missed.",
    )
    model: str | None = Field(
        default=None,
        pattern=NAME_PATTERN,
        description="Name of the Model that answers this application's queries (at most one, "
        "with the same input type). For several models use 'models' instead.",
    )
    models: list[WeightedModel] | None = Field(
        default=None,
        min_length=1,
        description="A/B/N: several models (same input type) with weights; each request goes to one "
        "of them (the current version of each). The first is the one linked to the application. "
        "Instead of 'model'.",
    )
    sticky_key: str | None = Field(
        default=None,
        min_length=1,
        description="A request's JSON field (else HTTP header) whose value keeps a client on one model "
        "of 'models', and on one version during a canary rollout.",
    )
    shadow: ShadowModel | None = Field(
        default=None,
        description="Also send a share of the requests to another model (version); its answers are "
        "compared with the primary's, never returned.",
    )
    selection: SelectionPolicy | None = Field(
        default=None,
        description="A learning selection policy over 'models' (their weights are then ignored).",
    )

    @model_validator(mode="after")
    def _routing_fits(self) -> ApplicationSpec:
        if self.model is not None and self.models is not None:
            raise ValueError("give either model or models, not both")
        names = [m.name for m in self.models or ()]
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"models lists {', '.join(dup)} more than once")
        if self.models is not None and not sum(m.weight for m in self.models) > 0:
            raise ValueError("the weights of models must sum to more than 0")
        own = set(names) | ({self.model} if self.model else set())
        if not own and (self.sticky_key or self.shadow or self.selection):
            raise ValueError("stickyKey, shadow and selection need the application's model or models")
        if self.selection is not None:
            if self.models is None:
                raise ValueError("selection chooses among models: list them under models")
            if self.sticky_key is not None:
                raise ValueError("selection and stickyKey cannot be combined (the policy picks the model)")
            if self.selection.policy == "exp4" and self.shadow is not None:
                raise ValueError("selection exp4 already queries every model: remove shadow")
        if self.shadow is not None and self.shadow.model in own and self.shadow.version is None:
            raise ValueError(
                f"shadow.model {self.shadow.model!r} is one of the application's own models: name the "
                "shadow's version (its current version already answers)"
            )
        return self

    def model_names(self) -> list[str]:
        """Every model the application routes to (its link first), then its shadow's."""
        names = [self.model] if self.model else [m.name for m in self.models or ()]
        if self.shadow is not None and self.shadow.model not in names:
            names.append(self.shadow.model)
        return names


class Application(Manifest):
    """An application: POST /<name>/predict."""

    kind: Literal["Application"] = Field(description="Always 'Application'.")
    spec: ApplicationSpec = Field(description="Input type, default output, objective and model.")
