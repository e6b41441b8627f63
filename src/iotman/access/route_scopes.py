"""The one table of protected routes and the scope each requires (SPEC §6).

Keys are (method, route path template). A test walks the application's routes and
fails when a route is missing here, so no route is left ungated by accident.
``None`` marks a route open by design (probes, metrics, ingest and reads whose gate
is the source's own ``auth`` setting).
"""

from __future__ import annotations

__all__ = ["COLLECTIONS", "ROUTE_SCOPES", "required_scope"]

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
    ("OPTIONS", "/data/{ws}/{path}"): None,  # CORS preflight: answers only for the endpoint's cors_origins
    ("GET", "/data/{ws}/{path}/events"): None,  # SSE: gated like GET /data/{ws}/{path}
    ("OPTIONS", "/data/{ws}/{path}/events"): None,  # CORS preflight of the SSE stream
    ("WEBSOCKET", "/data/{ws}/{path}/stream"): None,  # gated like GET /data/{ws}/{path}
    ("GET", "/views/{ws}/{name}/data"): None,  # gated by iotman:data:read or the view's required_scope
    ("POST", "/views/{ws}/{name}/rebuild"): None,  # gated in the handler by iotman:views:update
    # gated in the handler by iotman:functions:invoke and the function's required_scope
    ("POST", "/functions/{ws}/{name}"): None,
    ("POST", "/functions/{ws}/{name}/test"): None,
    ("GET", "/api/v1/workspaces"): "iotman:workspaces:read",
    ("POST", "/api/v1/workspaces"): "iotman:workspaces:create",
    ("GET", "/api/v1/workspaces/{ws}"): "iotman:workspaces:read",
    ("DELETE", "/api/v1/workspaces/{ws}"): "iotman:workspaces:delete",
    ("GET", "/api/v1/workspaces/{ws}/quarantine"): "iotman:quarantine:read",
    ("GET", "/api/v1/workspaces/{ws}/settings/smtp"): "iotman:settings:read",
    ("PUT", "/api/v1/workspaces/{ws}/settings/smtp"): "iotman:settings:update",
    ("DELETE", "/api/v1/workspaces/{ws}/settings/smtp"): "iotman:settings:update",
    ("GET", "/api/v1/workspaces/{ws}/email-outbox"): "iotman:settings:read",
    ("GET", "/api/v1/workspaces/{ws}/settings/sftp-profiles"): "iotman:settings:read",
    ("POST", "/api/v1/workspaces/{ws}/settings/sftp-profiles"): "iotman:settings:update",
    ("GET", "/api/v1/workspaces/{ws}/settings/sftp-profiles/{name}"): "iotman:settings:read",
    ("PUT", "/api/v1/workspaces/{ws}/settings/sftp-profiles/{name}"): "iotman:settings:update",
    ("DELETE", "/api/v1/workspaces/{ws}/settings/sftp-profiles/{name}"): "iotman:settings:update",
}


COLLECTIONS = (
    "sources",
    "tag-rules",
    "outputs",
    "export-endpoints",
    "views",
    "functions",
    "clients",
    "triggers",
    "cron-jobs",
    "webhooks",
    "mqtt-pushes",
)
"""Definition collections under /api/v1/workspaces/{ws}/; each gets the same five routes."""

for _collection in COLLECTIONS:
    _base = f"/api/v1/workspaces/{{ws}}/{_collection}"
    ROUTE_SCOPES[("GET", _base)] = f"iotman:{_collection}:read"
    ROUTE_SCOPES[("POST", _base)] = f"iotman:{_collection}:create"
    ROUTE_SCOPES[("GET", _base + "/{name}")] = f"iotman:{_collection}:read"
    ROUTE_SCOPES[("PUT", _base + "/{name}")] = f"iotman:{_collection}:update"
    ROUTE_SCOPES[("DELETE", _base + "/{name}")] = f"iotman:{_collection}:delete"
for _collection in ("webhooks", "mqtt-pushes"):
    _base = f"/api/v1/workspaces/{{ws}}/{_collection}/{{name}}"
    ROUTE_SCOPES[("GET", _base + "/deliveries")] = f"iotman:{_collection}:read"
    ROUTE_SCOPES[("POST", _base + "/replay")] = f"iotman:{_collection}:update"
for _tool in ("jsonpath", "constructor", "jsonata", "tag_rule", "view"):
    ROUTE_SCOPES[("POST", f"/api/v1/workspaces/{{ws}}/test/{_tool}")] = "iotman:test:run"


def required_scope(method: str, path_template: str) -> str | None:
    try:
        return ROUTE_SCOPES[(method, path_template)]
    except KeyError:
        raise LookupError(f"route {method} {path_template} is not in the scope table") from None
