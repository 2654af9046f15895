"""Clipper RPC protocol version 3: constants and pure encode/decode functions, frame for frame.

Frame lists never include the ZMQ routing identity: the ROUTER side strips/prepends it, the DEALER
side never sees it. All integers are little-endian (``clipper-servers.md`` §6.2).

Frontend -> container messages start with ``b""`` and the RPC-version frame; container -> frontend
messages start with ``b""`` and have no version frame.

Error outputs (our extension, wire-compatible): a prediction response may carry, for any input, an
output that starts with the two bytes ``b"\\x00E"`` followed by UTF-8 text explaining why the model
could not answer that input. Original containers never send a NUL-first output (their outputs are
``str`` values encoded as UTF-8 text). The query frontend turns such an output into the application's
default output with the explanation (see :func:`decode_error_output`).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

RPC_VERSION = 3


class MessageType(enum.IntEnum):
    NEW_CONTAINER = 0
    CONTAINER_CONTENT = 1
    HEARTBEAT = 2


class HeartbeatType(enum.IntEnum):
    KEEPALIVE = 0
    REQUEST_CONTAINER_METADATA = 1


class RequestType(enum.IntEnum):
    PREDICT = 0
    FEEDBACK = 1  # defined by the original, never sent


#: Input-type codes valid on the wire (Clipper's ``DataType``: bytes, ints, floats, doubles, strings).
VALID_INPUT_TYPE_CODES = frozenset(range(5))


class ProtocolError(ValueError):
    """A message that does not follow RPC protocol version 3."""


_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")
_U64 = struct.Struct("<Q")

EMPTY = b""
VERSION_FRAME = _U32.pack(RPC_VERSION)
_HEARTBEAT_FRAME = _U32.pack(MessageType.HEARTBEAT)
_CONTENT_FRAME = _U32.pack(MessageType.CONTAINER_CONTENT)
_NEW_CONTAINER_FRAME = _U32.pack(MessageType.NEW_CONTAINER)
_PREDICT_FRAME = _U32.pack(RequestType.PREDICT)
_HEARTBEAT_REPLY = {t: [EMPTY, VERSION_FRAME, _HEARTBEAT_FRAME, _U32.pack(t)] for t in HeartbeatType}
_HEARTBEAT_MSG = [EMPTY, _HEARTBEAT_FRAME]

ERROR_OUTPUT_MARKER = b"\x00E"


# ---------------------------------------------------------------------------------------------------
# Decoded messages


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Container -> frontend heartbeat."""


@dataclass(frozen=True, slots=True)
class NewContainer:
    """Container -> frontend registration. ``rpc_version`` is None when the frame is missing."""

    model_name: str
    model_version: str
    input_type: int
    rpc_version: int | None


@dataclass(frozen=True, slots=True)
class PredictionResponse:
    """Container -> frontend prediction response; ``msg_id`` is the u32 read from the echoed frame."""

    msg_id: int
    outputs: list[bytes]


@dataclass(frozen=True, slots=True)
class HeartbeatReply:
    """Frontend -> container heartbeat (KeepAlive or RequestContainerMetadata)."""

    heartbeat_type: int
    rpc_version: int


@dataclass(frozen=True, slots=True)
class PredictionRequest:
    """Frontend -> container prediction request. ``msg_id_frame`` is echoed verbatim in the response."""

    msg_id: int
    msg_id_frame: bytes
    request_type: int
    input_type: int
    inputs: list[bytes]
    rpc_version: int


ContainerMessage = Heartbeat | NewContainer | PredictionResponse
FrontendMessage = HeartbeatReply | PredictionRequest


# ---------------------------------------------------------------------------------------------------
# Helpers


def _u32(frame: bytes, what: str) -> int:
    if len(frame) != 4:
        raise ProtocolError(f"{what}: expected 4 bytes, got {len(frame)}")
    return _U32.unpack(frame)[0]


