"""RPC protocol v3 framing: golden frames from docs/wire-protocol.md, round trips, malformed input."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clipper.rpc import protocol as p


def u32(x: int) -> bytes:
    return struct.pack("<I", x)


def u64(x: int) -> bytes:
    return struct.pack("<Q", x)


# -- golden frames, written from the spec tables ----------------------------------------------------


def test_container_heartbeat_frames():
    assert p.encode_heartbeat() == [b"", u32(2)]
    assert p.decode_container_message([b"", u32(2)]) == p.Heartbeat()


def test_new_container_frames():
    frames = p.encode_new_container("my-model", "v1", 3)
    assert frames == [b"", u32(0), b"my-model", b"v1", b"3", u32(3)]
    assert p.decode_container_message(frames) == p.NewContainer("my-model", "v1", 3, 3)


def test_new_container_without_version_frame_decodes_with_none():
    msg = p.decode_container_message([b"", u32(0), b"m", b"1", b"4"])
    assert msg == p.NewContainer("m", "1", 4, None)


def test_heartbeat_reply_frames():
    assert p.encode_heartbeat_reply(p.HeartbeatType.KEEPALIVE) == [b"", u32(3), u32(2), u32(0)]
    assert p.encode_heartbeat_reply(p.HeartbeatType.REQUEST_CONTAINER_METADATA) == [
        b"",
        u32(3),
        u32(2),
        u32(1),
    ]
    assert p.decode_frontend_message([b"", u32(3), u32(2), u32(1)]) == p.HeartbeatReply(1, 3)


def test_prediction_request_frames():
    inputs = [struct.pack("<2d", 1.0, 2.0), struct.pack("<1d", 3.0)]
    frames = p.encode_prediction_request(7, 3, inputs)
    header = struct.pack("<4Q", 3, 2, 16, 8)
    assert frames == [b"", u32(3), u32(1), u32(7), u32(0), u64(32), header, *inputs]
    msg = p.decode_frontend_message(frames)
    assert msg == p.PredictionRequest(7, u32(7), 0, 3, inputs, 3)


def test_prediction_response_frames():
    msg_id = u32(0xDEADBEEF)
    frames = p.encode_prediction_response(msg_id, [b"1.5", b"", b"abc"])
    header = struct.pack("<4Q", 3, 3, 0, 3)
    assert frames == [b"", u32(1), msg_id, u64(32), header, b"1.5", b"", b"abc"]
    assert p.decode_container_message(frames) == p.PredictionResponse(0xDEADBEEF, [b"1.5", b"", b"abc"])


def test_a_frame_longer_or_shorter_than_declared_is_named_in_the_error():
    frames = p.encode_prediction_response(u32(1), [b"1.5", b"", b"abc"])
    frames[6] = b"x"  # the second output: declared 0 bytes
    with pytest.raises(p.ProtocolError, match=r"^output 1: header says 0 bytes, frame has 1$"):
        p.decode_container_message(frames)
    frames = p.encode_prediction_request(7, 3, [b"12345678", b"abcdefgh"])
    frames[8] = b"abc"
    with pytest.raises(p.ProtocolError, match=r"^input 1: header says 8 bytes, frame has 3$"):
        p.decode_frontend_message(frames)


def test_msg_id_u32_wraps_in_encoding_range():
    frames = p.encode_prediction_request(2**32 - 1, 0, [b"x"])
    assert frames[3] == b"\xff\xff\xff\xff"


def test_empty_batch_and_empty_inputs_round_trip():
    frames = p.encode_prediction_request(1, 4, [b"", b""])
    assert p.decode_frontend_message(frames).inputs == [b"", b""]
    frames = p.encode_prediction_response(u32(1), [])
    assert p.decode_container_message(frames) == p.PredictionResponse(1, [])


def test_response_header_length_frame_is_not_trusted():
    # The original reads output_header_size but does not use it.
    header = struct.pack("<2Q", 1, 2)
    msg = p.decode_container_message([b"", u32(1), u32(5), u64(999), header, b"ok"])
    assert msg == p.PredictionResponse(5, [b"ok"])


def test_message_type_read_from_first_four_bytes_signed():
    # The original reads the type as a signed int from the first 4 bytes of the frame.
    assert p.decode_container_message([b"", u32(2) + b"junk"]) == p.Heartbeat()
    with pytest.raises(p.ProtocolError, match="unknown message type -1"):
        p.decode_container_message([b"", b"\xff\xff\xff\xff"])


# -- malformed messages -----------------------------------------------------------------------------

BAD_CONTAINER_MESSAGES = [
    [],
    [b"x", u32(2)],
    [b""],
    [b"", b"\x02"],
    [b"", u32(2), b"extra"],
    [b"", u32(7)],
    [b"", u32(0), b"m", b"1"],
    [b"", u32(0), b"m", b"1", b"x3", u32(3)],
    [b"", u32(0), b"\xff", b"1", b"3", u32(3)],
    [b"", u32(0), b"m", b"1", b"3", b"\x03"],
    [b"", u32(0), b"m", b"1", b"3", u32(3), b"extra"],
    [b"", u32(1), u32(1), u64(16)],
    [b"", u32(1), b"\x01", u64(16), struct.pack("<2Q", 1, 1), b"a"],
    [b"", u32(1), u32(1), u64(16), struct.pack("<2Q", 2, 1), b"a"],
    [b"", u32(1), u32(1), u64(16), struct.pack("<2Q", 1, 5), b"a"],
    [b"", u32(1), u32(1), u64(16), struct.pack("<Q", 1), b"a"],
    [b"", u32(1), u32(1), u64(16), struct.pack("<2Q", 1, 1)[:-1], b"a"],
]


@pytest.mark.parametrize("frames", BAD_CONTAINER_MESSAGES)
def test_bad_container_messages_raise_protocol_error(frames):
    with pytest.raises(p.ProtocolError):
        p.decode_container_message(frames)


BAD_FRONTEND_MESSAGES = [
    [],
    [b"", u32(3)],
    [b"", b"\x03", u32(2), u32(0)],
    [b"", u32(3), u32(2)],
    [b"", u32(3), u32(0), u32(0)],
    [b"", u32(3), u32(1), u32(1), u32(0), u64(24)],
    [b"", u32(3), u32(1), u32(1), u32(0), u64(32), struct.pack("<3Q", 3, 1, 8), b"12345678"],
    [b"", u32(3), u32(1), u32(1), u32(0), u64(24), struct.pack("<3Q", 3, 2, 8), b"12345678"],
    [b"", u32(3), u32(1), u32(1), u32(0), u64(24), struct.pack("<3Q", 3, 1, 9), b"12345678"],
    [b"", u32(3), u32(1), b"\x01", u32(0), u64(24), struct.pack("<3Q", 3, 1, 8), b"12345678"],
]


@pytest.mark.parametrize("frames", BAD_FRONTEND_MESSAGES)
def test_bad_frontend_messages_raise_protocol_error(frames):
    with pytest.raises(p.ProtocolError):
        p.decode_frontend_message(frames)


frame_lists = st.lists(st.binary(max_size=24), max_size=9)


@settings(max_examples=400, deadline=None)
@given(frame_lists)
def test_random_frames_decode_or_raise_protocol_error(frames):
    for decode in (p.decode_container_message, p.decode_frontend_message):
        try:
            decode(frames)
        except p.ProtocolError:
            pass


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 4), st.lists(st.binary(max_size=64), max_size=20))
def test_request_round_trip(msg_id, input_type, inputs):
    msg = p.decode_frontend_message(p.encode_prediction_request(msg_id, input_type, inputs))
    assert (msg.msg_id, msg.input_type, msg.inputs, msg.request_type) == (msg_id, input_type, inputs, 0)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1), st.lists(st.binary(max_size=64), max_size=20))
def test_response_round_trip(msg_id, outputs):
    msg = p.decode_container_message(p.encode_prediction_response(u32(msg_id), outputs))
    assert msg == p.PredictionResponse(msg_id, outputs)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1), st.lists(st.binary(max_size=16), min_size=1, max_size=6), st.data())
def test_truncated_response_never_decodes_silently_wrong(msg_id, outputs, data):
    frames = p.encode_prediction_response(u32(msg_id), outputs)
    cut = data.draw(st.integers(0, len(frames) - 1))
    with pytest.raises(p.ProtocolError):
        p.decode_container_message(frames[:cut])


# -- model errors: the error frame, out of band of the outputs -------------------------------------


def test_errors_travel_in_the_error_frame_and_outputs_stay_verbatim():
    outputs = [b"\x00Eevil", p.encode_error_output("Model error: ValueError: bad \u2717"), b"1.0"]
    frames = p.encode_prediction_response(u32(7), outputs)
    assert len(frames) == 5 + 3 + 1 and frames[-1].startswith(p.ERROR_FRAME_TAG)
    msg = p.decode_container_message(frames)
    assert msg == p.PredictionResponse(
        7, [b"\x00Eevil", b"", b"1.0"], {1: "Model error: ValueError: bad \u2717"}
    )


@pytest.mark.parametrize("output", [b"\x00Eevil", b"\x00E", p.ERROR_FRAME_TAG, b""])
def test_a_models_output_is_never_an_error(output):
    msg = p.decode_container_message(p.encode_prediction_response(u32(1), [output]))
    assert msg == p.PredictionResponse(1, [output], None)
    assert p.decode_error_output(output) is None


def test_without_the_error_frame_the_reason_is_the_output():
    """Towards a frontend that never announced the error frame (the original's): plain RPC v3."""
    frames = p.encode_prediction_response(
        u32(1), [b"2.0", p.encode_error_output("Model error: x")], error_frame=False
    )
    assert len(frames) == 5 + 2
    assert p.decode_container_message(frames) == p.PredictionResponse(1, [b"2.0", b"Model error: x"], None)


@pytest.mark.parametrize(
    "extra",
    [
        b"not an error frame",
        p.ERROR_FRAME_TAG,  # no count
        p.ERROR_FRAME_TAG + struct.pack("<I", 1),  # missing entry
        p.ERROR_FRAME_TAG + struct.pack("<III", 1, 5, 2) + b"hi",  # index beyond the outputs
        p.ERROR_FRAME_TAG + struct.pack("<III", 1, 0, 9) + b"hi",  # truncated text
        p.ERROR_FRAME_TAG + struct.pack("<III", 1, 0, 2) + b"hi!",  # trailing bytes
    ],
)
def test_malformed_error_frames_are_protocol_errors(extra):
    frames = p.encode_prediction_response(u32(1), [b"a", b"b"])
    with pytest.raises(p.ProtocolError):
        p.decode_container_message([*frames, extra])
    with pytest.raises(p.ProtocolError):  # never more than one extra frame
        p.decode_container_message([*frames, p.encode_error_frame([(0, "x")]), extra])
