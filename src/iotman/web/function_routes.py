"""/functions/{ws}/{name} (SPEC §4.2): run a function; /test reports its run and calls."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable

import orjson
from starlette.requests import Request
from starlette.responses import Response

from iotman.access.bearer_tokens import parse_bearer
from iotman.engine.engine import Engine
from iotman.engine.function_service import FunctionRun
from iotman.web.error_responses import error_response

__all__ = ["function_runner"]

MAX_BODY_BYTES = 1024 * 1024


def function_runner(engine: Engine, *, test: bool) -> Callable[[Request], Awaitable[Response]]:
    async def run_function(request: Request) -> Response:
        """``200 {"result"}``; a ``$fail``/``$require`` answers with its status (``/test``: always 200)."""
        params = request.path_params
        token = parse_bearer(request.headers.get("authorization"))
        principal = await engine.ingest.principal_for(token)
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return Response(
                orjson.dumps(
                    {
                        "error": {
                            "code": "payload_too_large",
                            "message": f"a function's input is at most {MAX_BODY_BYTES} bytes, not {len(body)}",
                        }
                    }
                ),
                status_code=413,
                media_type="application/json",
            )
        loop = asyncio.get_running_loop()
        # in a worker thread: a long body (up to function_timeout_ms) must not hold up other requests
        run: FunctionRun = await loop.run_in_executor(
            engine.reads,
            functools.partial(
                engine.functions.run, params["ws"], params["name"], body, principal, token is not None, keep=not test
            ),
        )
        if test:
            return Response(orjson.dumps(run.report()), media_type="application/json")
        if run.error is not None:
            return error_response(run.error)
        return Response(orjson.dumps(run.answer()), media_type="application/json")

    return run_function
