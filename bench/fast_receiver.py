"""A fast webhook receiver for the export benchmark: a minimal asyncio HTTP/1.1 server that
answers every POST with 200 at once (keep-alive) and counts distinct ``webhook-id``s.
``GET /count`` answers ``{"requests": n, "unique": m}``; ``GET /readyz`` answers 200.

Run: ``python -m bench.fast_receiver --port P`` (stops on SIGTERM).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import ClassVar

__all__ = ["main"]

_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


class _State:
    requests = 0
    ids: ClassVar[set[bytes]] = set()


class _Receiver(asyncio.Protocol):
    def __init__(self) -> None:
        self._buffer = b""
        self._transport: asyncio.WriteTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # a TCP transport (uvloop's is not an asyncio.Transport)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while True:
            head_end = self._buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self._buffer[:head_end]
            length = 0
            msg_id = b""
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                lowered = name.strip().lower()
                if lowered == b"content-length":
                    length = int(value)
                elif lowered == b"webhook-id":
                    msg_id = value.strip()
            end = head_end + 4 + length
            if len(self._buffer) < end:
                return
            self._buffer = self._buffer[end:]
            assert self._transport is not None
            if head.startswith(b"GET /count"):
                body = json.dumps({"requests": _State.requests, "unique": len(_State.ids)}).encode()
                self._transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            else:
                if head.startswith(b"POST"):
                    _State.requests += 1
                    if msg_id:
                        _State.ids.add(msg_id)
                self._transport.write(_OK)


async def _serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Receiver, host, port, backlog=1024)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    asyncio.run(_serve(args.host, args.port))


if __name__ == "__main__":
    main()
