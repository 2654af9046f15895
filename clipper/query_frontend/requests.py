"""Parsing of predict and update bodies with the original's strict number typing (docs/wire-protocol.md).

The JSON number rules follow RapidJSON as the original does: ``integers`` take integer literals that
fit int32, ``floats``/``doubles`` take only floating literals (with ``.`` or an exponent), ``strings``
and ``bytes`` take one JSON string. orjson keeps ``1`` (int) and ``1.0`` (float) apart, rejects
NaN/Infinity and turns integers too large for 64 bits into floats, exactly RapidJSON's split.

Each parsed input is the raw payload the container receives (little-endian arrays, UTF-8 bytes,
decoded base64). Empty inputs are rejected (they wedged the original's workers).

An ``input_batch`` longer than the frontend's ``--max-batch-inputs`` is refused (:class:`BatchTooLarge`)
before any element is looked at; one longer than :data:`PARSE_CHUNK` is returned unvalidated
(``PredictRequest.unparsed``) so that the caller can validate it in chunks between event-loop turns.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
from array import array
from dataclasses import dataclass
from typing import Any, Final

import orjson

from clipper.datatypes import InputType
from clipper.json_types import json_type_name

PREDICT_SCHEMA = '\n  {\n   "input" := [double] | [int] | [string] | [byte] | [float],\n  }\n'
UPDATE_SCHEMA = (
    '\n  {\n   "uid" := string,\n   "input" := [double] | [int] | [string] | [byte] | [float],\n'
    '   "label" := double\n  }\n'
)
FLT_MAX = 3.4028234663852886e38
DEFAULT_MAX_BATCH_INPUTS = 10_000
PARSE_CHUNK = 1024  # inputs validated (and admitted) per event-loop turn in a large batch


class JsonParseError(Exception):
    """Malformed JSON (RapidJSON's ``parse_error``)."""


class JsonSemanticError(Exception):
    """Well-formed JSON of the wrong shape or type (RapidJSON ``json_semantic_error``)."""


class BatchTooLarge(Exception):
    """An ``input_batch`` with more inputs than the frontend accepts in one request."""

    def __init__(self, n: int, limit: int) -> None:
        super().__init__(
            f"input_batch has {n} inputs, more than the limit of {limit} per request "
            "(query frontend flag --max-batch-inputs): split it into smaller requests"
        )


_ELEMENT_NAME = {
    InputType.INTEGERS: "int",
    InputType.FLOATS: "float",
    InputType.DOUBLES: "double",
    InputType.STRINGS: "string",
}
_NUMERIC_TYPES = frozenset((InputType.INTEGERS, InputType.FLOATS, InputType.DOUBLES))
#: The common input type, as a module constant: compiled code reads it from a static, where
#: ``InputType.DOUBLES`` is an attribute lookup on the enum class per request.
_DOUBLES_TYPE: Final = InputType.DOUBLES
_FLOAT_SET = {float}
_INT_SET = {int}
_B64_INVALID = re.compile(rb"[^A-Za-z0-9+/]")
_SHORT = 64
_DOUBLES: dict[int, struct.Struct] = {}  # packers of n <= _SHORT little-endian doubles, by n
_MISSING = object()


def load_json(body: bytes) -> object:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise _parse_error(e) from None


def _parse_error(e: orjson.JSONDecodeError) -> JsonParseError:
    return JsonParseError(f"JSON parse error: {e.msg[:1].upper()}{e.msg[1:]}. (offset {e.pos})\n")


def _type_mismatch(key: str, expected: str, value: object) -> JsonSemanticError:
    # sic: no space before "but", as the original.
    return JsonSemanticError(
        f"Type mismatch! JSON key {key} expected type {expected}but found type {json_type_name(value)}"
    )


def _bad_element(value: object, expected: str) -> JsonSemanticError:
    return JsonSemanticError(f"Array input of type {json_type_name(value)} is not of type {expected}")


def _empty(itype: InputType) -> JsonSemanticError:
    return JsonSemanticError(f"Empty input of type {itype.canonical} is not allowed")


def _doubles(values: list[float]) -> bytes:
    """Little-endian doubles: a cached struct for short inputs (cheaper than an array), else an array."""
    n = len(values)
    if n > _SHORT:
        return array("d", values).tobytes()
    s = _DOUBLES.get(n)
    if s is None:
        s = _DOUBLES[n] = struct.Struct(f"<{n}d")
    return s.pack(*values)


def _numeric(values: list[Any], itype: InputType) -> bytes:
    if itype is _DOUBLES_TYPE and values:  # the common case: a loop and one struct pack
        for v in values:  # (cheaper than a set of the types, in machine instructions)
            if type(v) is not float:
                break
        else:  # a short input's cached struct, without a call
            packer = _DOUBLES.get(len(values))
            return packer.pack(*values) if packer is not None else _doubles(values)
    if not values:
        raise _empty(itype)
    return _numeric_slow(values, itype)


def _numeric_slow(values: list[Any], itype: InputType) -> bytes:
    types = {*map(type, values)}
    if itype is InputType.FLOATS:
        if types == _FLOAT_SET:
            if max(values) <= FLT_MAX and min(values) >= -FLT_MAX:
                return array("f", values).tobytes()
            bad = next(v for v in values if abs(v) > FLT_MAX)
            raise _bad_element(bad, "float")
    elif itype is InputType.INTEGERS and types == _INT_SET:
        try:
            return array("i", values).tobytes()
        except OverflowError:
            bad = next(v for v in values if not -(2**31) <= v < 2**31)
            raise _bad_element(bad, "int") from None
    want = _FLOAT_SET if itype is not InputType.INTEGERS else _INT_SET
    bad = next(v for v in values if type(v) not in want)
    raise _bad_element(bad, _ELEMENT_NAME[itype])


def decode_base64(text: str) -> bytes:
    """The original's lenient decoder: stops at the first ``=``, ignores characters outside the alphabet."""
    raw = text.encode("ascii", "ignore").split(b"=", 1)[0]
    raw = _B64_INVALID.sub(b"", raw)
    if len(raw) % 4 == 1:
        raw = raw[:-1]
    try:
        return base64.b64decode(raw + b"=" * (-len(raw) % 4))
    except (binascii.Error, ValueError):  # pragma: no cover - cleaned input always decodes
        return b""


def parse_input(value: object, itype: InputType, key: str = "input") -> bytes:
    """One input of the app's type -> the payload the container receives."""
    if type(value) is list and itype in _NUMERIC_TYPES:
        return _numeric(value, itype)
    if itype is InputType.STRINGS:
        if type(value) is not str:
            raise _type_mismatch(key, "String", value)
        if not value:
            raise _empty(itype)
        return value.encode("utf-8", "surrogatepass")
    if itype is InputType.BYTES:
        if type(value) is not str:
            raise JsonSemanticError(
                f"PredictionData of type {json_type_name(value)} is not of type base64-encoded string"
            )
        data = decode_base64(value)
        if not data:
            raise _empty(itype)
        return data
    if type(value) is not list:
        raise _type_mismatch(key, "Array", value)
    return _numeric(value, itype)


def parse_batch(value: object, itype: InputType) -> list[bytes]:
    if type(value) is not list:
        raise _type_mismatch("input_batch", "Array", value)
    out = []
    for v in value:
        if itype is InputType.STRINGS:
            if type(v) is not str:
                raise _bad_element(v, "string")
        elif itype is InputType.BYTES:
            if type(v) is not str:
                raise JsonSemanticError(
                    f"PredictionData of type {json_type_name(v)} is not of type base64-encoded string"
                )
        elif type(v) is not list:
            raise _bad_element(v, "array")
        out.append(parse_input(v, itype))
    return out


class PredictRequest:
    """A parsed predict body. A plain class, not a dataclass: compiled (``clipper.compiled``), a
    dataclass's generated ``__init__`` would still run interpreted, once per request."""

    __slots__ = ("inputs", "batch", "version", "unparsed")

    def __init__(
        self, inputs: list[bytes], batch: bool, version: str | None, unparsed: list[Any] | None = None
    ) -> None:
        self.inputs = inputs
        self.batch = batch  # True when the body used input_batch (answers in batch form unless exactly one)
        self.version = version
        self.unparsed = unparsed  # a large input_batch still to validate (parse_batch, in chunks)


def parse_predict(
    body: bytes, itype: InputType, max_batch_inputs: int = DEFAULT_MAX_BATCH_INPUTS
) -> PredictRequest:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise _parse_error(e) from None
    if type(doc) is not dict:
        raise JsonSemanticError("Can only get key-value pair from an object")
    version = doc.get("version")
    if version is not None and type(version) is not str:
        raise _type_mismatch("version", "String", version)
    value = doc.get("input", _MISSING)
    if value is not _MISSING:
        if type(value) is list and itype in _NUMERIC_TYPES:  # parse_input's common case, one call less
            return PredictRequest([_numeric(value, itype)], False, version)
        return PredictRequest([parse_input(value, itype)], False, version)
    if "input_batch" in doc:
        values = doc["input_batch"]
        if type(values) is list:
            if len(values) > max_batch_inputs:
                raise BatchTooLarge(len(values), max_batch_inputs)
            if len(values) > PARSE_CHUNK:
                return PredictRequest([], True, version, values)
        return PredictRequest(parse_batch(values, itype), True, version)
    raise JsonSemanticError("JSON object does not have required keys input or input_batch")


@dataclass(slots=True)
class UpdateRequest:
    uid: int
    input: bytes
    label: float


def _required(doc: dict[str, Any], key: str) -> object:
    if key not in doc:
        raise JsonSemanticError(f"JSON object does not have required key: {key}")
    return doc[key]


def parse_update(body: bytes, itype: InputType) -> UpdateRequest:
    doc = load_json(body)
    if type(doc) is not dict:
        raise JsonSemanticError("Can only get key-value pair from an object")
    uid = _required(doc, "uid")
    if type(uid) is not int or not -(2**63) <= uid < 2**63:
        raise (
            _type_mismatch("uid", "Number", uid)
            if type(uid) is not int
            else JsonSemanticError("uid does not fit in a signed 64-bit integer")
        )
    inp = parse_input(_required(doc, "input"), itype)
    label = _required(doc, "label")
    if type(label) is not float:
        raise (
            _type_mismatch("label", "Number", label)
            if type(label) is not int
            else JsonSemanticError("Type mismatch! JSON key label expected type Double but found an integer")
        )
    return UpdateRequest(uid, inp, label)
