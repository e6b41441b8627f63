"""The admin API: workspaces and sources, errors naming the field, token checks."""

from __future__ import annotations

from tests.conftest import Api


def server(api: Api) -> dict[str, str]:
    return {"Authorization": f"Bearer {api.engine.admin.create_server_token()}"}


def test_create_list_get_delete_workspace(api: Api) -> None:
    admin = server(api)
    created = api.client.post("/api/v1/workspaces", json={"slug": "beta"}, headers=admin)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["slug"] == "beta"
    assert len(body["uuid"]) == 36
    assert body["token"].startswith("iotman_pat_")
    # the returned token administers the new workspace
    new_auth = {"Authorization": f"Bearer {body['token']}"}
    assert api.client.get("/api/v1/workspaces/beta/sources", headers=new_auth).status_code == 200
    listed = api.client.get("/api/v1/workspaces", headers=admin).json()["data"]
    assert [w["slug"] for w in listed] == ["acme", "beta"]
    assert api.client.get("/api/v1/workspaces/beta", headers=admin).json()["uuid"] == body["uuid"]
    assert api.client.delete("/api/v1/workspaces/beta", headers=admin).status_code == 204
    assert api.client.get("/api/v1/workspaces/beta", headers=admin).status_code == 404


def test_workspace_tokens_stay_in_their_workspace(api: Api) -> None:
    api.engine.admin.create_workspace("beta")
    beta_full, _ = api.engine.admin.create_token("beta", preset="full-access")
    beta = {"Authorization": f"Bearer {beta_full}"}
    refused = api.client.post("/api/v1/workspaces", json={"slug": "gamma"}, headers=beta)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "server_admin_required"
    assert [w["slug"] for w in api.client.get("/api/v1/workspaces", headers=beta).json()["data"]] == ["beta"]
    for method in ("GET", "DELETE"):
        response = api.client.request(method, "/api/v1/workspaces/acme", headers=beta)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "token_wrong_workspace"
    # an unknown workspace answers the same, so slugs cannot be probed
    ghost = api.client.get("/api/v1/workspaces/ghost/sources", headers=beta)
    assert ghost.status_code == 401
    assert ghost.json()["error"]["code"] == "token_wrong_workspace"
    assert api.client.delete("/api/v1/workspaces/beta", headers=beta).status_code == 204
    assert api.engine.store.get_workspace("acme") is not None


def test_workspace_errors(api: Api) -> None:
    admin = server(api)
    bad = api.client.post("/api/v1/workspaces", json={"slug": "Bad Slug"}, headers=admin)
    assert bad.status_code == 422
    assert bad.json()["error"] == {
        "code": "invalid_slug",
        "message": "slug must be 1 to 64 characters of a-z, 0-9 and '-'",
        "field": "slug",
    }
    dup = api.client.post("/api/v1/workspaces", json={"slug": "acme"}, headers=admin)
    assert dup.status_code == 409
    last = api.client.delete("/api/v1/workspaces/acme", headers=api.auth)
    assert last.status_code == 409
    assert last.json()["error"]["code"] == "last_workspace"
    not_json = api.client.post("/api/v1/workspaces", content=b"{slug", headers=admin)
    assert not_json.status_code == 400
    assert not_json.json()["error"]["code"] == "invalid_json"


def test_deleting_a_workspace_removes_its_events_only(api: Api) -> None:
    api.engine.admin.create_workspace("beta")
    api.source(name="readings")
    beta_token, _ = api.engine.admin.create_token("beta", preset="full-access")
    beta = {"Authorization": f"Bearer {beta_token}"}
    api.client.post("/api/v1/workspaces/beta/sources", json={"name": "readings"}, headers=beta)
    api.post("readings", b"1")
    api.client.post("/data/beta/readings", content=b"2")
    assert api.client.delete("/api/v1/workspaces/beta", headers=beta).status_code == 204
    assert api.engine.store.count_events(api.engine.admin.workspace("acme").id) == 1
    assert api.client.post("/data/beta/readings", content=b"3").status_code == 404


