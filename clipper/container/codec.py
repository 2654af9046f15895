"""What the prediction function receives and how its result becomes response outputs.

Inputs follow the original ``rpc.py`` (payloads: ``docs/wire-protocol.md``): numeric inputs (bytes as
signed int8, ints int32, floats float32, doubles float64, little-endian) of equal byte length arrive
as one 2-D array of shape ``(n, item_len)``; ragged ones as a 1-D object array of 1-D arrays; strings
as a 1-D object array of ``bytes``. Unlike the original the 2-D array is a fresh, writable array
(not a view into a buffer the next request overwrites).

Outputs: one output per input. As the original closure container (``[str(p) for p in preds]``),
each output is converted with ``str()``, so ``return [sum(x) for x in xs]`` answers ``"6.6"`` (which
the query frontend re-parses as the JSON number 6.6); strings pass through unchanged and ``bytes``
are sent as they are (not ``str()``-ed into ``"b'...'"``). ``None`` is refused rather than answered
as ``"None"`` (a function that forgot to return a value). A ``None`` output, a wrong count or a
non-list result becomes an error output for every input of the batch, whose text the query frontend
returns as the default explanation. The PySpark runtime's outputs go through the same conversion.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from clipper.datatypes import InputType
from clipper.rpc.protocol import OutputError, encode_error_output

_DTYPES: dict[InputType, np.dtype[Any]] = {
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
    lengths = set(map(len, inputs))  # per input in C: the distinct lengths are checked, not each input
    if any(n % size for n in lengths):
        i, b = next((i, b) for i, b in enumerate(inputs) if len(b) % size)
        raise InputDecodeError(f"input {i} has {len(b)} bytes, not a whole number of {input_type} items")
    if len(lengths) <= 1:
        item_len = (lengths.pop() // size) if lengths else 0
        buf = bytearray().join(inputs)  # one copy, writable
        return np.frombuffer(buf, dtype=dtype).reshape(len(inputs), item_len)
    arr = np.empty(len(inputs), dtype=object)
    arr[:] = [np.frombuffer(bytes(b), dtype=dtype) for b in inputs]
    return arr


class _NoneOutput(Exception):
    def __init__(self, position: int) -> None:
        self.position = position


_encode_str = str.encode  # a method descriptor: refuses (TypeError) anything that is not a str
_UTF8 = itertools.repeat("utf-8")
_SURROGATES = itertools.repeat("surrogateescape")


def _all_str_bytes(items: list[Any]) -> list[bytes | OutputError] | None:
    """A list of str only (what most models return), encoded in one loop in C; None for any other
    list (a number, bytes, None among the items), which takes :func:`_output_bytes` item by item."""
    try:
        return list(map(_encode_str, items, _UTF8, _SURROGATES))
    except TypeError:  # the descriptor refused an item that is not a str
        return None


def _output_bytes(position: int, p: Any) -> bytes:
    """The original's ``str(p)``, except that bytes pass through and ``None`` is refused."""
    if isinstance(p, str):
        return p.encode("utf-8", "surrogateescape")
    if isinstance(p, bytes | bytearray | memoryview):
        return bytes(p)
    if p is None:
        raise _NoneOutput(position)
    return str(p).encode("utf-8", "surrogateescape")


def encode_outputs(result: Any, n_inputs: int) -> list[bytes | OutputError]:
    """One output per input; on any problem, one error output per input explaining it."""
    if result is None or isinstance(result, str | bytes) or not hasattr(result, "__iter__"):
        return [encode_error_output(f"Model returned a non-list output ({type(result).__name__})")] * n_inputs
    try:
        items = list(result)
    except Exception as e:
        return [encode_error_output(f"Model output cannot be iterated: {type(e).__name__}: {e}")] * n_inputs
    try:
        outputs = _all_str_bytes(items)
        if outputs is None:
            outputs = [_output_bytes(i, p) for i, p in enumerate(items)]
    except _NoneOutput as e:
        return [
            encode_error_output(f"Model returned None at position {e.position}: return one value per input")
        ] * n_inputs
    except Exception as e:  # a __str__ that raises
        return [encode_error_output(f"Model output cannot be converted to str: {type(e).__name__}: {e}")] * (
            n_inputs
        )
    if len(outputs) != n_inputs:
        return [encode_error_output(f"Model returned {len(outputs)} outputs for a batch of {n_inputs}")] * (
            n_inputs
        )
    return outputs
