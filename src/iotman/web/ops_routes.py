"""Probes and metrics: /healthz (process up), /readyz (store open), /metrics (Prometheus)."""

from __future__ import annotations

from fastapi import FastAPI
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from iotman.engine.engine import Engine

__all__ = ["add_ops_routes"]


def add_ops_routes(app: FastAPI, engine: Engine) -> None:
    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> Response:
        if engine.ready:
            return Response(b'{"status":"ready"}', media_type="application/json")
        return Response(b'{"status":"starting"}', status_code=503, media_type="application/json")

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(engine.metrics.registry), media_type=CONTENT_TYPE_LATEST)
