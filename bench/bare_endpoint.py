"""Baseline (b): the least a Python ASGI ingest endpoint can do on the same stack.

Starlette + uvicorn (uvloop, httptools, no access log, one worker): read the body,
parse it with orjson, answer 202. No auth, no storage. Run as
``python -m bench.bare_endpoint --port P``; ``GET /readyz`` answers 200 once serving.
"""

from __future__ import annotations

import argparse

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

__all__ = ["create_app", "main"]

_ACCEPTED = b'{"ok":true}'


async def ingest(request: Request) -> Response:
    body = await request.body()
    orjson.loads(body)
    return Response(_ACCEPTED, status_code=202, media_type="application/json")


async def ready(request: Request) -> Response:
    return Response(b'{"status":"ready"}', media_type="application/json")


def create_app() -> Starlette:
    # same path shape as iotman's ingest route, so routing costs the same
    return Starlette(
        routes=[
            Route("/data/{ws}/{path}", ingest, methods=["POST"]),
            Route("/readyz", ready, methods=["GET"]),
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    uvicorn.run(
        create_app(),
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        workers=1,
        log_level="warning",
        lifespan="off",
    )


if __name__ == "__main__":
    main()
