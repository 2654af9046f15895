"""The floor of Clipper's architecture: HTTP -> queue -> batches to a model process -> HTTP.

What any server of this design does per prediction and nothing else (issue 18's "prototype of the
same architecture"): uvloop + httptools + orjson in the HTTP process, which queues each request's
input and keeps one batch in flight to a model process (the queue's whole content, sent when the
previous batch's answer arrives: adaptive batching); the model process, forked at start-up, reads a
batch from a Unix socket, decodes the inputs as one numpy array of doubles (as a Clipper replica
hands a batch to its function), runs the benchmark's ``sum_batch`` and writes the outputs back. No
objective, no default answers, no metrics, no routing, no pipelining, no error handling beyond dropping the
answers of clients that left: the
benchmark's reference for what the design costs on this machine, between the bare handler (no model
process at all) and ours. Usage: ``python bench/floor_handler.py PORT``.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from array import array

import numpy as np
import orjson
import uvloop
from bare_handler import BareProtocol
from models import sum_batch

HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%b"
WIDTH = 4  # doubles per input: the benchmark's input


def serve_model(sock: socket.socket) -> None:
    """The model process: a batch is ``[4-byte length][doubles]``, its answer ``[4-byte length][JSON]``."""
    f = sock.makefile("rb")
    while head := f.read(4):
        data = f.read(int.from_bytes(head, "little"))
        rows = np.frombuffer(data, dtype=np.float64).reshape(-1, WIDTH)
        out = orjson.dumps(sum_batch(rows))
        sock.sendall(len(out).to_bytes(4, "little") + out)


class ModelLink(asyncio.Protocol):
    """The HTTP process's end of the model socket: a queue and at most one batch in flight."""

    def __init__(self) -> None:
        self.queue: list[tuple[HttpConnection, list[float]]] = []
        self.in_flight: list[tuple[HttpConnection, list[float]]] = []
        self.buf = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def submit(self, conn: HttpConnection, x: list[float]) -> None:
        self.queue.append((conn, x))
        if not self.in_flight:
            self.send()

    def send(self) -> None:
        self.in_flight, self.queue = self.queue, []
        data = array("d", [v for _, x in self.in_flight for v in x]).tobytes()
        self.transport.write(len(data).to_bytes(4, "little") + data)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while len(self.buf) >= 4 and len(self.buf) >= 4 + (n := int.from_bytes(self.buf[:4], "little")):
            outputs, self.buf = orjson.loads(self.buf[4 : 4 + n]), self.buf[4 + n :]
            batch, self.in_flight = self.in_flight, []
            for (conn, _), y in zip(batch, outputs, strict=True):
                conn.answer(y)
            if self.queue:
                self.send()


class HttpConnection(BareProtocol):
    """The bare handler's connection, except that the input goes to the model process."""

    def __init__(self, model: ModelLink) -> None:
        super().__init__()
        self.model = model
        self.qid = 0

    def on_message_complete(self) -> None:
        x = orjson.loads(b"".join(self.body))["input"]
        self.body = []
        self.model.submit(self, x)

    def answer(self, y: str) -> None:
        if self.transport.is_closing():  # the client left (e.g. wrk at the end of a run)
            return
        self.qid += 1
        out = orjson.dumps({"query_id": self.qid, "output": y, "default": False})
        self.transport.write(HEAD % (len(out), out))  # type: ignore[attr-defined]


async def main(port: int, model_sock: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    _, model = await loop.create_unix_connection(ModelLink, sock=model_sock)
    server = await loop.create_server(lambda: HttpConnection(model), "127.0.0.1", port, backlog=2048)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    if os.fork() == 0:
        ours.close()
        serve_model(theirs)
        os._exit(0)
    theirs.close()
    uvloop.install()
    asyncio.run(main(int(sys.argv[1]), ours))
