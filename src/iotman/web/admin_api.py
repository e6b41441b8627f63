"""The admin API (FastAPI): workspaces, sources, quarantine. SPEC §1.2."""

# no `from __future__ import annotations`: FastAPI resolves the local Annotated aliases at runtime

import logging
from enum import Enum
from typing import Annotated, Any

import orjson
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from iotman import __version__
from iotman.access.principal import Principal
from iotman.connect.json_codec import parse_json
from iotman.engine.admin_service import AdminService, workspace_json
from iotman.engine.definition_kinds import KINDS, DefinitionKind
from iotman.engine.engine import Engine
from iotman.errors import BadInput, DefinitionInvalid, IotmanError, PayloadTooLarge, StorageFailure
from iotman.web.admin_auth import AdminAuth
from iotman.web.data_openapi import DATA_PATHS
from iotman.web.delivery_routes import add_delivery_routes
from iotman.web.error_responses import error_response
from iotman.web.ops_routes import add_ops_routes
from iotman.web.settings_routes import add_settings_routes, paged
from iotman.web.test_tool_routes import add_test_tool_routes

__all__ = ["admin_app"]

log = logging.getLogger("iotman.web")
PREFIX = "/api/v1/workspaces"
MAX_ADMIN_BODY = 4 * 1024 * 1024


async def optional_json_body(request: Request) -> Any:
    """The request body as JSON, or None when there is none."""
    return await json_body(request, required=False)


