"""A model container written only from the RPC v3 frame tables (docs/wire-protocol.md).

Usage: python spec_container.py HOST PORT MODEL_NAME MODEL_VERSION INPUT_TYPE_CODE [HEARTBEAT_S]

It answers each input with a text derived from the raw bytes: for doubles (code 3) the sum of the
little-endian float64 values formatted with repr(); for every other type "<type code>:<byte length>".
It heartbeats only after HEARTBEAT_S seconds without inbound traffic, like the original rpc.py
(default 5 s). Deliberately imports nothing from the clipper package.
"""

import struct
import sys

import zmq

HEARTBEAT, NEW_CONTAINER, CONTAINER_CONTENT = 2, 0, 1
REQUEST_METADATA = 1


def u32(x):
    return struct.pack("<I", x)


def answer(input_type, raw):
    if input_type == 3:
        values = struct.unpack(f"<{len(raw) // 8}d", raw)
        return repr(sum(values)).encode()
    return f"{input_type}:{len(raw)}".encode()


def main():
    host, port, name, version, code = sys.argv[1:6]
    idle = float(sys.argv[6]) if len(sys.argv) > 6 else 5.0
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(f"tcp://{host}:{port}")
    sock.send_multipart([b"", u32(HEARTBEAT)])
    while True:
        if not sock.poll(int(idle * 1000)):
            sock.send_multipart([b"", u32(HEARTBEAT)])
            continue
        frames = sock.recv_multipart()
        assert frames[0] == b"" and struct.unpack("<I", frames[1])[0] == 3
        mtype = struct.unpack("<I", frames[2])[0]
        if mtype == HEARTBEAT:
            if struct.unpack("<I", frames[3])[0] == REQUEST_METADATA:
                sock.send_multipart(
                    [b"", u32(NEW_CONTAINER), name.encode(), version.encode(), code.encode(), u32(3)]
                )
        elif mtype == CONTAINER_CONTENT:
            msg_id = frames[3]
            (header_len,) = struct.unpack("<Q", frames[5])
            header = struct.unpack(f"<{header_len // 8}Q", frames[6])
            input_type, n, sizes = header[0], header[1], header[2:]
            inputs = frames[7 : 7 + n]
            assert [len(x) for x in inputs] == list(sizes)
            outputs = [answer(input_type, x) for x in inputs]
            out_header = struct.pack(f"<{n + 1}Q", n, *[len(o) for o in outputs])
            sock.send_multipart(
                [b"", u32(CONTAINER_CONTENT), msg_id, struct.pack("<Q", len(out_header)), out_header]
                + outputs
            )


if __name__ == "__main__":
    main()
