"""Regression tests for problems found in review: each names the finding it guards."""

from __future__ import annotations

import gzip
import json
import zlib

from iotman.storage.ports import EventQuery
from tests.conftest import Api


def stored_metadata(api: Api) -> list[dict]:
    ws = api.engine.admin.workspace(api.ws)
    return [json.loads(r.metadata) for r in api.engine.store.read_events(EventQuery(ws.id, descending=False))]


def test_multi_member_gzip_is_read_whole(api: Api) -> None:
    api.source(name="readings")
    body = gzip.compress(b'{"n":1}\n') + gzip.compress(b'{"n":2}\n{"n":3}\n')
    response = api.post("readings", body, "application/x-ndjson", headers={"Content-Encoding": "gzip"})
    assert response.status_code == 202
    assert response.json()["last_seq"] == 3


def test_bytes_after_compressed_data_are_refused(api: Api) -> None:
    api.source(name="readings")
    response = api.post("readings", zlib.compress(b'{"a":1}') + b"GARBAGE", headers={"Content-Encoding": "deflate"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "trailing_data"


def test_deep_nesting_is_a_clear_400(api: Api) -> None:
    api.source(name="readings", schema={"type": "array"})
    for depth in (300, 1000, 2000):
        response = api.post("readings", "[" * depth + "]" * depth)
        assert response.status_code == 400, (depth, response.text)
        assert response.json()["error"]["code"] in ("too_deep", "invalid_json")


def test_infinite_and_out_of_range_times(api: Api) -> None:
    api.source(name="readings", read_access=True, read_auth="none")
    for value in ("inf", "-inf", "1e309", "nan", "-5", "0001-01-01T00:00:00Z"):
        response = api.client.get(f"/data/acme/readings?from={value}")
        assert response.status_code == 400, (value, response.text)
        assert response.json()["error"]["code"] == "invalid_time"


def test_huge_quarantine_cursor(api: Api) -> None:
    response = api.admin("GET", "/quarantine?before_id=99999999999999999999999")
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "before_id"


def test_ingest_needs_data_write_scope(api: Api) -> None:
    api.source(name="devices", auth="oauth2")
    reader = api.token_for(preset="read-only")
    refused = api.post("devices", b"{}", headers={"Authorization": f"Bearer {reader}"})
    assert refused.status_code == 403
    assert refused.json()["error"]["required_scope"] == "iotman:data:write"
    operator = api.token_for(preset="operator")
    assert api.post("devices", b"{}", headers={"Authorization": f"Bearer {operator}"}).status_code == 202


def test_inconsistent_source_definitions_are_refused(api: Api) -> None:
    scoped_open = api.admin("POST", "/sources", json={"name": "x", "required_scope": "app:write"})
    assert scoped_open.status_code == 422
    assert scoped_open.json()["error"]["field"] == "required_scope"
    mode_only = api.admin("POST", "/sources", json={"name": "x", "schema_mode": "reject"})
    assert mode_only.status_code == 422
    assert mode_only.json()["error"]["field"] == "schema_mode"
    for name in (".", ".."):
        assert api.admin("POST", "/sources", json={"name": name}).status_code == 422


def test_foreign_token_on_an_open_source_is_not_recorded(api: Api) -> None:
    api.engine.admin.create_workspace("beta")
    foreign, _ = api.engine.admin.create_token("beta", preset="full-access")
    api.source(name="readings")
    assert api.post("readings", b"{}", headers={"Authorization": f"Bearer {foreign}"}).status_code == 202
    meta = stored_metadata(api)[0]
    assert meta["auth_method"] == "none"
    assert meta["ingest_context"] == {}


def test_idempotency_keys_are_per_sender(api: Api) -> None:
    api.source(name="devices", auth="oauth2")
    one, two = api.token_for("iotman:data:write"), api.token_for("iotman:data:write")
    key = {"Idempotency-Key": "counter-1"}
    first = api.post("devices", b'{"v":1}', headers={**key, "Authorization": f"Bearer {one}"})
    second = api.post("devices", b'{"v":1}', headers={**key, "Authorization": f"Bearer {two}"})
    assert first.json()["seq"] == 1
    assert second.json()["seq"] == 2
    assert "Idempotent-Replayed" not in second.headers


def test_bom_json_on_auto_source(api: Api) -> None:
    api.source(name="auto", decode="auto")
    assert api.post("auto", b'\xef\xbb\xbf{"a":1}', "application/octet-stream").status_code == 202
    looks_json = api.post("auto", b'{"a":1}', "application/msgpack")
    assert "looks like JSON" in looks_json.json()["error"]["message"]


def test_no_slash_redirect_on_data_routes(api: Api) -> None:
    api.source(name="readings")
    response = api.client.post("/data/acme/readings/", content=b"{}", follow_redirects=False)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
