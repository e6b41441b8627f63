"""uvicorn's httptools protocol with a bound on the request head (request line + headers).

httptools itself accepts headers of any size, so one connection could make the server
buffer hundreds of megabytes before the application sees a request. Past
``MAX_HEAD_BYTES`` the connection gets ``431`` and is closed.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["MAX_HEAD_BYTES", "BoundedHttpToolsProtocol"]

MAX_HEAD_BYTES = 64 * 1024

_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: application/json\r\n"
    b"connection: close\r\n"
    b"content-length: 98\r\n\r\n"
    b'{"error":{"code":"headers_too_large","message":"the request line and headers exceed 65536 bytes"}}'
)


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_bytes = 0
        self._heads_completed = 0

    def data_received(self, data: bytes) -> None:
        counting = self._in_head
        self._heads_completed = 0
        super().data_received(data)
        # judged after parsing: a chunk that completes a head may also carry a large body
        # (or a whole request and the start of the next one), so only chunks in which no
        # head completed count towards the limit
        if counting and self._heads_completed == 0:
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES and not self.transport.is_closing():
                self.transport.write(_TOO_LARGE)
                self.transport.close()

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._heads_completed += 1
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True
        self._head_bytes = 0