def _u64(frame: bytes, what: str) -> int:
    if len(frame) != 8:
        raise ProtocolError(f"{what}: expected 8 bytes, got {len(frame)}")
    return _U64.unpack(frame)[0]


def _u64_array(frame: bytes, count: int, what: str) -> tuple[int, ...]:
    if len(frame) != 8 * count:
        raise ProtocolError(f"{what}: expected {8 * count} bytes, got {len(frame)}")
    return struct.unpack(f"<{count}Q", frame)


def _message_type(frame: bytes) -> int:
    # The original reads the type as a signed int from the first 4 bytes of the frame.
    if len(frame) < 4:
        raise ProtocolError(f"message type: expected 4 bytes, got {len(frame)}")
    return _I32.unpack_from(frame)[0]


def _text(frame: bytes, what: str) -> str:
    try:
        return bytes(frame).decode("utf-8")
    except UnicodeDecodeError as e:
        raise ProtocolError(f"{what}: not UTF-8 ({e})") from None


def _check_delimiter(frames: list[bytes]) -> None:
    if not frames:
        raise ProtocolError("empty message")
    if len(frames[0]) != 0:
        raise ProtocolError("first frame is not the empty delimiter")


# ---------------------------------------------------------------------------------------------------
# Container -> frontend


def encode_heartbeat() -> list[bytes]:
    return list(_HEARTBEAT_MSG)


def encode_new_container(model_name: str, model_version: str, input_type: int) -> list[bytes]:
    return [
        EMPTY,
        _NEW_CONTAINER_FRAME,
        model_name.encode("utf-8"),
        str(model_version).encode("utf-8"),
        str(int(input_type)).encode("ascii"),
        VERSION_FRAME,
    ]


def encode_prediction_response(msg_id_frame: bytes, outputs: list[bytes]) -> list[bytes]:
    """``msg_id_frame`` is the exact 4-byte frame received in the request."""
    n = len(outputs)
    header = struct.pack(f"<{n + 1}Q", n, *map(len, outputs))
    return [EMPTY, _CONTENT_FRAME, msg_id_frame, _U64.pack(len(header)), header, *outputs]


def decode_container_message(frames: list[bytes]) -> ContainerMessage:
    """Decode a message a container sent (identity frame already removed)."""
    _check_delimiter(frames)
    if len(frames) < 2:
        raise ProtocolError("missing message-type frame")
    mtype = _message_type(frames[1])
    if mtype == MessageType.HEARTBEAT:
        if len(frames) != 2:
            raise ProtocolError(f"heartbeat: expected 2 frames, got {len(frames)}")
        return Heartbeat()
    if mtype == MessageType.CONTAINER_CONTENT:
        return _decode_prediction_response(frames)
    if mtype == MessageType.NEW_CONTAINER:
        return _decode_new_container(frames)
    raise ProtocolError(f"unknown message type {mtype}")


def _decode_new_container(frames: list[bytes]) -> NewContainer:
    if len(frames) not in (5, 6):
        raise ProtocolError(f"new container: expected 6 frames, got {len(frames)}")
    name = _text(frames[2], "model name")
    version = _text(frames[3], "model version")
    code_text = _text(frames[4], "input type")
    if not code_text.isdigit():  # decimal text of the DataType code
        raise ProtocolError(f"input type: not a decimal code: {code_text!r}")
    input_type = int(code_text)
    rpc_version = _u32(frames[5], "rpc version") if len(frames) == 6 else None
    return NewContainer(name, version, input_type, rpc_version)


