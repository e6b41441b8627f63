"""The one table of protected routes and the scope each requires (SPEC §6).

Keys are (method, route path template). A test walks the application's routes and
fails when a route is missing here, so no route is left ungated by accident.
``None`` marks a route open by design (probes, metrics, ingest and reads whose gate
is the source's own ``auth`` setting).
"""

from __future__ import annotations

__all__ = ["ROUTE_SCOPES", "required_scope"]

ROUTE_SCOPES: dict[tuple[str, str], str | None] = {
    ("GET", "/healthz"): None,
    ("GET", "/readyz"): None,
    ("GET", "/metrics"): None,
    ("GET", "/openapi.json"): None,
    ("GET", "/docs"): None,
    ("GET", "/docs/oauth2-redirect"): None,
    ("GET", "/redoc"): None,
    ("POST", "/data/{ws}/{path}"): None,  # gated by the source's auth / required_scope
    ("GET", "/data/{ws}/{path}"): None,  # gated by the export endpoint's auth / required_scope
    ("GET", "/api/v1/workspaces"): "iotman:workspaces:read",
    ("POST", "/api/v1/workspaces"): "iotman:workspaces:create",
    ("GET", "/api/v1/workspaces/{ws}"): "iotman:workspaces:read",
    ("DELETE", "/api/v1/workspaces/{ws}"): "iotman:workspaces:delete",
    ("GET", "/api/v1/workspaces/{ws}/sources"): "iotman:sources:read",
    ("POST", "/api/v1/workspaces/{ws}/sources"): "iotman:sources:create",
    ("GET", "/api/v1/workspaces/{ws}/sources/{name}"): "iotman:sources:read",
    ("PUT", "/api/v1/workspaces/{ws}/sources/{name}"): "iotman:sources:update",
    ("DELETE", "/api/v1/workspaces/{ws}/sources/{name}"): "iotman:sources:delete",
    ("GET", "/api/v1/workspaces/{ws}/quarantine"): "iotman:quarantine:read",
}


def required_scope(method: str, path_template: str) -> str | None:
    try:
        return ROUTE_SCOPES[(method, path_template)]
    except KeyError:
        raise LookupError(f"route {method} {path_template} is not in the scope table") from None
