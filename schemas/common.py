"""Pieces shared by every manifest kind: object metadata, names, input types."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

API_VERSION = "clipper.ai/v1"

#: The original's deploy regex for model names and versions (``[a-z0-9]([-a-z0-9]*[a-z0-9])?``).
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"

# Copied from clipper/datatypes.py on purpose: schemas is layer 1 and imports nothing above it.
INPUT_TYPE_ALIASES: dict[str, str] = {
    **{a: "bytes" for a in ("bytes", "byte", "b")},
    **{a: "integers" for a in ("integers", "ints", "integer", "int", "i")},
    **{a: "floats" for a in ("floats", "float", "f")},
    **{a: "doubles" for a in ("doubles", "double", "d")},
    **{a: "strings" for a in ("strings", "string", "str", "strs", "s")},
}

InputTypeName = Literal[
    "bytes", "byte", "b",
    "integers", "ints", "integer", "int", "i",
    "floats", "float", "f",
    "doubles", "double", "d",
    "strings", "string", "str", "strs", "s",
]  # fmt: skip


def canonical_input_type(name: str) -> str:
    """The canonical spelling the management API stores (``ints`` -> ``integers``)."""
    return INPUT_TYPE_ALIASES[name]


InputType = Annotated[
    InputTypeName,
    AfterValidator(canonical_input_type),
    Field(
        description="Type of each input element. Any spelling the original accepts "
        "(bytes|byte|b, integers|ints|integer|int|i, floats|float|f, doubles|double|d, "
        "strings|string|str|strs|s); stored in its canonical form.",
    ),
]

_LABEL_FORBIDDEN = re.compile(r"[,:]")


class Strict(BaseModel):
    """Base for every manifest model: unknown fields are errors, YAML keys are camelCase."""

    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        frozen=True,
    )


class ObjectMeta(Strict):
    name: str = Field(
        pattern=NAME_PATTERN,
        max_length=63,
        description="Name of the object: lower-case letters, digits and '-', starting and ending "
        "with a letter or digit (the original Clipper naming rule).",
    )
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="Free-form labels. On models they are stored as 'key=value' model labels; "
        "keys and values must not contain ',' or ':'.",
    )

    @field_validator("labels")
    @classmethod
    def _labels_storable(cls, v: dict[str, str]) -> dict[str, str]:
        for key, value in v.items():
            if _LABEL_FORBIDDEN.search(key) or _LABEL_FORBIDDEN.search(value):
                raise ValueError(f"label {key}={value!r} contains ',' or ':'")
            if key.startswith("clipper.ai/"):
                raise ValueError(f"label {key!r}: the clipper.ai/ prefix is reserved for the reconciler")
        return v


class Manifest(Strict):
    """Common envelope: apiVersion, kind, metadata, spec (Kubernetes style)."""

    api_version: Literal["clipper.ai/v1"] = Field(
        alias="apiVersion", description="Schema version of the manifest; always clipper.ai/v1."
    )
    metadata: ObjectMeta = Field(description="Name and labels of the object.")
