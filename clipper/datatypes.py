"""Input types: canonical names, the aliases the management API accepts, and the RPC codes.

The codes are Clipper's ``DataType`` enum (RPC protocol version 3); the canonical names are what
the config store keeps and what the admin API returns.
"""

from __future__ import annotations

import enum


class InputType(enum.IntEnum):
    """Clipper's ``DataType``; the integer value is the code on the wire."""

    BYTES = 0
    INTEGERS = 1
    FLOATS = 2
    DOUBLES = 3
    STRINGS = 4

    @property
    def canonical(self) -> str:
        return _CANONICAL[self]

    def __str__(self) -> str:
        return self.canonical


_CANONICAL = {
    InputType.BYTES: "bytes",
    InputType.INTEGERS: "integers",
    InputType.FLOATS: "floats",
    InputType.DOUBLES: "doubles",
    InputType.STRINGS: "strings",
}

#: Every spelling the original management frontend accepts (case-sensitive), by canonical type.
INPUT_TYPE_ALIASES: dict[str, InputType] = {
    **{a: InputType.BYTES for a in ("bytes", "byte", "b")},
    **{a: InputType.INTEGERS for a in ("integers", "ints", "integer", "int", "i")},
    **{a: InputType.FLOATS for a in ("floats", "float", "f")},
    **{a: InputType.DOUBLES for a in ("doubles", "double", "d")},
    **{a: InputType.STRINGS for a in ("strings", "string", "str", "strs", "s")},
}


def parse_input_type(text: str) -> InputType:
    """Resolve an alias; raises ``ValueError("<x> is not a valid input string")`` as the original."""
    try:
        return INPUT_TYPE_ALIASES[text]
    except (KeyError, TypeError):
        raise ValueError(f"{text} is not a valid input string") from None


def canonical_input_type(text: str) -> str:
    return parse_input_type(text).canonical
