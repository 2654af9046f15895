"""ClipperConnection.test_predict_function's helper (no cluster needed)."""

from __future__ import annotations

import threading

import numpy as np

from clipper_admin.predict_test import test_predict_function as run


def summer(xs):
    return [str(np.sum(x)) for x in xs]


def test_types_and_shapes():
    assert run({"input": [1.0, 2.0]}, summer, "doubles") == ["3.0"]
    assert run({"input_batch": [[1, 2], [5]]}, summer, "integers") == ["3", "5"]
    assert run({"input": [1.5]}, lambda xs: [str(x.dtype) for x in xs], "floats") == ["float32"]
    assert run({"input": ["ab"]}, lambda xs: [x.tolist() for x in xs], "strings") == [["ab"]]
    assert run({"input": ["ab"]}, lambda xs: [x.tolist() for x in xs], "string") == [["ab"]]


def test_errors_come_back_as_strings():
    assert run({"input": [1, 2]}, summer, "doubles") == "Invalid input type"
    assert run({"input": 3}, summer, "doubles") == "Invalid input type or JSON key"


def test_unknown_input_type_passes_none():
    assert run({"input": [1.0]}, lambda xs: xs, "nonsense") is None


def test_closure_survives_pickle_round_trip():
    scale = 3

    def f(xs):
        return [str(scale * float(np.sum(x))) for x in xs]

    assert run({"input": [1.0]}, f, "d") == ["3.0"]


def test_lock_in_closure_fails_like_a_deploy_would():
    lock = threading.Lock()
    import pytest

    from clipper_admin import ClipperException

    with pytest.raises(ClipperException, match="closure variable 'lock'"):
        run({"input": [1.0]}, lambda xs: [str(lock)], "doubles")
