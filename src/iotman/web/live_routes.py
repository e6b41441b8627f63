"""Live streams of export endpoints (SPEC §5.1): ``GET /data/{ws}/{path}/events`` (Server-Sent
Events) and ``/data/{ws}/{path}/stream`` (WebSocket).

Both take the endpoint's auth. Browsers cannot set headers on ``EventSource`` or
``WebSocket``, so the token may also come as ``?access_token=`` (RFC 6750 §2.3). Where to
resume: ``Last-Event-ID`` (the header ``EventSource`` sends on reconnect), or
``?last_event_id=`` / ``?after_seq=``; without one the stream starts at the next match.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import orjson
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.websockets import WebSocket

from iotman.access.bearer_tokens import parse_bearer
from iotman.engine.engine import Engine
from iotman.engine.live_streams import Dropped, LiveChunk, Started
from iotman.engine.read_service import check_read_auth
from iotman.engine.registry import ReadTarget
from iotman.errors import Forbidden, InvalidQuery, IotmanError
from iotman.web.cors import cors_headers
from iotman.web.error_responses import error_response

__all__ = ["LiveRoutes"]

log = logging.getLogger("iotman.web")

_CLOSE_CODES = {"slow_consumer": 1013, "server_stopping": 1001, "endpoint_gone": 1008, "unauthorized": 1008}


def _resume_from(connection: HTTPConnection) -> int | None:
    text = (
        connection.headers.get("last-event-id")
        or connection.query_params.get("last_event_id")
        or connection.query_params.get("after_seq")
    )
    if text is None or text == "":
        return None
    field = "Last-Event-ID" if connection.headers.get("last-event-id") else "last_event_id"
    if not (text.isascii() and text.isdigit()) or len(text) > 15:
        raise InvalidQuery(f"{field} must be the seq of an event (a whole number), not {text[:40]!r}", field=field)
    return int(text)


class LiveRoutes:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._settings = engine.settings

    async def _open(
        self, connection: HTTPConnection
    ) -> tuple[ReadTarget, str, int | None, Callable[[], Awaitable[bool]]]:
        params = connection.path_params
        ingest = self._engine.ingest
        target = await ingest.read_target(params["ws"], params["path"])
        token = parse_bearer(connection.headers.get("authorization")) or connection.query_params.get("access_token")
        principal = await ingest.principal_for(token)
        check_read_auth(target, principal, token is not None)

        async def allowed() -> bool:
            """Whether the token may still read the endpoint as it is now (asked while streaming)."""
            try:
                now = await ingest.read_target(params["ws"], params["path"])
                check_read_auth(now, await ingest.principal_for(token), token is not None)
            except IotmanError:
                return False
            except Exception:  # the store hiccuped: keep streaming, ask again next time
                log.exception("re-checking a live stream's access failed")
            return True

        return target, params["path"], _resume_from(connection), allowed

    async def events(self, request: Request) -> Response:
        """Server-Sent Events: one ``message`` per match, ``id`` = its seq."""
        try:
            target, path, after, allowed = await self._open(request)
        except IotmanError as exc:
            self._engine.metrics.reads.labels(exc.code).inc()
            return error_response(exc)
        cors = cors_headers(target.cors_origins, request.headers.get("origin"))
        stream = self._engine.live.subscribe(target, path, after, allowed)

        async def frames() -> AsyncIterator[bytes | ServerSentEvent]:
            async with contextlib.aclosing(stream):
                async for item in stream:
                    if isinstance(item, LiveChunk):
                        yield item.sse()
                    elif isinstance(item, Started):
                        # reconnect after 1 s (browsers' default is 3 s); the id-only frame sets the
                        # client's last event id, so even a client that saw no match yet resumes here
                        yield f"retry: 1000\nid: {item.after_seq}\n\n".encode()
                    else:
                        yield ServerSentEvent(data=_notice(item), event="dropped", retry=2000, sep="\n")
                        return

        return EventSourceResponse(
            frames(),
            headers=cors,
            sep="\n",
            ping=self._settings.stream_ping_seconds,
            send_timeout=self._settings.stream_send_timeout_seconds,
        )

    async def stream(self, websocket: WebSocket) -> None:
        """WebSocket: one text message per match, ``{"seq": …, "data": …}``; a final
        ``{"event": "dropped", …}`` message and a close when the stream ends."""
        try:
            target, path, after, allowed = await self._open(websocket)
            _check_origin(websocket, target)
        except IotmanError as exc:
            # refused before the handshake completes: the client sees an HTTP error
            await websocket.send_denial_response(error_response(exc))
            return
        await websocket.accept()
        timeout = self._settings.stream_send_timeout_seconds
        stream = self._engine.live.subscribe(target, path, after, allowed)

        async def pump() -> None:
            async with contextlib.aclosing(stream):
                async for item in stream:
                    if isinstance(item, LiveChunk):
                        for seq, line in item.lines:
                            message = '{"seq":' + str(seq) + ',"data":' + line + "}"
                            await asyncio.wait_for(websocket.send_text(message), timeout)
                    elif isinstance(item, Started):
                        continue
                    else:
                        await asyncio.wait_for(websocket.send_text(_notice(item)), timeout)
                        await websocket.close(_CLOSE_CODES.get(item.reason, 1011), item.reason[:120])
                        return

        async def listen() -> None:
            while True:  # clients have nothing to say (text or binary): read until they go
                if (await websocket.receive())["type"] == "websocket.disconnect":
                    return

        sender = asyncio.create_task(pump())
        listener = asyncio.create_task(listen())
        try:
            await asyncio.wait({sender, listener}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sender, listener):
                task.cancel()
            for task in (sender, listener):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task


def _check_origin(websocket: WebSocket, target: ReadTarget) -> None:
    """Browsers let any page open a WebSocket anywhere: one from another origin is refused
    unless the endpoint's ``cors_origins`` allows it (clients outside a browser send no Origin)."""
    origin = websocket.headers.get("origin")
    if origin is None:
        return
    host = websocket.headers.get("host", "")
    if origin.split("://", 1)[-1] == host or cors_headers(target.cors_origins, origin):
        return
    raise Forbidden(
        f"origin {origin[:200]!r} may not open this stream; add it to the endpoint's cors_origins",
        code="origin_not_allowed",
    )


def _notice(dropped: Dropped) -> str:
    return orjson.dumps(
        {
            "event": "dropped",
            "reason": dropped.reason,
            "message": dropped.message,
            "last_event_id": dropped.last_event_id,
        }
    ).decode()
