"""Reads under /data (GET, plain Starlette). Ingest (POST) is web/ingest_endpoint.py."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route, Router
from starlette.types import Receive, Scope, Send

from iotman.access.bearer_tokens import parse_bearer
from iotman.engine.engine import Engine
from iotman.engine.read_service import check_read_auth, render_page
from iotman.errors import IotmanError, StorageFailure
from iotman.export.read_params import parse_read_params
from iotman.web.error_responses import error_response

__all__ = ["data_router"]

log = logging.getLogger("iotman.web")
_NDJSON = "application/x-ndjson"
_MAX_IDEMPOTENCY_KEY = 255

Endpoint = Callable[[Request], Awaitable[Response]]


def _guard(endpoint: Endpoint) -> Endpoint:
    async def guarded(request: Request) -> Response:
        try:
            return await endpoint(request)
        except IotmanError as exc:
            return error_response(exc)
        except Exception:
            log.exception("unexpected error on %s %s", request.method, request.url.path)
            return error_response(StorageFailure("internal error; see the server log", code="internal_error"))

    return guarded


def data_router(engine: Engine) -> Router:
    ingest = engine.ingest
    metrics = engine.metrics
    reads_ok = metrics.reads.labels("ok")

    async def get_data(request: Request) -> Response:
        params = request.path_params
        source = await ingest.resolve(params["ws"], params["path"])
        token = parse_bearer(request.headers.get("authorization"))
        principal = await ingest.principal_for(token)
        check_read_auth(source, principal, token is not None)
        streaming = _NDJSON in request.headers.get("accept", "")
        read = parse_read_params(request.query_params, streaming=streaming)
        reads_ok.inc()
        if streaming:
            return StreamingResponse(engine.read.stream(source, read), media_type=_NDJSON)
        page = await engine.read.page(source, read)
        next_url = None
        if page.more and page.last_seq is not None:
            next_url = str(request.url.replace(query=read.next_page_query(page.last_seq)))
        return Response(render_page(page, next_url), media_type="application/json")

    async def method_not_allowed(request: Request) -> Response:
        return Response(
            orjson.dumps({"error": {"code": "method_not_allowed", "message": f"{request.method} is not allowed here"}}),
            status_code=405,
            media_type="application/json",
        )

    async def not_found(scope: Scope, receive: Receive, send: Send) -> None:
        response = Response(
            orjson.dumps(
                {"error": {"code": "not_found", "message": f"no route {scope['path']}; use /data/{{ws}}/{{path}}"}}
            ),
            status_code=404,
            media_type="application/json",
        )
        await response(scope, receive, send)

    return Router(
        default=not_found,
        routes=[
            Route("/data/{ws}/{path}", _guard(get_data), methods=["GET"]),
            # POST is served by web/ingest_endpoint.py before this router is reached
            Route("/data/{ws}/{path}", method_not_allowed, methods=["POST", "PUT", "PATCH", "DELETE"]),
        ],
    )
