"""Request-body parsing with the original's (RapidJSON + json_util) semantics and error texts.

RapidJSON rules kept: duplicate keys resolve to the *first* member; ``NaN``/``Infinity`` are invalid;
``int`` means an integer literal that fits int32 (``5.0`` and ``true`` are not ints); the body is
parsed as a C string, so it ends at the first NUL byte.
"""

from __future__ import annotations

import json
import re
from typing import Any

from clipper.json_types import json_type_name
from clipper.management_frontend import messages as msg

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


class JsonError(Exception):
    """A parse or semantic error: answered as ``Error parsing JSON: <msg>. Expected JSON schema: ...``."""


def _first_wins(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d: dict[str, Any] = {}
    for k, v in pairs:
        d.setdefault(k, v)
    return d


def _reject_constant(name: str) -> Any:
    raise ValueError(f"Expecting value: {name}")


_DECODER = json.JSONDecoder(object_pairs_hook=_first_wins, parse_constant=_reject_constant)
_WS = re.compile(r"[ \t\n\r]*")


def _container_at(text: str, pos: int) -> str:
    """Whether ``pos`` lies inside an object or an array (for the "Missing a comma" texts)."""
    stack: list[str] = []
    in_str = esc = False
    for ch in text[:pos]:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            stack.append(ch)
        elif ch in "]}" and stack:
            stack.pop()
    return stack[-1] if stack else ""


def _rapidjson_message(e: json.JSONDecodeError, text: str) -> tuple[str, int]:
    m, pos = e.msg, e.pos
    if m.startswith("Expecting value"):
        return "Invalid value.", pos
    if m.startswith("Expecting property name"):
        return "Missing a name for object member.", pos
    if m.startswith("Expecting ':'"):
        return "Missing a colon after a name of object member.", pos
    if m.startswith("Expecting ','"):
        if _container_at(text, pos) == "[":
            return "Missing a comma or ']' after an array element.", pos
        return "Missing a comma or '}' after an object member.", pos
    if m.startswith("Extra data"):
        return "The document root must not be followed by other values.", pos
    if m.startswith("Unterminated string"):
        return "Missing a closing quotation mark in string.", len(text)
    if m.startswith("Invalid \\u") or m.startswith("Invalid \\uXXXX"):
        return "Incorrect hex digit after \\u escape in string.", pos
    if m.startswith("Invalid \\escape"):
        return "Invalid escape character in string.", pos
    if m.startswith("Invalid control character"):
        return "Invalid encoding in string.", pos
    return "Unspecific syntax error.", pos


def _skip_ws(text: str, pos: int) -> int:
    """The index of the first character at or after ``pos`` that is not JSON whitespace."""
    m = _WS.match(text, pos)
    assert m is not None  # the pattern matches the empty string
    return m.end()


def parse(body: bytes) -> Any:
    """The parsed document, or :class:`JsonError` with the original's parse-error text."""
    nul = body.find(b"\0")
    if nul >= 0:
        body = body[:nul]
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise JsonError(msg.parse_error("Invalid encoding in string.", e.start)) from None
    start = _skip_ws(text, 0)
    if start == len(text):
        raise JsonError(msg.parse_error("The document is empty.", start))
    try:
        doc, end = _DECODER.raw_decode(text, start)
    except json.JSONDecodeError as e:
        what, offset = _rapidjson_message(e, text)
        raise JsonError(msg.parse_error(what, offset)) from None
    except ValueError:  # NaN / Infinity
        raise JsonError(msg.parse_error("Invalid value.", start)) from None
    except RecursionError:
        raise JsonError(msg.parse_error("Unspecific syntax error.", start)) from None
    end = _skip_ws(text, end)
    if end != len(text):
        raise JsonError(msg.parse_error("The document root must not be followed by other values.", end))
    return doc


def _member(d: Any, key: str) -> Any:
    if not isinstance(d, dict):
        raise JsonError(msg.NOT_AN_OBJECT)
    if key not in d:
        raise JsonError(msg.missing_key(key))
    return d[key]


def get_string(d: Any, key: str) -> str:
    v = _member(d, key)
    if not isinstance(v, str):
        raise JsonError(msg.type_mismatch(key, "String", json_type_name(v)))
    return v


def get_int(d: Any, key: str) -> int:
    v = _member(d, key)
    t = json_type_name(v)
    if t != "Number":
        raise JsonError(msg.type_mismatch(key, "Number", t))
    if not isinstance(v, int) or not INT32_MIN <= v <= INT32_MAX:
        raise JsonError(msg.not_int(t))
    return v


def get_bool(d: Any, key: str) -> bool:
    v = _member(d, key)
    if not isinstance(v, bool):
        raise JsonError(msg.bool_mismatch(key, json_type_name(v)))
    return v


def get_string_array(d: Any, key: str) -> list[str]:
    v = _member(d, key)
    if not isinstance(v, list):
        raise JsonError(msg.type_mismatch(key, "Array", json_type_name(v)))
    for elem in v:
        if not isinstance(elem, str):
            raise JsonError(msg.array_elem_not_string(json_type_name(elem)))
    return v
