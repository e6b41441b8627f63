"""Tag rules, outputs, export endpoints and test tools through the HTTP API (SPEC §3, §5.1, §8)."""

from __future__ import annotations

import json

import pytest

from iotman.storage.ports import EventQuery
from tests.conftest import Api


def create(api: Api, collection: str, **body: object) -> dict:
    response = api.admin("POST", f"/{collection}", json=body)
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture
def fleet(api: Api) -> Api:
    api.source(name="readings")
    api.source(name="alerts")
    create(api, "tag-rules", name="device_id", method="value", path="$.device_id")
    create(api, "tag-rules", name="hot", method="constant", value=1, filter="$[?@.value > 30]")
    create(api, "tag-rules", name="model", method="regex", path="$.fw", pattern=r"^(\w+)-")
    return api


def send(api: Api, *events: dict, source: str = "readings") -> None:
    body = "\n".join(json.dumps(e) for e in events)
    assert api.post(source, body, "application/x-ndjson").status_code == 202


def test_tags_are_computed_at_ingest_and_stored(fleet: Api) -> None:
    send(fleet, {"device_id": "d-1", "value": 31, "fw": "abc-1"}, {"device_id": "d-2", "value": 5})
    ws = fleet.engine.admin.workspace("acme")
    rows = fleet.engine.store.read_events(EventQuery(ws.id, descending=False))
    assert [json.loads(r.tags or "null") for r in rows] == [
        {"device_id": "d-1", "hot": 1, "model": "abc"},
        {"device_id": "d-2"},
    ]


def test_several_rules_may_read_the_same_path(fleet: Api) -> None:
    create(fleet, "tag-rules", name="fw_version", method="regex", path="$.fw", pattern=r"-(\d+)$")
    send(fleet, {"fw": "abc-7"})
    ws = fleet.engine.admin.workspace("acme")
    row = fleet.engine.store.read_events(EventQuery(ws.id))[0]
    assert json.loads(row.tags or "{}") == {"model": "abc", "fw_version": "7"}


def test_changed_rules_apply_to_new_events_only(fleet: Api) -> None:
    send(fleet, {"device_id": "d-1"})
    response = fleet.admin(
        "PUT", "/tag-rules/device_id", json={"name": "device_id", "method": "constant", "value": "fixed"}
    )
    assert response.status_code == 200, response.text
    send(fleet, {"device_id": "d-1"})
    ws = fleet.engine.admin.workspace("acme")
    rows = fleet.engine.store.read_events(EventQuery(ws.id, descending=False))
    assert [json.loads(r.tags or "{}").get("device_id") for r in rows] == ["d-1", "fixed"]


def test_failing_rule_is_counted_and_visible(fleet: Api) -> None:
    send(fleet, {"device_id": {"nested": True}}, {"device_id": "ok"})
    rule = fleet.admin("GET", "/tag-rules/device_id").json()
    assert rule["status"]["failures"] == 1
    assert "an object" in rule["status"]["last_error"]
    ws = fleet.engine.admin.workspace("acme")
    assert fleet.engine.store.count_events(ws.id) == 2


def test_output_and_export_endpoint_with_constructor_and_tag_select(fleet: Api) -> None:
    create(
        fleet,
        "outputs",
        name="history",
        select={"tags": {"device_id": "d-1"}},
        constructor="{ts: $received_at, v: $.value, dev: $tags.device_id, seq: $seq}",
    )
    create(fleet, "export-endpoints", name="history", output="history", auth="none")
    send(fleet, {"device_id": "d-1", "value": 1}, {"device_id": "d-2", "value": 2}, {"device_id": "d-1", "value": 3})
    body = fleet.client.get("/data/acme/history").json()
    assert [(d["v"], d["dev"], d["seq"]) for d in body["data"]] == [(3, "d-1", 3), (1, "d-1", 1)]
    assert body["data"][0]["ts"] == "2026-11-23T10:00:00.000000Z"
    lines = fleet.client.get("/data/acme/history?order=asc", headers={"Accept": "application/x-ndjson"}).text
    assert [json.loads(line)["v"] for line in lines.splitlines()] == [1, 3]


def test_has_tag_select_and_sources_select(fleet: Api) -> None:
    create(fleet, "outputs", name="hot", select={"tags": {"hot": "*"}, "sources": ["readings", "alerts"]})
    create(fleet, "outputs", name="both", select={"sources": ["readings", "alerts"]}, constructor="[$.value]")
    create(fleet, "export-endpoints", name="hot", output="hot", auth="none")
    create(fleet, "export-endpoints", name="both", output="both", auth="none")
    send(fleet, {"value": 40}, {"value": 1})
    send(fleet, {"value": 50}, source="alerts")
    assert fleet.client.get("/data/acme/hot").json()["data"] == [{"value": 50}, {"value": 40}]
    assert fleet.client.get("/data/acme/both?limit=2").json()["data"] == [[50], [1]]


