"""Bearer-token checks for the admin API, driven by the route-scope table.

A workspace token acts only inside its own workspace: for any other workspace (or
one that does not exist) the answer is the same 401, so slugs cannot be probed.
Creating workspaces, and acting across workspaces, needs a server-admin token
(``iotman token create --server-admin``), which is bound to no workspace.
"""

from __future__ import annotations

from fastapi import Request

from iotman.access.bearer_tokens import parse_bearer
from iotman.access.principal import Principal
from iotman.access.route_scopes import required_scope
from iotman.engine.engine import Engine
from iotman.errors import Forbidden, NotFound, Unauthenticated

__all__ = ["SERVER_ONLY", "AdminAuth"]

SERVER_ONLY = frozenset({("POST", "/api/v1/workspaces")})


class AdminAuth:
    """A FastAPI dependency: the caller's principal, with the route's scope checked."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def __call__(self, request: Request) -> Principal:
        route_path: str = request.scope["route"].path
        method = request.method
        needed = required_scope(method, route_path)
        token = parse_bearer(request.headers.get("authorization"))
        if token is None:
            raise Unauthenticated("this API needs Authorization: Bearer <token>", code="token_required")
        principal = self._engine.admin.principal(token)
        if principal is None:
            raise Unauthenticated("the bearer token is not valid", code="invalid_token")
        if not principal.server_admin:
            if (method, route_path) in SERVER_ONLY:
                raise Forbidden(
                    "creating workspaces needs a server-admin token (iotman token create --server-admin)",
                    code="server_admin_required",
                )
            slug = request.path_params.get("ws")
            if slug is not None:
                try:
                    same = self._engine.admin.workspace(slug).id == principal.workspace_id
                except NotFound:
                    same = False
                if not same:
                    raise Unauthenticated(
                        f"the bearer token is not valid for workspace {slug!r}", code="token_wrong_workspace"
                    )
        if needed is not None and not principal.has_scope(needed):
            raise Forbidden(
                f"the token lacks scope {needed!r}", code="insufficient_scope", details={"required_scope": needed}
            )
        return principal
