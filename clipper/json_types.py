"""RapidJSON's type names, as the original servers print them in their error messages."""

from __future__ import annotations


def json_type_name(v: object) -> str:
    """``kTypeNames`` of RapidJSON: a JSON ``true`` is "True", any number is "Number"."""
    if v is None:
        return "Null"
    if v is True:
        return "True"
    if v is False:
        return "False"
    if isinstance(v, dict):
        return "Object"
    if isinstance(v, list):
        return "Array"
    if isinstance(v, str):
        return "String"
    return "Number"
