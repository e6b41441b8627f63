"""Every route is in the scope table, and every protected route refuses callers without its scope."""

from __future__ import annotations

import re

import pytest
from starlette.routing import Route, WebSocketRoute

from iotman.access.route_scopes import ROUTE_SCOPES
from iotman.web.admin_auth import SERVER_ONLY
from tests.conftest import Api


def app_routes(api: Api) -> set[tuple[str, str]]:
    app = api.client.app
    found: set[tuple[str, str]] = set()
    for router_routes in (app.admin.routes, app.data.routes):  # type: ignore[attr-defined]
        for route in router_routes:
            if isinstance(route, WebSocketRoute):
                found.add(("WEBSOCKET", route.path))
                continue
            assert isinstance(route, Route)
            for method in route.methods or ():
                if method != "HEAD":
                    found.add((method, route.path))
    return found


def test_every_route_is_in_the_table(api: Api) -> None:
    routes = app_routes(api)
    data_405 = {(m, "/data/{ws}/{path}") for m in ("PUT", "PATCH", "DELETE", "TRACE", "CONNECT")}
    missing = routes - set(ROUTE_SCOPES) - data_405
    assert not missing, f"add these routes to iotman.access.route_scopes.ROUTE_SCOPES: {sorted(missing)}"
    stale = set(ROUTE_SCOPES) - routes
    assert not stale, f"the table names routes that do not exist: {sorted(stale)}"


def concrete(path: str) -> str:
    return re.sub(r"\{ws\}", "acme", re.sub(r"\{name\}", "readings", path))


@pytest.mark.parametrize(("method", "path"), sorted(k for k, v in ROUTE_SCOPES.items() if v is not None))
def test_protected_route_refuses_missing_and_insufficient_tokens(api: Api, method: str, path: str) -> None:
    api.source(name="readings")
    url = concrete(path)
    anonymous = api.client.request(method, url, json={})
    assert anonymous.status_code == 401, anonymous.text
    powerless = api.token_for("app:nothing")
    response = api.client.request(method, url, json={}, headers={"Authorization": f"Bearer {powerless}"})
    assert response.status_code == 403, response.text
    if (method, path) in SERVER_ONLY:
        assert response.json()["error"]["code"] == "server_admin_required"
    else:
        assert response.json()["error"]["required_scope"] == ROUTE_SCOPES[(method, path)]


def test_scope_table_collections_match_the_definition_kinds() -> None:
    from iotman.access.route_scopes import COLLECTIONS
    from iotman.engine.definition_kinds import KINDS

    assert set(COLLECTIONS) == set(KINDS)