async def json_body(request: Request, required: bool = True) -> Any:
    """The request body as JSON whatever its Content-Type says, with the error position when it is not."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_ADMIN_BODY:
        raise PayloadTooLarge(f"admin request bodies are limited to {MAX_ADMIN_BODY} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_ADMIN_BODY:
            raise PayloadTooLarge(f"admin request bodies are limited to {MAX_ADMIN_BODY} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        if not required:
            return None
        raise BadInput("the request needs a JSON body", code="empty_body")
    return parse_json(raw)


def _json(value: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(value), status_code=status, media_type="application/json")


def _install_error_handlers(app: FastAPI) -> None:
    async def iotman_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, IotmanError)
        return error_response(exc)

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = []
        for err in exc.errors():
            loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path")]
            errors.append({"field": ".".join(loc), "message": str(err.get("msg", "invalid"))})
        first = errors[0] if errors else {"field": "", "message": "invalid request"}
        message = f"{first['field']}: {first['message']}" if first["field"] else first["message"]
        return error_response(
            DefinitionInvalid(message, code="invalid_request", field=first["field"] or None, details={"errors": errors})
        )

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        codes = {404: "not_found", 405: "method_not_allowed"}
        body = {"error": {"code": codes.get(exc.status_code, "http_error"), "message": str(exc.detail)}}
        return Response(orjson.dumps(body), status_code=exc.status_code, media_type="application/json")

    async def unexpected_error(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(StorageFailure("internal error; see the server log", code="internal_error"))

    app.add_exception_handler(Exception, unexpected_error)
    app.add_exception_handler(IotmanError, iotman_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)


def _body_doc(kind: DefinitionKind) -> dict[str, Any]:
    schema = kind.model.model_json_schema(by_alias=True)
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _add_collection(app: FastAPI, admin: AdminService, kind: DefinitionKind, caller: Any, body_type: Any) -> None:
    """The five routes of a definition collection (SPEC §1.2)."""
    base = f"{PREFIX}/{{ws}}/{kind.collection}"
    tags: list[str | Enum] = [kind.collection]
    collection = kind.collection

    def list_all(ws: str, _: caller) -> Response:
        return _json({"data": admin.list_definitions(ws, collection)})

    def create(ws: str, who: caller, body: body_type) -> Response:
        record = admin.create(ws, collection, body, who)
        return _json(admin.get(ws, collection, record.name, reveal=True), 201)

    def get_one(ws: str, name: str, _: caller) -> Response:
        return _json(admin.get(ws, collection, name))

    def replace(ws: str, name: str, who: caller, body: body_type) -> Response:
        admin.replace(ws, collection, name, body, who)
        return _json(admin.get(ws, collection, name))

    def delete(ws: str, name: str, _: caller) -> Response:
        admin.delete(ws, collection, name)
        return Response(status_code=204)

    label = kind.label
    app.add_api_route(base, list_all, methods=["GET"], tags=tags, summary=f"List {label}s")
    app.add_api_route(
        base,
        create,
        methods=["POST"],
        tags=tags,
        status_code=201,
        openapi_extra=_body_doc(kind),
        summary=f"Create a {label}",
    )
    app.add_api_route(base + "/{name}", get_one, methods=["GET"], tags=tags, summary=f"Read a {label}")
    app.add_api_route(
        base + "/{name}",
        replace,
        methods=["PUT"],
        tags=tags,
        openapi_extra=_body_doc(kind),
        summary=f"Replace a {label}",
    )
    app.add_api_route(
        base + "/{name}", delete, methods=["DELETE"], tags=tags, status_code=204, summary=f"Delete a {label}"
    )


def admin_app(engine: Engine) -> FastAPI:
    app = FastAPI(
        title="iotman",
        version=__version__,
        description="Admin API of iotman. Ingest and reads live under /data/{ws}/{path} (see docs/api.md).",
    )
    _install_error_handlers(app)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            schema["paths"]["/data/{ws}/{path}"] = DATA_PATHS
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    add_ops_routes(app, engine)
    admin = engine.admin
    auth = Depends(AdminAuth(engine))
    Caller = Annotated[Principal, auth]  # noqa: N806 - a type alias
    JsonBody = Annotated[Any, Depends(json_body)]  # noqa: N806 - a type alias

    @app.get(PREFIX, tags=["workspaces"])
    def list_workspaces(caller: Caller) -> Response:
        spaces = [w for w in admin.list_workspaces() if caller.server_admin or w.id == caller.workspace_id]
        return _json({"data": [workspace_json(w) for w in spaces]})

    workspace_doc = {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["slug"],
                        "properties": {"slug": {"type": "string", "pattern": "^[a-z0-9-]{1,64}$"}},
                    }
                }
            },
        }
    }

    @app.post(PREFIX, tags=["workspaces"], status_code=201, openapi_extra=workspace_doc)
    def create_workspace(caller: Caller, body: JsonBody) -> Response:
        if not isinstance(body, dict) or not isinstance(body.get("slug"), str):
            raise DefinitionInvalid('body must be {"slug": "..."}', field="slug", code="invalid_slug")
        ws = admin.create_workspace(body["slug"])
        token, scopes = admin.create_token(ws.slug, preset="full-access", name="workspace-creator")
        return _json({**workspace_json(ws), "token": token, "token_scopes": list(scopes)}, 201)

    @app.get(PREFIX + "/{ws}", tags=["workspaces"])
    def get_workspace(ws: str, caller: Caller) -> Response:
        return _json(workspace_json(admin.workspace(ws)))

    @app.delete(PREFIX + "/{ws}", tags=["workspaces"], status_code=204)
    def delete_workspace(ws: str, caller: Caller) -> Response:
        admin.delete_workspace(ws)
        return Response(status_code=204)

    for kind in KINDS.values():
        _add_collection(app, admin, kind, Caller, JsonBody)
    add_test_tool_routes(app, engine, Caller, JsonBody)

    add_settings_routes(app, admin, Caller, JsonBody)
    add_delivery_routes(app, admin, Caller, Annotated[Any, Depends(optional_json_body)])

    @app.get(PREFIX + "/{ws}/quarantine", tags=["quarantine"])
    def list_quarantine(
        ws: str,
        caller: Caller,
        request: Request,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        before_id: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    ) -> Response:
        entries, next_id = admin.quarantine(ws, limit, before_id)
        return paged(request, entries, next_id, limit)

    return app
