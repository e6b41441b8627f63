"""The ASGI application: /data/* to the hot router, everything else to the admin app."""

from __future__ import annotations

import logging

from starlette.types import Receive, Scope, Send

from iotman.engine.engine import Engine
from iotman.web.admin_api import admin_app
from iotman.web.data_routes import data_router
from iotman.web.ingest_endpoint import IngestEndpoint

__all__ = ["IotmanApp", "create_app"]

log = logging.getLogger("iotman.web")


class IotmanApp:
    """Dispatches by path prefix and runs the engine's lifespan."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.data = data_router(engine)
        self.ingest = IngestEndpoint(engine)
        self.admin = admin_app(engine)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
        elif scope["path"].startswith("/data/"):
            if kind == "http" and scope["method"] == "POST":
                ws, slash, path = scope["path"][6:].partition("/")
                if ws and path and slash and "/" not in path:
                    await self.ingest(scope, receive, send, ws, path)
                    return
            await self.data(scope, receive, send)
        elif scope["path"].startswith(("/views/", "/functions/")):
            await self.data(scope, receive, send)
        else:
            await self.admin(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.engine.start()
                except Exception as exc:
                    log.exception("startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                log.info("iotman ready", extra={"store": self.engine.settings.store_url()})
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    await self.engine.stop()
                finally:
                    await send({"type": "lifespan.shutdown.complete"})
                return


def create_app(engine: Engine) -> IotmanApp:
    return IotmanApp(engine)
