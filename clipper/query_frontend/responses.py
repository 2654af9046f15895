"""Response bytes of the query frontend (docs/wire-protocol.md), built from precomputed pieces.

Outputs (model outputs and default outputs) are converted once into their embedded JSON form
(:func:`embed_output`) and then pasted between constant prefixes; the per-request work is one
``%`` format of bytes.
"""

from __future__ import annotations

import orjson

from clipper.query_frontend.requests import PREDICT_SCHEMA, UPDATE_SCHEMA

NO_CONNECTED_MODELS = "No connected models found for query"
SLO_MISSED = "Failed to retrieve a prediction response within the specified latency SLO"

OK_FORMAT = b'{"query_id":%d,"output":%b,"default":false}'
_DEFAULT_FMT = b'{"query_id":%d,"output":%b,"default":true,"default_explanation":%b}'
EXPLANATION_NO_MODELS = orjson.dumps(NO_CONNECTED_MODELS)
EXPLANATION_SLO = orjson.dumps(SLO_MISSED)
EMPTY_BATCH = b'{"batch_predictions":[]}'


def embed_output(raw: bytes) -> bytes:
    """The original's output embedding rule: a valid JSON document is embedded as the value it
    denotes (re-serialized compactly), anything else as a JSON string of its text.

    The result is kept (prediction cache, memo of small outputs), so it is returned as a right-sized
    copy: orjson's own bytes object keeps its whole write buffer (4 KiB for a 4-byte number), which
    made a 32 MiB prediction cache hold about 500 MiB."""
    try:
        embedded = orjson.dumps(orjson.loads(raw))
    except (orjson.JSONDecodeError, TypeError):  # TypeError: never (orjson.loads gives serializable values)
        embedded = orjson.dumps(raw.decode("utf-8", "replace"))
    return b"%b" % (embedded,)


def ok_body(query_id: int, embedded: bytes) -> bytes:
    return OK_FORMAT % (query_id, embedded)


def default_body(query_id: int, embedded_default: bytes, explanation: bytes) -> bytes:
    return _DEFAULT_FMT % (query_id, embedded_default, explanation)


def batch_body(parts: list[bytes]) -> bytes:
    """``{"batch_predictions":[...]}``, except that exactly one result is returned unwrapped (docs/wire-protocol.md)."""
    if len(parts) == 1:
        return parts[0]
    return b'{"batch_predictions":[' + b",".join(parts) + b"]}"


def error_body(error: str, cause: str) -> bytes:
    return orjson.dumps({"error": error, "cause": cause})


def json_error_cause(msg: str) -> str:
    """``Error parsing JSON: <msg>. Expected JSON schema: <schema>`` as the original prints it."""
    return f"Error parsing JSON: {msg}. Expected JSON schema: {PREDICT_SCHEMA}"


def update_error_text(msg: str) -> str:
    return f"Error parsing JSON: {msg}. Expected JSON schema: {UPDATE_SCHEMA}"
