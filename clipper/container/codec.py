"""What the prediction function receives and how its result becomes response outputs.

Inputs follow the original ``rpc.py`` (``clipper-admin-api.md`` §9.3): numeric inputs (bytes as
signed int8, ints int32, floats float32, doubles float64, little-endian) of equal byte length arrive
as one 2-D array of shape ``(n, item_len)``; ragged ones as a 1-D object array of 1-D arrays; strings
as a 1-D object array of ``bytes``. Unlike the original the 2-D array is a fresh, writable array
(not a view into a buffer the next request overwrites).

Outputs: exactly one ``str`` per input, as the API documents ("a list of strings of exactly the same
length"). The original closure container silently ``str()``-ed anything, so a model returning
``[0.5]`` and one returning ``["0.5"]`` looked alike and a model returning ``[None]`` answered
``"None"``; here a non-string output, a wrong count or a non-list result becomes an error output for
every input of the batch, whose text the query frontend returns as the default explanation.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from clipper.datatypes import InputType
from clipper.rpc.protocol import encode_error_output

_DTYPES = {
    InputType.BYTES: np.dtype("<i1"),
    InputType.INTEGERS: np.dtype("<i4"),
    InputType.FLOATS: np.dtype("<f4"),
    InputType.DOUBLES: np.dtype("<f8"),
}


class InputDecodeError(ValueError):
    pass


def decode_inputs(input_type: InputType, inputs: list[bytes]) -> np.ndarray:
    if input_type == InputType.STRINGS:
        arr = np.empty(len(inputs), dtype=object)
        arr[:] = [bytes(b) for b in inputs]
        return arr
    dtype = _DTYPES[input_type]
    size = dtype.itemsize
    for i, b in enumerate(inputs):
        if len(b) % size:
            raise InputDecodeError(f"input {i} has {len(b)} bytes, not a whole number of {input_type} items")
    lengths = {len(b) for b in inputs}
    if len(lengths) <= 1:
        item_len = (lengths.pop() // size) if lengths else 0
        buf = bytearray().join(inputs)  # one copy, writable
        return np.frombuffer(buf, dtype=dtype).reshape(len(inputs), item_len)
    arr = np.empty(len(inputs), dtype=object)
    arr[:] = [np.frombuffer(bytes(b), dtype=dtype) for b in inputs]
    return arr


def encode_outputs(result: Any, n_inputs: int) -> list[bytes]:
    """One output per input; on any problem, one error output per input explaining it."""
    if result is None or isinstance(result, str | bytes) or not hasattr(result, "__iter__"):
        return [encode_error_output(f"Model returned a non-list output ({type(result).__name__})")] * n_inputs
    try:
        items = list(result)
    except Exception as e:
        return [encode_error_output(f"Model output cannot be iterated: {type(e).__name__}: {e}")] * n_inputs
    for i, p in enumerate(items):
        if not isinstance(p, str):
            return [
                encode_error_output(
                    f"Model returned a non-string output ({type(p).__name__}) at position {i}: "
                    "return a list of str"
                )
            ] * n_inputs
    outputs = [p.encode("utf-8", "surrogateescape") for p in items]
    if len(outputs) != n_inputs:
        return [encode_error_output(f"Model returned {len(outputs)} outputs for a batch of {n_inputs}")] * (
            n_inputs
        )
    return outputs