def test_same_path_ingests_and_reads(fleet: Api) -> None:
    create(fleet, "outputs", name="raw", select={"sources": ["readings"]})
    create(fleet, "export-endpoints", name="readings-out", output="raw", path="readings", auth="none")
    send(fleet, {"value": 1})
    assert fleet.client.get("/data/acme/readings").json()["data"] == [{"value": 1}]


def test_strict_failures_skip_the_event_and_count(fleet: Api) -> None:
    create(fleet, "outputs", name="strict", select={"sources": ["readings"]}, constructor="{v: strict $.value}")
    create(fleet, "export-endpoints", name="strict", output="strict", auth="none")
    send(fleet, {"value": 1}, {"other": 2}, {"value": 3})
    assert fleet.client.get("/data/acme/strict").json()["data"] == [{"v": 3}, {"v": 1}]
    status = fleet.admin("GET", "/outputs/strict").json()["status"]
    assert status["failures"] == 1
    assert "strict $.value" in status["last_error"]


def test_endpoint_auth_scope_and_cors(fleet: Api) -> None:
    create(fleet, "outputs", name="all")
    create(
        fleet,
        "export-endpoints",
        name="app",
        output="all",
        required_scope="app:read",
        cors_origins=["https://app.example.com"],
    )
    send(fleet, {"value": 1})
    assert fleet.client.get("/data/acme/app").status_code == 401
    reader = fleet.token_for(preset="read-only")
    denied = fleet.client.get("/data/acme/app", headers={"Authorization": f"Bearer {reader}"})
    assert denied.status_code == 403
    assert denied.json()["error"]["required_scope"] == "app:read"
    app_token = fleet.token_for("app:read")
    origin = {"Origin": "https://app.example.com"}
    ok = fleet.client.get("/data/acme/app", headers={"Authorization": f"Bearer {app_token}", **origin})
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == "https://app.example.com"
    preflight = fleet.client.options("/data/acme/app", headers=origin)
    assert preflight.status_code == 204
    assert "GET" in preflight.headers["access-control-allow-methods"]
    assert fleet.client.options("/data/acme/app", headers={"Origin": "https://evil.example"}).status_code == 403
    other = fleet.client.get("/data/acme/app", headers={"Authorization": f"Bearer {app_token}", "Origin": "https://x"})
    assert "access-control-allow-origin" not in other.headers


def test_definition_errors_name_field_and_position(fleet: Api) -> None:
    bad_path = fleet.admin("POST", "/tag-rules", json={"name": "x", "method": "value", "path": "$.a[?"})
    assert bad_path.status_code == 422
    assert bad_path.json()["error"]["field"] == "path"
    assert bad_path.json()["error"]["position"] == 5
    jsonata = fleet.admin("POST", "/tag-rules", json={"name": "x", "method": "value", "path": "payload.a"})
    assert "JSONata" in jsonata.json()["error"]["message"]
    bad_regex = fleet.admin("POST", "/tag-rules", json={"name": "x", "method": "regex", "path": "$.a", "pattern": "("})
    assert bad_regex.json()["error"]["code"] == "invalid_regex"
    bad_ctor = fleet.admin("POST", "/outputs", json={"name": "o", "constructor": "{a: $.x, a: 1}"})
    assert bad_ctor.json()["error"]["position"] == 9
    assert bad_ctor.json()["error"]["excerpt"] == "{a: $.x, a: 1}\n         ^"
    unknown_tag = fleet.admin("POST", "/outputs", json={"name": "o", "select": {"tags": {"nope": "*"}}})
    assert unknown_tag.json()["error"]["code"] == "unknown_tag"
    unknown_source = fleet.admin("POST", "/outputs", json={"name": "o", "select": {"sources": ["ghost"]}})
    assert unknown_source.json()["error"]["field"] == "select.sources"
    no_output = fleet.admin("POST", "/export-endpoints", json={"name": "e", "output": "ghost"})
    assert no_output.json()["error"]["code"] == "unknown_output"
    rule_sources = fleet.admin("POST", "/tag-rules", json={"name": "y", "method": "source", "sources": ["ghost"]})
    assert rule_sources.json()["error"]["code"] == "unknown_source"


