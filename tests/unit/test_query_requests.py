"""Predict/update parsing: the original's strict number typing and error texts (docs/wire-protocol.md)."""

from __future__ import annotations

import base64
import struct

import pytest

from clipper.datatypes import InputType
from clipper.query_frontend.requests import (
    JsonParseError,
    JsonSemanticError,
    decode_base64,
    parse_predict,
    parse_update,
)

D, F, N, S, B = InputType.DOUBLES, InputType.FLOATS, InputType.INTEGERS, InputType.STRINGS, InputType.BYTES


def test_doubles_accept_floating_literals_only():
    r = parse_predict(b'{"input": [1.0, 2.5, 1e3]}', D)
    assert r.inputs == [struct.pack("<3d", 1.0, 2.5, 1000.0)] and not r.batch and r.version is None
    with pytest.raises(JsonSemanticError, match="^Array input of type Number is not of type double$"):
        parse_predict(b'{"input": [1, 2, 3]}', D)
    with pytest.raises(JsonSemanticError, match="Array input of type True is not of type double"):
        parse_predict(b'{"input": [1.0, true]}', D)


def test_floats_reject_integers_and_out_of_range():
    assert parse_predict(b'{"input": [1.5, -2.0]}', F).inputs == [struct.pack("<2f", 1.5, -2.0)]
    with pytest.raises(JsonSemanticError, match="is not of type float"):
        parse_predict(b'{"input": [1]}', F)
    with pytest.raises(JsonSemanticError, match="is not of type float"):
        parse_predict(b'{"input": [3.5e38]}', F)


def test_integers_take_int32_literals_only():
    assert parse_predict(b'{"input": [1, -2, 2147483647]}', N).inputs == [
        struct.pack("<3i", 1, -2, 2**31 - 1)
    ]
    for bad in (b"[3.0]", b"[2147483648]", b"[false]", b'["1"]'):
        with pytest.raises(JsonSemanticError, match="is not of type int"):
            parse_predict(b'{"input": ' + bad + b"}", N)


def test_one_bad_element_inside_a_batch_rejects_the_request():
    with pytest.raises(JsonSemanticError, match="Array input of type Number is not of type int"):
        parse_predict(b'{"input_batch": [[1, 2], [3.2, 0.3]]}', N)
    with pytest.raises(JsonSemanticError, match="Array input of type Number is not of type array"):
        parse_predict(b'{"input_batch": [1.0]}', D)


def test_strings_and_bytes_are_single_json_strings():
    assert parse_predict('{"input": "héllo"}'.encode(), S).inputs == ["héllo".encode()]
    with pytest.raises(
        JsonSemanticError, match="^Type mismatch! JSON key input expected type Stringbut found type Array$"
    ):
        parse_predict(b'{"input": ["a"]}', S)
    data = bytes(range(10))
    assert parse_predict(b'{"input": "%s"}' % base64.b64encode(data), B).inputs == [data]
    with pytest.raises(
        JsonSemanticError, match="PredictionData of type Number is not of type base64-encoded string"
    ):
        parse_predict(b'{"input": 5}', B)


def test_base64_is_lenient_like_the_original():
    assert decode_base64("aGVsbG8") == b"hello"  # padding optional
    assert decode_base64("aGVsbG8=garbage") == b"hello"  # stops at the first '='
    assert decode_base64("aGVs\nbG8=") == b"hello"  # characters outside the alphabet ignored


def test_batches_and_precedence():
    r = parse_predict(b'{"input_batch": ["a", "bc"]}', S)
    assert r.inputs == [b"a", b"bc"] and r.batch
    assert parse_predict(b'{"input_batch": []}', D).inputs == []
    r = parse_predict(b'{"input": [1.0], "input_batch": [[2.0]], "uid": 4}', D)  # input wins
    assert not r.batch and len(r.inputs) == 1
    assert parse_predict(b'{"input": [1.0], "version": "7"}', D).version == "7"


def test_shape_errors():
    with pytest.raises(
        JsonSemanticError, match="^JSON object does not have required keys input or input_batch$"
    ):
        parse_predict(b'{"inputs": [1.0]}', D)
    with pytest.raises(JsonSemanticError, match="Can only get key-value pair from an object"):
        parse_predict(b"[1.0, 2.0]", D)
    with pytest.raises(JsonSemanticError, match="JSON key version expected type Stringbut found type Number"):
        parse_predict(b'{"input": [1.0], "version": 2}', D)
    with pytest.raises(
        JsonSemanticError, match="JSON key input_batch expected type Arraybut found type String"
    ):
        parse_predict(b'{"input_batch": "x"}', D)


