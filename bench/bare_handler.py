"""The ceiling a Python frontend can approach: uvloop + httptools + orjson, the sum computed in-process.

No routing, no RPC, no model process: the benchmark's reference point (issue 8). Usage:
``python bench/bare_handler.py PORT``.
"""

from __future__ import annotations

import asyncio
import sys

import httptools
import orjson
import uvloop


class BareProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        x = orjson.loads(b"".join(self.body))["input"]
        self.body = []
        out = orjson.dumps({"query_id": 0, "output": sum(x), "default": False})
        self.transport.write(  # type: ignore[attr-defined]
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (len(out), out)
        )


async def main(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(BareProtocol, "127.0.0.1", port, backlog=2048)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.install()
    asyncio.run(main(int(sys.argv[1])))
