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


def test_a_list_of_strings_and_every_mix_give_the_same_outputs_as_item_by_item():
    """Strings only are encoded in one pass; a list where anything else follows a string takes the
    item-by-item path from the start (no output twice, none lost)."""

    class Label(str):
        pass

    surrogate = "\udcff"  # a byte that was not UTF-8, kept by surrogateescape
    assert encode_outputs(["a", Label("b"), np.str_("c"), surrogate], 4) == [b"a", b"b", b"c", b"\xff"]
    assert encode_outputs(["a", 2, b"c", 0.5], 4) == [b"a", b"2", b"c", b"0.5"]
    assert encode_outputs(["a", "b", 3], 3) == [b"a", b"b", b"3"]
    assert (
        errors(encode_outputs(["a", "\ud800"], 2))
        == [  # a lone surrogate cannot be sent
            "Model output cannot be converted to str: UnicodeEncodeError: 'utf-8' codec can't encode character "
            "'\\ud800' in position 0: surrogates not allowed"
        ]
        * 2
    )


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


def test_inputs_of_equal_length_are_one_array_and_a_bad_length_is_named():
    from clipper.container.codec import InputDecodeError, decode_inputs
    from clipper.datatypes import InputType

    doubles = [np.array([i, 2.0]).astype("<f8").tobytes() for i in range(3)]
    arr = decode_inputs(InputType.DOUBLES, doubles)
    assert arr.shape == (3, 2) and arr[2, 0] == 2.0 and arr.flags.writeable
    ragged = decode_inputs(InputType.DOUBLES, [doubles[0], doubles[1][:8]])
    assert [len(x) for x in ragged] == [2, 1]
    with pytest.raises(InputDecodeError, match="input 2 has 7 bytes, not a whole number of doubles items"):
        decode_inputs(InputType.DOUBLES, [doubles[0], doubles[1], b"\x00" * 7])
