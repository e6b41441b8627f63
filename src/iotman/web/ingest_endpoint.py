"""``POST /data/{ws}/{path}`` as a raw ASGI endpoint: the hottest route of the product.

No framework request object: headers are read once from the ASGI scope, the body is
gathered from ``receive`` with the source's limit enforced while reading, and the
answer is two ``send`` calls. (Measured: about twice the rate of the same endpoint
written with Starlette's Request/Response; see docs/decisions/0001-http-layout.md.)
"""

from __future__ import annotations

import logging
import time
from urllib.parse import parse_qsl

import orjson
from starlette.types import Receive, Scope, Send

from iotman.access.bearer_tokens import parse_bearer
from iotman.engine.engine import Engine
from iotman.errors import BadInput, IotmanError, PayloadTooLarge, StorageFailure
from iotman.web.error_responses import status_of

__all__ = ["IngestEndpoint"]

log = logging.getLogger("iotman.web")
MAX_IDEMPOTENCY_KEY = 255
_JSON_HEADERS = [(b"content-type", b"application/json")]
_REPLAYED = (b"idempotent-replayed", b"true")
_TRUE = frozenset({"1", "true", "yes"})


class _Headers:
    __slots__ = ("authorization", "content_encoding", "content_length", "content_type", "idempotency_key")

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        self.authorization: str | None = None
        self.content_type = ""
        self.content_encoding = ""
        self.content_length: int | None = None
        self.idempotency_key: str | None = None
        for name, value in raw:
            if name == b"content-type":
                self.content_type = value.decode("latin-1")
            elif name == b"authorization":
                self.authorization = value.decode("latin-1")
            elif name == b"content-length":
                self.content_length = int(value) if value.isdigit() else None
            elif name == b"content-encoding":
                self.content_encoding = value.decode("latin-1")
            elif name == b"idempotency-key":
                self.idempotency_key = value.decode("latin-1")


async def _send_json(send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = [*_JSON_HEADERS, (b"content-length", str(len(body)).encode())]
    if extra:
        headers.extend(extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_error(send: Send, exc: IotmanError) -> None:
    status = status_of(exc)
    extra = [(b"www-authenticate", b'Bearer realm="iotman"')] if status == 401 else None
    await _send_json(send, status, orjson.dumps({"error": exc.to_dict()}), extra)


class _Disconnected(Exception):
    pass


async def _read_body(receive: Receive, limit: int, declared: int | None) -> bytes:
    if declared is not None and declared > limit:
        raise PayloadTooLarge(f"the body has {declared} bytes; the limit is {limit}", details={"limit": limit})
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk: bytes = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"the body exceeds the limit of {limit} bytes", details={"limit": limit})
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class IngestEndpoint:
    def __init__(self, engine: Engine) -> None:
        self._ingest = engine.ingest
        self._accepted = engine.metrics.ingest_requests.labels("accepted")
        self._latency = engine.metrics.ingest_latency

    async def __call__(self, scope: Scope, receive: Receive, send: Send, ws: str, path: str) -> None:
        try:
            await self._handle(scope, receive, send, ws, path)
        except _Disconnected:
            return
        except IotmanError as exc:
            await send_error(send, exc)
        except Exception:
            log.exception("unexpected error on POST %s", scope.get("path"))
            await send_error(send, StorageFailure("internal error; see the server log", code="internal_error"))

    async def _handle(self, scope: Scope, receive: Receive, send: Send, ws: str, path: str) -> None:
        started = time.perf_counter()
        ingest = self._ingest
        headers = _Headers(scope["headers"])
        source = ingest.cached_source(ws, path) or await ingest.resolve(ws, path)
        token = parse_bearer(headers.authorization)
        principal = ingest.quick_authorise(source, token) or await ingest.authorise(source, token)
        try:
            body = await _read_body(receive, source.max_body_bytes, headers.content_length)
        except PayloadTooLarge as exc:
            ingest.record_refusal(source.workspace, source.path, exc, principal, content_type=headers.content_type)
            raise
        key = headers.idempotency_key
        if key is not None and not (0 < len(key) <= MAX_IDEMPOTENCY_KEY):
            raise BadInput(
                f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters",
                code="invalid_idempotency_key",
                field="Idempotency-Key",
            )
        query: bytes = scope.get("query_string", b"")
        batch = bool(query) and dict(parse_qsl(query.decode("latin-1"))).get("batch", "") in _TRUE
        client = scope.get("client")
        answer = await ingest.accept(
            source,
            principal,
            body,
            content_type=headers.content_type,
            content_encoding=headers.content_encoding,
            batch=batch,
            idempotency_key=key,
            source_ip=client[0] if client else None,
        )
        self._accepted.inc()
        self._latency.observe(time.perf_counter() - started)
        await _send_json(send, 202, answer.body, [_REPLAYED] if answer.replayed else None)
