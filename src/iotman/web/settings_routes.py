"""Admin routes of workspace settings: ``settings/smtp``, ``settings/sftp-profiles`` (secrets
write-only) and the email outbox."""

# no `from __future__ import annotations`: FastAPI resolves the Annotated aliases at runtime

from typing import Annotated, Any

import orjson
from fastapi import FastAPI, Query, Request
from starlette.responses import Response

from iotman.core.sftp import SftpProfile
from iotman.core.smtp import SmtpSettings
from iotman.engine.admin_service import AdminService

__all__ = ["add_settings_routes", "paged"]

PREFIX = "/api/v1/workspaces"


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def paged(request: Request, items: list[dict[str, Any]], next_id: int | None, limit: int) -> Response:
    """A page of a newest-first list, with ``next_page`` (``before_id``) when there is more."""
    next_page = None
    if next_id is not None:
        next_page = str(request.url.include_query_params(before_id=next_id, limit=limit))
    return _json({"data": items, "next_page": next_page})


def add_settings_routes(app: FastAPI, admin: AdminService, Caller: Any, JsonBody: Any) -> None:  # noqa: N803
    smtp_doc = {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": SmtpSettings.model_json_schema()}},
        }
    }

    @app.get(PREFIX + "/{ws}/settings/smtp", tags=["settings"])
    def get_smtp(ws: str, caller: Caller) -> Response:
        return _json(admin.smtp_settings(ws))

    @app.put(PREFIX + "/{ws}/settings/smtp", tags=["settings"], openapi_extra=smtp_doc)
    def put_smtp(ws: str, caller: Caller, body: JsonBody) -> Response:
        return _json(admin.put_smtp_settings(ws, body))

    @app.delete(PREFIX + "/{ws}/settings/smtp", tags=["settings"], status_code=204)
    def delete_smtp(ws: str, caller: Caller) -> Response:
        admin.delete_smtp_settings(ws)
        return Response(status_code=204)

    @app.get(PREFIX + "/{ws}/email-outbox", tags=["settings"])
    def list_email_outbox(
        ws: str,
        caller: Caller,
        request: Request,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        before_id: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    ) -> Response:
        emails, next_id = admin.email_outbox(ws, limit, before_id)
        return paged(request, emails, next_id, limit)

    sftp_doc = {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": SftpProfile.model_json_schema()}},
        }
    }
    base = PREFIX + "/{ws}/settings/sftp-profiles"

    @app.get(base, tags=["settings"])
    def list_sftp_profiles(ws: str, caller: Caller) -> Response:
        return _json({"data": admin.sftp_profiles(ws)})

    @app.post(base, tags=["settings"], status_code=201, openapi_extra=sftp_doc)
    def create_sftp_profile(ws: str, caller: Caller, body: JsonBody) -> Response:
        return _json(admin.put_sftp_profile(ws, body), 201)

    @app.get(base + "/{name}", tags=["settings"])
    def get_sftp_profile(ws: str, name: str, caller: Caller) -> Response:
        return _json(admin.sftp_profile(ws, name))

    @app.put(base + "/{name}", tags=["settings"], openapi_extra=sftp_doc)
    def replace_sftp_profile(ws: str, name: str, caller: Caller, body: JsonBody) -> Response:
        return _json(admin.put_sftp_profile(ws, body, name))

    @app.delete(base + "/{name}", tags=["settings"], status_code=204)
    def delete_sftp_profile(ws: str, name: str, caller: Caller) -> Response:
        admin.delete_sftp_profile(ws, name)
        return Response(status_code=204)
