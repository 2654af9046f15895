"""Clipper RPC protocol version 3: constants and pure encode/decode functions, frame for frame.

Frame lists never include the ZMQ routing identity: the ROUTER side strips/prepends it, the DEALER
side never sees it. All integers are little-endian (frame tables: ``docs/wire-protocol.md``).

Frontend -> container messages start with ``b""`` and the RPC-version frame; container -> frontend
messages start with ``b""`` and have no version frame.

Model errors (our extension, negotiated, out of band of user data): a frontend that understands
them sends, before every RequestContainerMetadata, a heartbeat of type ``ERROR_FRAME_SUPPORTED`` (2).
Original containers ignore it (they treat every heartbeat type but 1 as a keep-alive). A container
that saw it may end a prediction response with ONE extra frame after the outputs, the *error frame*:
``ERROR_FRAME_TAG`` followed by ``u32 count`` and ``count`` times ``u32 index, u32 length, UTF-8
text``. The header still counts only the outputs, so the extra frame is recognised by position
and tag, never by looking into an output: a model output is always delivered verbatim, whatever
bytes it holds. The outputs at the listed indexes are empty. Towards a frontend that did not
announce support (the original's) a container has no such channel; ours then sends the
explanation text as the output (see :func:`encode_prediction_response`).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import cast

RPC_VERSION = 3


class MessageType(enum.IntEnum):
    NEW_CONTAINER = 0
    CONTAINER_CONTENT = 1
    HEARTBEAT = 2


class HeartbeatType(enum.IntEnum):
    KEEPALIVE = 0
    REQUEST_CONTAINER_METADATA = 1
    ERROR_FRAME_SUPPORTED = 2  # ours: "this frontend reads the error frame" (see module docstring)


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

ERROR_FRAME_TAG = b"\x00clipper-errors\x00"
_ERROR_ENTRY = struct.Struct("<II")


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
    """Container -> frontend prediction response; ``msg_id`` is the u32 read from the echoed frame.

    ``errors`` maps input positions the model could not answer to the reason (from the error frame);
    None when the response has no error frame."""

    msg_id: int
    outputs: list[bytes]
    errors: dict[int, str] | None = None


@dataclass(frozen=True, slots=True)
class OutputError:
    """In a container's list of outputs: this input has no output, for ``reason``."""

    reason: str


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
    value: int = _U32.unpack(frame)[0]
    return value


def _u64(frame: bytes, what: str) -> int:
    if len(frame) != 8:
        raise ProtocolError(f"{what}: expected 8 bytes, got {len(frame)}")
    value: int = _U64.unpack(frame)[0]
    return value


def _u64_array(frame: bytes, count: int, what: str) -> tuple[int, ...]:
    if len(frame) != 8 * count:
        raise ProtocolError(f"{what}: expected {8 * count} bytes, got {len(frame)}")
    return struct.unpack(f"<{count}Q", frame)


def _message_type(frame: bytes) -> int:
    # The original reads the type as a signed int from the first 4 bytes of the frame.
    if len(frame) < 4:
        raise ProtocolError(f"message type: expected 4 bytes, got {len(frame)}")
    value: int = _I32.unpack_from(frame)[0]
    return value


def _text(frame: bytes, what: str) -> str:
    try:
        return bytes(frame).decode("utf-8")
    except UnicodeDecodeError as e:
        raise ProtocolError(f"{what}: not UTF-8 ({e})") from None


def _check_sizes(declared: tuple[int, ...], frames: list[bytes], what: str) -> None:
    """Each frame is as long as the header declares: compared in C, per frame only to name a mismatch."""
    if tuple(map(len, frames)) != declared:
        for i, (size, frame) in enumerate(zip(declared, frames, strict=True)):
            if size != len(frame):
                raise ProtocolError(f"{what} {i}: header says {size} bytes, frame has {len(frame)}")


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


def encode_prediction_response(
    msg_id_frame: bytes, outputs: list[bytes | OutputError], *, error_frame: bool = True
) -> list[bytes]:
    """``msg_id_frame`` is the exact 4-byte frame received in the request.

    :class:`OutputError` items go into the error frame when ``error_frame`` (the frontend announced
    support); otherwise their reason text becomes the output, the only channel an original frontend has.
    """
    errors = (
        [(i, o.reason) for i, o in enumerate(outputs) if type(o) is OutputError]
        if OutputError in map(type, outputs)  # looked for in C: the common case has none
        else None
    )
    wire: list[bytes]
    if not errors:
        wire = cast("list[bytes]", outputs)  # no OutputError in it
    elif error_frame:
        wire = [EMPTY if isinstance(o, OutputError) else o for o in outputs]
    else:
        wire = [o.reason.encode("utf-8", "replace") if isinstance(o, OutputError) else o for o in outputs]
    n = len(wire)
    header = struct.pack(f"<{n + 1}Q", n, *map(len, wire))
    frames = [EMPTY, _CONTENT_FRAME, msg_id_frame, _U64.pack(len(header)), header, *wire]
    if errors and error_frame:
        frames.append(encode_error_frame(errors))
    return frames


def encode_error_frame(errors: list[tuple[int, str]]) -> bytes:
    parts = [ERROR_FRAME_TAG, _U32.pack(len(errors))]
    for index, reason in errors:
        text = reason.encode("utf-8", "replace")
        parts += (_ERROR_ENTRY.pack(index, len(text)), text)
    return b"".join(parts)


def decode_error_frame(frame: bytes, n_outputs: int) -> dict[int, str]:
    """The error frame's ``{input index: reason}``; ProtocolError if it is not a well-formed one."""
    frame = bytes(frame)
    pos = len(ERROR_FRAME_TAG)
    if frame[:pos] != ERROR_FRAME_TAG or len(frame) < pos + 4:
        raise ProtocolError("prediction response: an extra frame that is not an error frame")
    (count,) = _U32.unpack_from(frame, pos)
    pos += 4
    errors: dict[int, str] = {}
    for _ in range(count):
        if len(frame) < pos + _ERROR_ENTRY.size:
            raise ProtocolError("error frame: truncated entry")
        index, length = _ERROR_ENTRY.unpack_from(frame, pos)
        pos += _ERROR_ENTRY.size
        if index >= n_outputs or len(frame) < pos + length:
            raise ProtocolError(f"error frame: entry for input {index} out of range or truncated")
        errors[index] = frame[pos : pos + length].decode("utf-8", "replace")
        pos += length
    if pos != len(frame):
        raise ProtocolError("error frame: trailing bytes")
    return errors


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
    errors = None
    if n == len(frames) - 6:  # one extra frame: only an error frame is allowed there
        errors = decode_error_frame(frames[-1], n)
        frames = frames[:-1]
    elif n != len(frames) - 5:
        raise ProtocolError(f"prediction response: header says {n} outputs, message has {len(frames) - 5}")
    lengths = _u64_array(header, n + 1, "prediction response header")[1:]
    outputs = frames[5:]
    _check_sizes(lengths, outputs, "output")
    return PredictionResponse(msg_id, outputs, errors)


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
    _check_sizes(sizes, inputs, "input")
    return PredictionRequest(msg_id, msg_id_frame, request_type, input_type, inputs, rpc_version)


# ---------------------------------------------------------------------------------------------------
# Model errors (see module docstring)


def encode_error_output(message: str) -> OutputError:
    """What a container puts in place of an output it cannot give (travels in the error frame)."""
    return OutputError(message)


def decode_error_output(output: bytes | OutputError) -> str | None:
    """The reason if ``output`` (an item of a container's list of outputs) is an error, else None."""
    return output.reason if type(output) is OutputError else None