def _decode_prediction_response(frames: list[bytes]) -> PredictionResponse:
    if len(frames) < 5:
        raise ProtocolError(f"prediction response: expected at least 5 frames, got {len(frames)}")
    msg_id = _u32(frames[2], "msg id")
    _u64(frames[3], "header length")  # read but not trusted, as the original
    header = frames[4]
    if len(header) < 8 or len(header) % 8:
        raise ProtocolError(f"prediction response header: bad length {len(header)}")
    n = _U64.unpack_from(header)[0]
    if n != len(frames) - 5:
        raise ProtocolError(f"prediction response: header says {n} outputs, message has {len(frames) - 5}")
    lengths = _u64_array(header, n + 1, "prediction response header")[1:]
    outputs = frames[5:]
    for i, (declared, out) in enumerate(zip(lengths, outputs, strict=True)):
        if declared != len(out):
            raise ProtocolError(f"output {i}: header says {declared} bytes, frame has {len(out)}")
    return PredictionResponse(msg_id, outputs)


# ---------------------------------------------------------------------------------------------------
# Frontend -> container


def encode_heartbeat_reply(heartbeat_type: HeartbeatType) -> list[bytes]:
    return list(_HEARTBEAT_REPLY[heartbeat_type])


def encode_prediction_request(msg_id: int, input_type: int, inputs: list[bytes]) -> list[bytes]:
    """All inputs of a batch as ONE message: ``7 + n`` frames. Inputs go out as given (no copy)."""
    n = len(inputs)
    header = struct.pack(f"<{n + 2}Q", input_type, n, *map(len, inputs))
    return [
        EMPTY,
        VERSION_FRAME,
        _CONTENT_FRAME,
        _U32.pack(msg_id),
        _PREDICT_FRAME,
        _U64.pack(len(header)),
        header,
        *inputs,
    ]


def decode_frontend_message(frames: list[bytes]) -> FrontendMessage:
    """Decode a message the frontend sent to a container."""
    _check_delimiter(frames)
    if len(frames) < 3:
        raise ProtocolError(f"expected at least 3 frames, got {len(frames)}")
    rpc_version = _u32(frames[1], "rpc version")
    mtype = _message_type(frames[2])
    if mtype == MessageType.HEARTBEAT:
        if len(frames) != 4:
            raise ProtocolError(f"heartbeat: expected 4 frames, got {len(frames)}")
        return HeartbeatReply(_u32(frames[3], "heartbeat type"), rpc_version)
    if mtype == MessageType.CONTAINER_CONTENT:
        return _decode_prediction_request(frames, rpc_version)
    raise ProtocolError(f"unexpected message type {mtype} from the frontend")


def _decode_prediction_request(frames: list[bytes], rpc_version: int) -> PredictionRequest:
    if len(frames) < 7:
        raise ProtocolError(f"prediction request: expected at least 7 frames, got {len(frames)}")
    msg_id_frame = bytes(frames[3])
    msg_id = _u32(msg_id_frame, "msg id")
    request_type = _u32(frames[4], "request type")
    header_len = _u64(frames[5], "header length")
    header = frames[6]
    if header_len != len(header) or len(header) < 16 or len(header) % 8:
        raise ProtocolError(f"prediction request header: bad length {len(header)} (declared {header_len})")
    input_type, n = struct.unpack_from("<2Q", header)
    if n != len(frames) - 7:
        raise ProtocolError(f"prediction request: header says {n} inputs, message has {len(frames) - 7}")
    sizes = _u64_array(header, n + 2, "prediction request header")[2:]
    inputs = frames[7:]
    for i, (declared, inp) in enumerate(zip(sizes, inputs, strict=True)):
        if declared != len(inp):
            raise ProtocolError(f"input {i}: header says {declared} bytes, frame has {len(inp)}")
    return PredictionRequest(msg_id, msg_id_frame, request_type, input_type, inputs, rpc_version)


# ---------------------------------------------------------------------------------------------------
# Error outputs (see module docstring)


def encode_error_output(message: str) -> bytes:
    return ERROR_OUTPUT_MARKER + message.encode("utf-8", "replace")


def decode_error_output(output: bytes) -> str | None:
    """The explanation if ``output`` is an error output, else None."""
    if output[:2] != ERROR_OUTPUT_MARKER:
        return None
    return bytes(output[2:]).decode("utf-8", "replace")
