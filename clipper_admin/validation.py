"""Client-side checks of names, versions and input types (the original's regex and messages)."""

from __future__ import annotations

import re

from clipper.datatypes import parse_input_type

from .exceptions import ClipperException

deploy_regex_str = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z"
deployment_regex = re.compile(deploy_regex_str)


def validate_versioned_model_name(name: object, version: object) -> None:
    """The original ``_validate_versioned_model_name``: DNS-1123 labels (no dots, no underscores)."""
    if not isinstance(name, str) or deployment_regex.match(name) is None:
        raise ClipperException(
            f"Invalid value: {name}: a model name must be a valid DNS-1123 "
            " subdomain. It must consist of lower case alphanumeric characters, '-' or '.', "
            "and must start and end with an alphanumeric character (e.g. 'example.com', "
            f"regex used for validation is '{deploy_regex_str}'"
        )
    if not isinstance(version, str) or deployment_regex.match(version) is None:
        raise ClipperException(
            f"Invalid value: {version}: a model version must be a valid DNS-1123 "
            " subdomain. It must consist of lower case alphanumeric characters, '-' or '.', "
            "and must start and end with an alphanumeric character (e.g. 'example.com', "
            f"regex used for validation is '{deploy_regex_str}'"
        )


def validate_input_type(input_type: str) -> str:
    """The canonical name of ``input_type``; ``ClipperException`` with the server's message otherwise."""
    try:
        return parse_input_type(input_type).canonical
    except ValueError as e:
        raise ClipperException(str(e)) from None


def validate_num_replicas(num_replicas: object) -> None:
    if isinstance(num_replicas, bool) or not isinstance(num_replicas, int) or num_replicas < 0:
        raise ClipperException(f"num_replicas must be a non-negative integer, got {num_replicas!r}")
