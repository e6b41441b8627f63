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
from iotman.errors import PayloadTooLarge
from iotman.web.error_responses import error_response

__all__ = ["function_runner"]

MAX_BODY_BYTES = 1024 * 1024


def function_runner(engine: Engine, *, test: bool) -> Callable[[Request], Awaitable[Response]]:
    async def run_function(request: Request) -> Response:
        """``200 {"result"}``; a ``$fail``/``$require`` answers with its status (``/test``: always 200)."""
        params = request.path_params
        token = parse_bearer(request.headers.get("authorization"))
        principal = await engine.ingest.principal_for(token)
        loop = asyncio.get_running_loop()
        threads = engine.function_threads
        # who may call comes first: nobody else gets a body read (nor learns which functions exist)
        await loop.run_in_executor(threads, engine.functions.check_caller, params["ws"], principal, token is not None)
        body = await _capped_body(request)
        # in a thread of its own pool: a long body (up to function_timeout_ms) holds up no read
        run: FunctionRun = await loop.run_in_executor(
            threads,
            functools.partial(
                engine.functions.run, params["ws"], params["name"], body, principal, token is not None, keep=not test
            ),
        )
        if test:
            return Response(orjson.dumps(run.report(), default=repr), media_type="application/json")
        if run.error is not None:
            return error_response(run.error)
        return Response(orjson.dumps(run.answer()), media_type="application/json")

    return run_function


async def _capped_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise PayloadTooLarge(
            f"a function's input is at most {MAX_BODY_BYTES} bytes, not {declared}", code="payload_too_large"
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise PayloadTooLarge(f"a function's input is at most {MAX_BODY_BYTES} bytes", code="payload_too_large")
        chunks.append(chunk)
    return b"".join(chunks)
