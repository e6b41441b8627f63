"""Reads under /data and /views (GET, plain Starlette). Ingest (POST) is web/ingest_endpoint.py."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route, Router, WebSocketRoute
from starlette.types import Receive, Scope, Send

from iotman.access.bearer_tokens import parse_bearer
from iotman.core.time_bounds import parse_time_us
from iotman.engine.engine import Engine
from iotman.engine.read_service import check_read_auth, render_page
from iotman.engine.registry import ReadTarget
from iotman.errors import IotmanError, StorageFailure
from iotman.export.aggregation import parse_agg
from iotman.export.read_params import parse_read_params
from iotman.web.cors import cors_headers
from iotman.web.error_responses import error_response
from iotman.web.function_routes import function_runner
from iotman.web.live_routes import LiveRoutes
from iotman.web.view_routes import view_reader, view_rebuilder

__all__ = ["data_router"]

log = logging.getLogger("iotman.web")
_NDJSON = "application/x-ndjson"

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
    live = LiveRoutes(engine)

    async def get_data(request: Request) -> Response:
        params = request.path_params
        target = await ingest.read_target(params["ws"], params["path"])
        cors = cors_headers(target.cors_origins, request.headers.get("origin"))
        token = parse_bearer(request.headers.get("authorization"))
        principal = await ingest.principal_for(token)
        try:
            check_read_auth(target, principal, token is not None)
            if "agg" in request.query_params:
                return await aggregate(request, target, cors)
            streaming = _NDJSON in request.headers.get("accept", "")
            read = parse_read_params(request.query_params, streaming=streaming)
        except IotmanError as exc:
            metrics.reads.labels(exc.code).inc()
            return error_response(exc, cors)
        if streaming:
            reads_ok.inc()
            return StreamingResponse(engine.read.stream(target, read), media_type=_NDJSON, headers=cors)
        page = await engine.read.page(target, read)
        reads_ok.inc()
        next_url = None
        if page.more and page.last_seq is not None:
            next_url = str(request.url.replace(query=read.next_page_query(page.last_seq)))
        return Response(render_page(page, next_url), media_type="application/json", headers=cors)

    async def aggregate(request: Request, target: ReadTarget, cors: dict[str, str]) -> Response:
        params = request.query_params
        spec = parse_agg(params)
        from_us = parse_time_us(params["from"], "from") if params.get("from") else None
        to_us = parse_time_us(params["to"], "to") if params.get("to") else None
        result = await engine.read.aggregate(target, spec, from_us, to_us)
        reads_ok.inc()
        return Response(orjson.dumps(result), media_type="application/json", headers=cors)

    async def preflight(request: Request) -> Response:
        """CORS preflight for export endpoints with cors_origins."""
        params = request.path_params
        target = await ingest.read_target(params["ws"], params["path"])
        cors = cors_headers(target.cors_origins, request.headers.get("origin"))
        if not cors:
            return Response(status_code=403)
        cors.update(
            {
                "Access-Control-Allow-Methods": "GET, OPTIONS",
                "Access-Control-Allow-Headers": "Authorization, Accept, Last-Event-ID",
                "Access-Control-Max-Age": "600",
            }
        )
        return Response(status_code=204, headers=cors)

    async def method_not_allowed(request: Request) -> Response:
        return Response(
            orjson.dumps({"error": {"code": "method_not_allowed", "message": f"{request.method} is not allowed here"}}),
            status_code=405,
            media_type="application/json",
        )

    async def not_found(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": "no such stream"})
            return
        response = Response(
            orjson.dumps(
                {"error": {"code": "not_found", "message": f"no route {scope['path']}; use /data/{{ws}}/{{path}}"}}
            ),
            status_code=404,
            media_type="application/json",
        )
        await response(scope, receive, send)

    return Router(
        redirect_slashes=False,
        default=not_found,
        routes=[
            Route("/data/{ws}/{path}", _guard(get_data), methods=["GET"]),
            Route("/data/{ws}/{path}/events", _guard(live.events), methods=["GET"]),
            WebSocketRoute("/data/{ws}/{path}/stream", live.stream),
            Route("/data/{ws}/{path}/events", _guard(preflight), methods=["OPTIONS"]),
            Route("/views/{ws}/{name}/data", _guard(view_reader(engine)), methods=["GET"]),
            Route("/views/{ws}/{name}/rebuild", _guard(view_rebuilder(engine)), methods=["POST"]),
            Route("/functions/{ws}/{name}", _guard(function_runner(engine, test=False)), methods=["POST"]),
            Route("/functions/{ws}/{name}/test", _guard(function_runner(engine, test=True)), methods=["POST"]),
            Route("/data/{ws}/{path}", _guard(preflight), methods=["OPTIONS"]),
            # POST is served by web/ingest_endpoint.py before this router is reached
            Route(
                "/data/{ws}/{path}", method_not_allowed, methods=["POST", "PUT", "PATCH", "DELETE", "TRACE", "CONNECT"]
            ),
        ],
    )
