"""``ClipperConnection.test_predict_function``: run a prediction function locally, after a pickle round trip."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

import numpy as np

from clipper.datatypes import INPUT_TYPE_ALIASES, InputType

from .deployers.deployer_utils import serialize_object

# (numpy conversion, the exact Python type every flattened element must have), as in the original.
_CONVERSIONS = {
    InputType.BYTES: (np.int8, bytes),
    InputType.INTEGERS: (np.int32, int),
    InputType.FLOATS: (np.float32, float),
    InputType.DOUBLES: (np.float64, float),
    InputType.STRINGS: (np.str_, str),
}


def test_predict_function(query: dict[str, Any], func: Callable[[Any], Any], input_type: str) -> Any:
    """The original's semantics: errors in the query come back as strings, not exceptions.

    Unlike the original, every input-type alias the server accepts is recognised (the original knew
    ``"string"`` but not ``"strings"`` and then called ``func(None)``).
    """
    query_data = list(query.values())
    if list(query.keys())[0] == "input_batch":
        query_data = query_data[0]
    try:
        flattened_data = [item for sublist in query_data for item in sublist]
    except TypeError:
        return "Invalid input type or JSON key"

    numpy_data: list[Any] | None = None
    kind = INPUT_TYPE_ALIASES.get(input_type) if isinstance(input_type, str) else None
    if kind is not None:
        convert, expected = _CONVERSIONS[kind]
        if not all(type(x) is expected for x in flattened_data):
            return "Invalid input type"
        if kind is InputType.STRINGS:
            numpy_data = [np.array(x, dtype=np.str_) for x in query_data]
        else:
            numpy_data = [convert(x) for x in query_data]

    reloaded_func = pickle.loads(serialize_object(func))
    if not reloaded_func:
        return "Function does not properly serialize and reload"
    return reloaded_func(numpy_data)


test_predict_function.__test__ = False  # type: ignore[attr-defined]  # not a pytest test, despite its name