def test_references_block_deletion_and_path_conflicts(fleet: Api) -> None:
    create(fleet, "outputs", name="o", select={"tags": {"device_id": "*"}})
    create(fleet, "export-endpoints", name="e", output="o")
    in_use = fleet.admin("DELETE", "/outputs/o")
    assert in_use.status_code == 409
    assert in_use.json()["error"]["used_by"] == ["e"]
    assert fleet.admin("DELETE", "/tag-rules/device_id").status_code == 409
    readable = fleet.admin("PUT", "/sources/readings", json={"name": "readings", "read_access": True, "path": "e"})
    assert readable.status_code == 409
    assert fleet.admin("DELETE", "/export-endpoints/e").status_code == 204
    assert fleet.admin("DELETE", "/outputs/o").status_code == 204
    assert fleet.admin("DELETE", "/tag-rules/device_id").status_code == 204


def test_reading_unknown_paths(fleet: Api) -> None:
    response = fleet.client.get("/data/acme/ghost")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "endpoint_not_found"
    assert fleet.client.get("/data/acme/readings").json()["error"]["code"] == "read_access_off"


def test_test_tools(fleet: Api) -> None:
    jsonpath = fleet.admin(
        "POST", "/test/jsonpath", json={"query": "$.a[*].b", "document": {"a": [{"b": 1}, {"b": 2}]}}
    )
    assert jsonpath.json() == {"singular": False, "result": [1, 2]}
    bad = fleet.admin("POST", "/test/jsonpath", json={"query": "$.a[", "document": {}})
    assert bad.status_code == 422
    assert bad.json()["error"]["excerpt"] == "$.a[\n    ^"
    ctor = fleet.admin(
        "POST",
        "/test/constructor",
        json={"constructor": "{v: $.value, d: $tags.device_id}", "payload": {"value": 3}, "tags": {"device_id": "x"}},
    )
    assert ctor.json()["result"] == {"v": 3, "d": "x"}
    assert ctor.json()["fields"] == [{"name": "v", "aggregatable": True}, {"name": "d", "aggregatable": False}]
    many = fleet.admin(
        "POST",
        "/test/constructor",
        json={"constructor": "{v: strict $.v}", "events": [{"payload": {"v": 1}}, {"payload": {}}]},
    )
    assert many.json()["results"][0] == {"result": {"v": 1}}
    assert many.json()["results"][1]["error"]["code"] == "strict_missing"
    rule = fleet.admin(
        "POST",
        "/test/tag_rule",
        json={
            "rule": {"name": "m", "method": "regex", "path": "$.fw", "pattern": "^(\\w+)-"},
            "payload": {"fw": "x-1"},
        },
    )
    assert rule.json() == {"tags": {"m": "x"}, "applies": True}
    failing = fleet.admin(
        "POST", "/test/tag_rule", json={"rule": {"name": "m", "method": "value", "path": "$.o"}, "payload": {"o": {}}}
    )
    assert "an object" in failing.json()["error"]
    ws = fleet.engine.admin.workspace("acme")
    assert fleet.engine.store.count_events(ws.id) == 0


def test_jsonata_test_tool(fleet: Api) -> None:
    ok = fleet.admin(
        "POST",
        "/test/jsonata",
        json={"expression": "$sum(payload.v) * $k", "input": {"payload": {"v": [1, 2]}}, "bindings": {"k": 10}},
    )
    assert ok.status_code == 200
    assert ok.json() == {"result": 30, "engine": "jlens"}
    undefined = fleet.admin("POST", "/test/jsonata", json={"expression": "nothing", "payload": {"a": 1}})
    assert undefined.json() == {"undefined": True, "engine": "jlens"}
    assert fleet.admin("POST", "/test/jsonata", json={"expression": "null"}).json()["result"] is None
    failed = fleet.admin("POST", "/test/jsonata", json={"expression": "a + 1", "input": {"a": "x"}})
    assert failed.status_code == 200
    assert failed.json()["error"]["jsonata_code"] == "T2001"
    runaway = fleet.admin("POST", "/test/jsonata", json={"expression": "($f := function($n){ $f($n+1) }; $f(1))"})
    assert runaway.json()["error"]["code"] == "jsonata_limit_exceeded"
    bad = fleet.admin("POST", "/test/jsonata", json={"expression": "payload.items["})
    assert bad.status_code == 422
    assert bad.json()["error"]["code"] == "invalid_jsonata"
    assert bad.json()["error"]["position"] == 14
    assert bad.json()["error"]["excerpt"] == "payload.items[\n              ^"
    jsonpath = fleet.admin("POST", "/test/jsonata", json={"expression": "$.payload.v"})
    assert jsonpath.status_code == 422
    assert jsonpath.json()["error"]["code"] == "wrong_expression_language"
    bindings = fleet.admin("POST", "/test/jsonata", json={"expression": "1", "bindings": [1]})
    assert bindings.status_code == 422