@pytest.mark.parametrize("body", [b"", b"{", b'{"input": [NaN]}', b'{"input": [Infinity]}', b"{} {}"])
def test_malformed_json_and_non_finite_numbers_are_parse_errors(body):
    with pytest.raises(JsonParseError, match="JSON parse error"):
        parse_predict(body, D)


@pytest.mark.parametrize(
    ("body", "itype"), [(b'{"input": []}', D), (b'{"input": ""}', S), (b'{"input": "=="}', B)]
)
def test_empty_inputs_are_rejected(body, itype):
    with pytest.raises(JsonSemanticError, match="Empty input"):
        parse_predict(body, itype)


def test_update_requires_integer_uid_and_floating_label():
    u = parse_update(b'{"uid": 0, "input": [1.0], "label": 1.0}', D)
    assert (u.uid, u.label) == (0, 1.0)
    with pytest.raises(JsonSemanticError, match="required key: label"):
        parse_update(b'{"uid": 0, "input": [1.0]}', D)
    with pytest.raises(JsonSemanticError, match="label"):
        parse_update(b'{"uid": 0, "input": [1.0], "label": 1}', D)
    with pytest.raises(JsonSemanticError, match="JSON key uid"):
        parse_update(b'{"uid": "0", "input": [1.0], "label": 1.0}', D)


def test_a_batch_over_the_limit_is_refused_before_its_elements_are_read():
    from clipper.query_frontend.requests import BatchTooLarge

    body = b'{"input_batch": [' + b",".join([b'"not an array"'] * 11) + b"]}"
    with pytest.raises(BatchTooLarge, match="input_batch has 11 inputs, more than the limit of 10 "):
        parse_predict(body, InputType.DOUBLES, max_batch_inputs=10)
    assert len(parse_predict(body.replace(b'"not an array"', b"[1.0]"), InputType.DOUBLES, 11).inputs) == 11


def test_a_large_batch_is_left_for_chunked_validation():
    from clipper.query_frontend.requests import PARSE_CHUNK

    n = PARSE_CHUNK + 1
    pr = parse_predict(b'{"input_batch": [' + b",".join([b"[1.0]"] * n) + b"]}", InputType.DOUBLES)
    assert pr.inputs == [] and pr.batch and pr.unparsed == [[1.0]] * n


def test_a_large_batch_is_admitted_a_chunk_per_event_loop_turn():
    """The processor gives the loop back between chunks: other callbacks run while it admits."""
    import asyncio

    from clipper.config_store.base import AppRecord
    from clipper.metrics import MetricsRegistry
    from clipper.query_frontend.cache import PredictionCache
    from clipper.query_frontend.processor import QueryProcessor
    from clipper.query_frontend.routes import AppRoute

    async def main() -> tuple[int, object]:
        loop = asyncio.get_running_loop()
        metrics = MetricsRegistry()
        app = AppRoute(AppRecord("a", "doubles", "0.0", 100_000), (), None, metrics)
        processor = QueryProcessor(loop, PredictionCache(0), None, metrics)  # type: ignore[arg-type]
        turns = 0

        def tick() -> None:
            nonlocal turns
            turns += 1
            loop.call_soon(tick)

        loop.call_soon(tick)
        result = await processor.predict_chunked(app, [b"x"] * 10_000, None, 1000)
        return turns, result

    turns, result = asyncio.run(main())
    assert turns >= 9  # ten chunks, the loop ran in between
    body = result._early.body  # no model: every input got the default, resolved at once
    assert body.count(b'"default":true') == 10_000


@pytest.mark.parametrize("n", [1, 4, 64, 65, 1000])
def test_doubles_of_any_length_pack_as_little_endian_doubles(n):
    """Short inputs take a cached struct, long ones an array: the bytes are the same."""
    values = [i + 0.5 for i in range(n)]
    body = b'{"input": [%b]}' % b", ".join(repr(v).encode() for v in values)
    assert parse_predict(body, D).inputs == [struct.pack(f"<{n}d", *values)]
    with pytest.raises(JsonSemanticError, match="Array input of type Number is not of type double"):
        parse_predict(body[: body.rindex(b".5]")] + b"]}", D)  # the last element an integer
