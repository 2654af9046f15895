"""Output embedding and response shapes (docs/wire-protocol.md)."""

from __future__ import annotations

import orjson
import pytest

from clipper.query_frontend import responses as R


@pytest.mark.parametrize(
    ("raw", "embedded"),
    [
        (b"0.5", b"0.5"),
        (b"-1.0", b"-1.0"),
        (b"hello", b'"hello"'),
        (b'{"a": 1}', b'{"a":1}'),
        (b" [1, 2] ", b"[1,2]"),
        (b"true", b"true"),
        (b"null", b"null"),
        (b"", b'""'),
        (b"NaN", b'"NaN"'),
        (b"1 2", b'"1 2"'),
        ("é/x".encode(), '"é/x"'.encode()),
        (b'"quoted"', b'"quoted"'),
        (b"\xff\xfe", '"\ufffd\ufffd"'.encode()),
    ],
)
def test_output_embedding_rule(raw, embedded):
    assert R.embed_output(raw) == embedded


def test_single_and_default_bodies_have_the_original_key_order():
    assert R.ok_body(7, b"0.5") == b'{"query_id":7,"output":0.5,"default":false}'
    body = R.default_body(3, R.embed_output(b"-1.0"), R.EXPLANATION_NO_MODELS)
    assert body == (
        b'{"query_id":3,"output":-1.0,"default":true,'
        b'"default_explanation":"No connected models found for query"}'
    )
    assert orjson.loads(R.default_body(0, b'"x"', R.EXPLANATION_SLO))["default_explanation"] == (
        "Failed to retrieve a prediction response within the specified latency SLO"
    )


def test_batch_of_one_is_unwrapped_and_batches_keep_order():
    a, b = R.ok_body(0, b"1"), R.ok_body(1, b"2")
    assert R.batch_body([a]) == a
    assert orjson.loads(R.batch_body([a, b])) == {
        "batch_predictions": [
            {"query_id": 0, "output": 1, "default": False},
            {"query_id": 1, "output": 2, "default": False},
        ]
    }
    assert R.EMPTY_BATCH == b'{"batch_predictions":[]}'


def test_error_texts():
    cause = R.json_error_cause("Array input of type Number is not of type double")
    assert cause.startswith(
        "Error parsing JSON: Array input of type Number is not of type double. Expected JSON schema: \n  {"
    )
    assert orjson.loads(R.error_body("Json error", cause)) == {"error": "Json error", "cause": cause}
    assert R.update_error_text("x").startswith(
        'Error parsing JSON: x. Expected JSON schema: \n  {\n   "uid" := string,'
    )


def test_embedded_outputs_take_their_size_in_memory():
    """Embedded outputs are kept by the prediction cache: each must cost about its length, not
    orjson's whole write buffer (4 KiB each, which made a 32 MiB cache hold ~500 MiB)."""
    import tracemalloc

    from clipper.query_frontend.responses import embed_output

    raws = [b"%d.5" % i for i in range(1000)] + [b"not json %d" % i for i in range(1000)]
    tracemalloc.start()
    try:
        kept = [embed_output(r) for r in raws]
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert kept[3] == b"3.5" and kept[1003] == b'"not json 3"'
    assert held < 200 * len(raws), held  # ~50 to 70 bytes each, plus the list
