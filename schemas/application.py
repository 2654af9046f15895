"""The ``Application`` kind: an HTTP endpoint with a latency objective, linked to a model."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from schemas.common import NAME_PATTERN, InputType, Manifest, Strict


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
        "with the same input type).",
    )


class Application(Manifest):
    """An application: POST /<name>/predict."""

    kind: Literal["Application"] = Field(description="Always 'Application'.")
    spec: ApplicationSpec = Field(description="Input type, default output, objective and model.")
