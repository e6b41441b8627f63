"""Bearer-token checks for the admin API, driven by the route-scope table."""

from __future__ import annotations

from fastapi import Request

from iotman.access.bearer_tokens import parse_bearer
from iotman.access.principal import Principal
from iotman.access.route_scopes import required_scope
from iotman.engine.engine import Engine
from iotman.errors import Forbidden, Unauthenticated

__all__ = ["AdminAuth"]

_LIFECYCLE = frozenset({("GET", "/api/v1/workspaces/{ws}"), ("DELETE", "/api/v1/workspaces/{ws}")})
SERVER_ADMIN_SCOPE = "iotman:workspaces:create"


class AdminAuth:
    """A FastAPI dependency: the caller's principal, with the route's scope checked."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def __call__(self, request: Request) -> Principal:
        route_path: str = request.scope["route"].path
        needed = required_scope(request.method, route_path)
        token = parse_bearer(request.headers.get("authorization"))
        if token is None:
            raise Unauthenticated("this API needs Authorization: Bearer <token>", code="token_required")
        principal = self._engine.admin.principal(token)
        if principal is None:
            raise Unauthenticated("the bearer token is not valid", code="invalid_token")
        slug = request.path_params.get("ws")
        if slug is not None:
            ws = self._engine.admin.workspace(slug)
            same = principal.workspace_id == ws.id
            lifecycle = (request.method, route_path) in _LIFECYCLE and principal.has_scope(SERVER_ADMIN_SCOPE)
            if not same and not lifecycle:
                raise Unauthenticated(
                    f"the bearer token belongs to another workspace, not {slug!r}", code="token_wrong_workspace"
                )
        if needed is not None and not principal.has_scope(needed):
            raise Forbidden(
                f"the token lacks scope {needed!r}", code="insufficient_scope", details={"required_scope": needed}
            )
        return principal
