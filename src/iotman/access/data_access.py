"""Who may append to or read from a /data path: one rule for sources and export endpoints.

Modes (SPEC §2.1, §5.1): ``none`` (open: a valid token of the workspace is recorded,
any other token is ignored), ``oauth2`` (a token of the workspace with the scope),
``oauth2+none`` (a token is checked when given; anonymous is allowed).
"""

from __future__ import annotations

from iotman.access.principal import Principal
from iotman.errors import Forbidden, Unauthenticated

__all__ = ["DATA_READ", "DATA_WRITE", "authorise_data", "require_scope", "require_token"]

DATA_WRITE = "iotman:data:write"
DATA_READ = "iotman:data:read"


def authorise_data(
    principal: Principal | None,
    *,
    token_given: bool,
    workspace_id: int,
    workspace_slug: str,
    mode: str,
    required_scope: str | None,
    default_scope: str,
    what: str,
) -> Principal | None:
    """The principal to record (None: anonymous); raises 401/403 saying what is missing."""
    if mode == "none":
        return principal if principal is not None and principal.workspace_id == workspace_id else None
    if principal is None:
        if token_given:
            raise Unauthenticated("the bearer token is not valid", code="invalid_token")
        if mode == "oauth2+none":
            return None
        raise Unauthenticated(f"{what} requires a bearer token (Authorization: Bearer <token>)", code="token_required")
    if principal.workspace_id != workspace_id:
        raise Unauthenticated(
            f"the bearer token is not valid for workspace {workspace_slug!r}", code="token_wrong_workspace"
        )
    needed = required_scope or default_scope
    if not principal.has_scope(needed):
        raise Forbidden(
            f"the token lacks scope {needed!r} needed for {what}",
            code="insufficient_scope",
            details={"required_scope": needed},
        )
    return principal


def require_scope(
    workspace_id: int, workspace_slug: str, principal: Principal | None, token_given: bool, scope: str, what: str
) -> None:
    """A bearer token of this workspace with ``scope`` (401/403 saying what is missing)."""
    authorise_data(
        principal,
        token_given=token_given,
        workspace_id=workspace_id,
        workspace_slug=workspace_slug,
        mode="oauth2",
        required_scope=None,
        default_scope=scope,
        what=what,
    )


def require_token(principal: Principal | None, token_given: bool, what: str) -> None:
    """401 for a caller without a valid token, before anything is looked up: whether a
    workspace (or what is in it) exists is not for strangers."""
    if principal is None:
        if token_given:
            raise Unauthenticated("the bearer token is not valid", code="invalid_token")
        raise Unauthenticated(f"{what} requires a bearer token (Authorization: Bearer <token>)", code="token_required")
