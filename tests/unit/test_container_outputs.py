"""How a prediction function's result becomes RPC outputs (closure and PySpark runtimes alike)."""

from __future__ import annotations

import numpy as np
import pytest

from clipper.container.codec import encode_outputs
from clipper.container.pyspark_runtime import batch_function
from clipper.rpc.protocol import decode_error_output


def errors(outputs: list[bytes]) -> list[str | None]:
    return [decode_error_output(o) for o in outputs]


def test_numbers_are_converted_with_str_as_the_original_closure_container():
    xs = np.array([[1.1, 2.2, 3.3], [1.0, 2.0, 0.0]])
    assert encode_outputs([sum(x) for x in xs], 2) == [str(sum(xs[0])).encode(), b"3.0"]
    assert encode_outputs([1, 2.5, True, np.int64(7)], 4) == [b"1", b"2.5", b"True", b"7"]
    assert encode_outputs(np.array([0.5, 1.5]), 2) == [b"0.5", b"1.5"]  # an array result is a list too


def test_strings_pass_through_and_bytes_are_sent_as_they_are():
    assert encode_outputs(["6.6", "héllo", ""], 3) == [b"6.6", "héllo".encode(), b""]
    assert encode_outputs([b"raw", bytearray(b"\x00\xff")], 2) == [b"raw", b"\x00\xff"]


@pytest.mark.parametrize(
    "result, n, reason",
    [
        (None, 2, "Model returned a non-list output (NoneType)"),
        ("abc", 1, "Model returned a non-list output (str)"),
        (7, 1, "Model returned a non-list output (int)"),
        (["1", "2"], 3, "Model returned 2 outputs for a batch of 3"),
        ([1, 2, 3], 2, "Model returned 3 outputs for a batch of 2"),
        (["1", None], 2, "Model returned None at position 1: return one value per input"),
    ],
)
def test_wrong_results_are_an_error_output_for_every_input(result, n, reason):
    assert errors(encode_outputs(result, n)) == [reason] * n


def test_an_output_whose_str_raises_is_an_error_not_a_crash():
    class Bad:
        def __str__(self) -> str:
            raise RuntimeError("no text")

    assert errors(encode_outputs([Bad()], 1)) == [
        "Model output cannot be converted to str: RuntimeError: no text"
    ]


def test_pyspark_predictions_are_converted_like_a_closure():
    """``func(spark, model, inputs)`` returning floats (what ``model.predict`` gives) answers their str()."""

    class Model:
        def predict(self, v: np.ndarray) -> float:
            return float(v.sum() > 1.0)

    spark = object()

    def func(s, model, inputs):
        assert s is spark
        return [model.predict(x) for x in inputs]

    predict = batch_function(func, spark, Model())
    inputs = np.array([[0.5, 0.2], [1.0, 0.7]])
    assert encode_outputs(predict(inputs), 2) == [b"0.0", b"1.0"]
