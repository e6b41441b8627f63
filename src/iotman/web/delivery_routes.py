"""Admin routes of webhook and MQTT push deliveries: the delivery log (dead letters with
``?state=dead``) and ``POST …/replay`` of one dead letter or all."""

# no `from __future__ import annotations`: FastAPI resolves the Annotated aliases at runtime

from typing import Annotated, Any, Literal

import orjson
from fastapi import FastAPI, Query, Request
from starlette.responses import Response

from iotman.engine.admin_service import AdminService
from iotman.errors import DefinitionInvalid
from iotman.web.settings_routes import paged

__all__ = ["add_delivery_routes"]

PREFIX = "/api/v1/workspaces"
REPLAY_DOC = {
    "requestBody": {
        "required": False,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {"id": {"type": "integer", "description": "One dead delivery; omit for all."}},
                }
            }
        },
    }
}


def add_delivery_routes(app: FastAPI, admin: AdminService, Caller: Any, JsonBody: Any) -> None:  # noqa: N803
    for collection in ("webhooks", "mqtt-pushes"):
        _add(app, admin, collection, Caller, JsonBody)


def _add(app: FastAPI, admin: AdminService, collection: str, Caller: Any, JsonBody: Any) -> None:  # noqa: N803
    base = f"{PREFIX}/{{ws}}/{collection}/{{name}}"

    def deliveries(
        ws: str,
        name: str,
        caller: Caller,
        request: Request,
        state: Annotated[Literal["pending", "delivered", "dead"] | None, Query()] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        before_id: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    ) -> Response:
        items, next_id = admin.deliveries(ws, collection, name, state, limit, before_id)
        return paged(request, items, next_id, limit)

    def replay(ws: str, name: str, caller: Caller, body: JsonBody) -> Response:
        delivery_id = None
        if body is not None:
            if not isinstance(body, dict) or set(body) - {"id"}:
                raise DefinitionInvalid(
                    'body must be {"id": <delivery id>}, or empty for every dead letter', field="id"
                )
            delivery_id = body.get("id")
            if delivery_id is not None and (not isinstance(delivery_id, int) or isinstance(delivery_id, bool)):
                raise DefinitionInvalid("id must be a delivery id (an integer)", field="id")
        count = admin.replay(ws, collection, name, delivery_id)
        return Response(orjson.dumps({"replayed": count}), media_type="application/json")

    tags: list[Any] = [collection]
    app.add_api_route(base + "/deliveries", deliveries, methods=["GET"], tags=tags, summary="The delivery log")
    app.add_api_route(
        base + "/replay", replay, methods=["POST"], tags=tags, openapi_extra=REPLAY_DOC, summary="Replay dead letters"
    )