def test_source_crud(api: Api) -> None:
    created = api.source(name="Room Sensors")
    assert created["path"] == "room-sensors"
    assert created["auth"] == "none"
    assert created["schema_mode"] == "off"
    assert created["decode"] == "json"
    assert created["read_access"] is False
    assert created["version"] == 1
    got = api.admin("GET", "/sources/Room Sensors").json()
    assert got == created
    got["read_access"] = True
    replaced = api.admin("PUT", "/sources/Room Sensors", json=got)
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["read_access"] is True
    assert replaced.json()["version"] == 2
    assert [s["name"] for s in api.admin("GET", "/sources").json()["data"]] == ["Room Sensors"]
    assert api.admin("DELETE", "/sources/Room Sensors").status_code == 204
    assert api.admin("GET", "/sources/Room Sensors").status_code == 404
    assert api.post("room-sensors", b"{}").status_code == 404


def test_source_changes_apply_to_ingest_at_once(api: Api) -> None:
    api.source(name="readings")
    assert api.post("readings", b'{"x":1}').status_code == 202
    api.admin("PUT", "/sources/readings", json={"name": "readings", "schema": {"required": ["v"]}})
    assert api.post("readings", b'{"x":1}').status_code == 422


def test_source_validation_names_the_field(api: Api) -> None:
    cases = [
        ({"name": "x", "path": "Bad/Path"}, "path"),
        ({"name": "x", "auth": "magic"}, "auth"),
        ({"name": "x", "colour": "red"}, "colour"),
        ({"name": "bad name!"}, "name"),
        ({"path": "p"}, "name"),
        ({"name": "x", "schema": {"type": 12}}, "schema"),
        ({"name": "x", "schema_mode": "sometimes"}, "schema_mode"),
        ({"name": "x", "required_scope": "no scope"}, "required_scope"),
        ({"name": "x", "max_body_bytes": 0}, "max_body_bytes"),
    ]
    for body, field in cases:
        response = api.admin("POST", "/sources", json=body)
        assert response.status_code == 422, (body, response.text)
        error = response.json()["error"]
        assert error["field"] == field, (body, error)
        assert error["code"] in ("invalid_definition", "invalid_schema")
    assert api.admin("POST", "/sources", json=[1]).status_code == 422


def test_source_conflicts(api: Api) -> None:
    api.source(name="a", path="shared")
    dup = api.admin("POST", "/sources", json={"name": "a"})
    assert dup.status_code == 409
    assert dup.json()["error"]["code"] == "already_exists"
    taken = api.admin("POST", "/sources", json={"name": "b", "path": "shared"})
    assert taken.status_code == 409
    assert taken.json()["error"] == {
        "code": "path_taken",
        "message": "path 'shared' is already used by source 'a'",
        "field": "path",
    }
    rename = api.admin("PUT", "/sources/a", json={"name": "z"})
    assert rename.status_code == 422
    assert rename.json()["error"]["code"] == "name_mismatch"
    assert api.admin("PUT", "/sources/ghost", json={"name": "ghost"}).status_code == 404


def test_admin_api_requires_token(api: Api) -> None:
    response = api.client.get("/api/v1/workspaces/acme/sources")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "token_required"
    bad = api.client.get("/api/v1/workspaces/acme/sources", headers={"Authorization": "Bearer x"})
    assert bad.json()["error"]["code"] == "invalid_token"


def test_read_only_token_cannot_change_definitions(api: Api) -> None:
    reader = api.token_for(preset="read-only")
    assert api.admin("GET", "/sources", token=reader).status_code == 200
    response = api.admin("POST", "/sources", json={"name": "x"}, token=reader)
    assert response.status_code == 403
    assert response.json()["error"]["required_scope"] == "iotman:sources:create"


def test_token_of_another_workspace_cannot_administer(api: Api) -> None:
    api.engine.admin.create_workspace("other")
    foreign, _ = api.engine.admin.create_token("other", preset="read-only")
    response = api.admin("GET", "/sources", token=foreign)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "token_wrong_workspace"
    listed = api.client.get("/api/v1/workspaces", headers={"Authorization": f"Bearer {foreign}"}).json()
    assert [w["slug"] for w in listed["data"]] == ["other"]


def test_unknown_route_and_probes(api: Api) -> None:
    missing = api.client.get("/api/v1/nothing")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    assert api.client.get("/healthz").json() == {"status": "ok"}
    assert api.client.get("/readyz").json() == {"status": "ready"}
    assert api.client.get("/openapi.json").json()["info"]["title"] == "iotman"
