"""/views/{ws}/{name}/data (SPEC §4.1): point reads with ETag, ordered prefix scans; and rebuilds."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import orjson
from starlette.requests import Request
from starlette.responses import Response

from iotman.access.bearer_tokens import parse_bearer
from iotman.engine.engine import Engine

__all__ = ["view_rebuilder", "view_reader"]


def view_reader(engine: Engine) -> Callable[[Request], Awaitable[Response]]:
    async def get_view(request: Request) -> Response:
        """``?key=K`` (ETag; ``If-None-Match`` gives 304) or ``?prefix=P&limit=N&cursor=C``."""
        params = request.path_params
        token = parse_bearer(request.headers.get("authorization"))
        principal = await engine.ingest.principal_for(token)
        query = dict(request.query_params)
        page = await engine.views.read(params["ws"], params["name"], query, principal, token is not None)
        if page.etag is not None:
            headers = {"ETag": page.etag, "Cache-Control": "no-cache"}
            if request.headers.get("if-none-match") == page.etag:
                return Response(status_code=304, headers=headers)
            return Response(page.body(), media_type="application/json", headers=headers)
        next_url = None
        if page.next_cursor is not None:
            next_url = str(request.url.include_query_params(cursor=page.next_cursor))
        return Response(page.body(next_url), media_type="application/json")

    return get_view


def view_rebuilder(engine: Engine) -> Callable[[Request], Awaitable[Response]]:
    async def rebuild(request: Request) -> Response:
        """POST /views/{ws}/{name}/rebuild: 202 with the progress; follow it in the view's status."""
        params = request.path_params
        token = parse_bearer(request.headers.get("authorization"))
        principal = await engine.ingest.principal_for(token)

        loop = asyncio.get_running_loop()
        progress = await loop.run_in_executor(
            engine.reads, engine.views.start_rebuild, params["ws"], params["name"], principal, token is not None
        )
        body = orjson.dumps({"rebuild": progress.to_json()})
        return Response(body, status_code=202, media_type="application/json")

    return rebuild
