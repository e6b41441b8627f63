"""POST /data/{ws}/{path}: formats, batches, idempotency, schemas, limits, auth, quarantine."""

from __future__ import annotations

import gzip
import json
import zlib

import msgpack
import orjson

from iotman.storage.ports import EventQuery
from tests.conftest import Api


def stored(api: Api, source: str | None = None) -> list[dict]:
    ws = api.engine.admin.workspace(api.ws)
    sources = (source,) if source else None
    rows = api.engine.store.read_events(EventQuery(ws.id, sources=sources, limit=10_000, descending=False))
    return [
        {"seq": r.seq, "id": r.id, "payload": json.loads(r.payload), "metadata": json.loads(r.metadata)} for r in rows
    ]


def quarantine(api: Api) -> list[dict]:
    response = api.admin("GET", "/quarantine")
    assert response.status_code == 200
    return response.json()["data"]


def test_single_event_is_acknowledged_with_id_and_seq(api: Api) -> None:
    api.source(name="readings")
    first = api.post("readings", b'{"device_id": "d-17", "value": 21.5}')
    second = api.post("readings", b'{"device_id": "d-17", "value": 22}')
    assert first.status_code == 202, first.text
    assert first.json()["seq"] == 1
    assert second.json()["seq"] == 2
    assert len(first.json()["id"]) == 26
    assert first.json()["id"] < second.json()["id"]
    events = stored(api)
    assert [e["payload"]["value"] for e in events] == [21.5, 22]


def test_metadata_is_stamped(api: Api) -> None:
    api.source(name="readings")
    api.post("readings", b"{}")
    meta = stored(api)[0]["metadata"]
    assert meta["source_ip"] == "203.0.113.7"
    assert meta["auth_method"] == "none"
    assert meta["ingest_context"] == {}


def test_any_json_value_is_an_event(api: Api) -> None:
    api.source(name="raw")
    for body in (b"1", b'"text"', b"[1,2]", b"null", b"true"):
        assert api.post("raw", body).status_code == 202
    assert [e["payload"] for e in stored(api)] == [1, "text", [1, 2], None, True]


def test_ndjson_batch(api: Api) -> None:
    api.source(name="readings")
    response = api.post("readings", b'{"v":1}\n\n{"v":2}\r\n{"v":3}\n', "application/x-ndjson")
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["first_seq"] == 1
    assert body["last_seq"] == 3
    assert len(body["ids"]) == 3
    assert [e["payload"]["v"] for e in stored(api)] == [1, 2, 3]


def test_json_array_batch(api: Api) -> None:
    api.source(name="readings")
    response = api.post("readings", b'[{"v":1},{"v":2}]', params={"batch": "1"})
    assert response.status_code == 202
    assert response.json()["last_seq"] == 2
    # without ?batch=1 an array is one event
    assert api.post("readings", b"[1,2]").json()["seq"] == 3


def test_batch_is_all_or_nothing(api: Api) -> None:
    api.source(name="readings")
    response = api.post("readings", b'{"v":1}\n{"v":\n{"v":3}\n', "application/x-ndjson")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_json"
    assert error["line"] == 2
    assert "line 2" in error["message"]
    assert stored(api) == []


def test_batch_body_must_be_array(api: Api) -> None:
    api.source(name="readings")
    response = api.post("readings", b'{"v":1}', params={"batch": "1"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "batch_not_array"
    assert api.post("readings", b"", "application/x-ndjson").json()["error"]["code"] == "empty_batch"
    assert api.post("readings", b"[]", params={"batch": "1"}).json()["error"]["code"] == "empty_batch"


def test_parse_error_names_position(api: Api) -> None:
    api.source(name="readings")
    response = api.post("readings", b'{"v": 1,, }')
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_json"
    assert error["position"] == 8
    assert "column" in error["message"]


def test_empty_body_is_refused(api: Api) -> None:
    api.source(name="readings")
    response = api.post("readings", b"  ")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "empty_body"


def test_unsupported_media_type(api: Api) -> None:
    api.source(name="readings")
    response = api.post("readings", b"a,b", "text/csv")
    assert response.status_code == 415
    assert response.json()["error"]["field"] == "Content-Type"


def test_idempotency_key_replays_first_answer(api: Api) -> None:
    api.source(name="readings")
    key = {"Idempotency-Key": "abc-123"}
    first = api.post("readings", b'{"v":1}', headers=key)
    again = api.post("readings", b'{"v":1}', headers=key)
    assert first.status_code == again.status_code == 202
    assert first.json() == again.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert len(stored(api)) == 1
    other = api.post("readings", b'{"v":2}', headers=key)
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert len(stored(api)) == 1


def test_idempotency_key_for_batches(api: Api) -> None:
    api.source(name="readings")
    key = {"Idempotency-Key": "batch-1"}
    first = api.post("readings", b"1\n2\n", "application/x-ndjson", headers=key)
    again = api.post("readings", b"1\n2\n", "application/x-ndjson", headers=key)
    assert first.json() == again.json()
    assert len(stored(api)) == 2


def test_idempotency_key_expires_after_ttl(api: Api) -> None:
    api.source(name="readings")
    key = {"Idempotency-Key": "k"}
    api.post("readings", b"1", headers=key)
    api.clock.advance(24 * 3600 + 1)
    assert api.post("readings", b"1", headers=key).json()["seq"] == 2


def test_idempotency_key_length_is_checked(api: Api) -> None:
    api.source(name="readings")
    response = api.post("readings", b"1", headers={"Idempotency-Key": "x" * 300})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_idempotency_key"


def test_gzip_and_deflate_bodies(api: Api) -> None:
    api.source(name="readings")
    assert api.post("readings", gzip.compress(b'{"v":1}'), headers={"Content-Encoding": "gzip"}).status_code == 202
    assert api.post("readings", zlib.compress(b'{"v":2}'), headers={"Content-Encoding": "deflate"}).status_code == 202
    raw = zlib.compressobj(wbits=-15)
    raw_deflate = raw.compress(b'{"v":3}') + raw.flush()
    assert api.post("readings", raw_deflate, headers={"Content-Encoding": "deflate"}).status_code == 202
    assert [e["payload"]["v"] for e in stored(api)] == [1, 2, 3]
    bad = api.post("readings", b"not gzip", headers={"Content-Encoding": "gzip"})
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "invalid_encoding"
    assert api.post("readings", b"{}", headers={"Content-Encoding": "br"}).status_code == 415


def test_msgpack_content_type(api: Api) -> None:
    api.source(name="readings")
    response = api.post("readings", msgpack.packb({"v": 1, "tags": ["a"]}), "application/msgpack")
    assert response.status_code == 202, response.text
    assert stored(api)[0]["payload"] == {"v": 1, "tags": ["a"]}
    binary = api.post("readings", msgpack.packb({"v": b"\x00"}), "application/msgpack")
    assert binary.status_code == 400
    assert binary.json()["error"]["code"] == "invalid_msgpack"
    nan = api.post("readings", msgpack.packb({"v": float("nan")}), "application/msgpack")
    assert nan.status_code == 400


def test_decode_auto_detects_deflate_then_msgpack_then_json(api: Api) -> None:
    api.source(name="auto", decode="auto")
    assert api.post("auto", zlib.compress(msgpack.packb({"a": 1})), "application/octet-stream").status_code == 202
    assert api.post("auto", msgpack.packb({"b": 2}), "application/octet-stream").status_code == 202
    assert api.post("auto", zlib.compress(b'{"c": 3}'), "application/octet-stream").status_code == 202
    assert api.post("auto", b'{"d": 4}').status_code == 202
    assert [e["payload"] for e in stored(api)] == [{"a": 1}, {"b": 2}, {"c": 3}, {"d": 4}]


def test_decode_msgpack_and_deflate_modes(api: Api) -> None:
    api.source(name="mp", decode="msgpack")
    api.source(name="df", decode="deflate")
    assert api.post("mp", msgpack.packb([1, 2]), "application/json").status_code == 202
    assert api.post("df", zlib.compress(b'{"z":1}')).status_code == 202
    assert api.post("df", b'{"z":1}').status_code == 400


def test_big_integers_are_kept_exactly(api: Api) -> None:
    api.source(name="readings", read_access=True, read_auth="none")
    big = 123456789012345678901234567890
    assert api.post("readings", f'{{"n": {big}, "m": -{big}}}').status_code == 202
    assert stored(api)[0]["payload"] == {"n": big, "m": -big}
    assert api.client.get("/data/acme/readings").text == f'{{"data":[{{"n":{big},"m":-{big}}}],"next_page":null}}'


def test_schema_reject_names_pointer_and_stores_nothing(api: Api) -> None:
    schema = {"type": "object", "required": ["v"], "properties": {"v": {"type": "number"}}}
    api.source(name="strict", schema=schema)
    response = api.post("strict", b'{"v": "hot"}')
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "schema_rejected"
    assert error["errors"][0]["errors"][0]["pointer"] == "/v"
    assert "/v" in error["message"]
    batch = api.post("strict", b'{"v":1}\n{"x":1}\n', "application/x-ndjson")
    assert batch.status_code == 422
    assert batch.json()["error"]["errors"][0]["index"] == 1
    assert stored(api) == []
    assert api.post("strict", b'{"v": 2}').status_code == 202


def test_schema_warn_stores_with_schema_errors(api: Api) -> None:
    api.source(name="lenient", schema={"type": "object", "required": ["v"]}, schema_mode="warn")
    assert api.post("lenient", b'{"v":1}\n{"x":1}\n', "application/x-ndjson").status_code == 202
    events = stored(api)
    assert "schema_errors" not in events[0]["metadata"]
    assert events[1]["metadata"]["schema_errors"][0]["message"] == '"v" is a required property'


def test_schema_with_remote_ref_is_refused_at_definition_time(api: Api) -> None:
    response = api.admin("POST", "/sources", json={"name": "r", "schema": {"$ref": "https://example.com/s.json"}})
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "schema"
    assert "not fetched" in response.json()["error"]["message"]


def test_body_size_limit(api: Api) -> None:
    api.source(name="small", max_body_bytes=100)
    response = api.post("small", b'{"pad": "' + b"x" * 200 + b'"}')
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    bomb = gzip.compress(b'{"pad": "' + b"x" * 10_000 + b'"}')
    assert len(bomb) < 100
    assert api.post("small", bomb, headers={"Content-Encoding": "gzip"}).status_code == 413
    assert stored(api) == []


def test_unknown_source_and_workspace(api: Api) -> None:
    response = api.post("nope", b"{}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "source_not_found"
    other = api.client.post("/data/ghost/readings", content=b"{}")
    assert other.status_code == 404
    assert other.json()["error"]["code"] == "workspace_not_found"
    assert api.client.post("/data/acme", content=b"{}").status_code == 404


def test_oauth2_source_requires_valid_token_with_scope(api: Api) -> None:
    api.source(name="secure", auth="oauth2", required_scope="app:ingest")
    missing = api.post("secure", b"{}")
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "token_required"
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    bad = api.post("secure", b"{}", headers={"Authorization": "Bearer nope"})
    assert bad.json()["error"]["code"] == "invalid_token"
    weak = api.token_for("app:other")
    forbidden = api.post("secure", b"{}", headers={"Authorization": f"Bearer {weak}"})
    assert forbidden.status_code == 403
    assert forbidden.json()["error"]["code"] == "insufficient_scope"
    good = api.token_for("app:ingest")
    ok = api.post("secure", b'{"v":1}', headers={"Authorization": f"Bearer {good}"})
    assert ok.status_code == 202
    meta = stored(api)[0]["metadata"]
    assert meta["auth_method"] == "oauth2"
    assert meta["ingest_context"]["client_id"] == "test"
    assert meta["ingest_context"]["scope"] == "app:ingest"


def test_token_of_another_workspace_is_refused(api: Api) -> None:
    api.engine.admin.create_workspace("other")
    foreign, _ = api.engine.admin.create_token("other", preset="full-access")
    api.source(name="secure", auth="oauth2")
    response = api.post("secure", b"{}", headers={"Authorization": f"Bearer {foreign}"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "token_wrong_workspace"


def test_refusals_go_to_quarantine(api: Api) -> None:
    api.source(name="readings", schema={"type": "object", "required": ["v"]})
    api.source(name="secure", auth="oauth2")
    api.post("readings", b'{"v": 1,,}')
    api.post("readings", b'{"x": 1}')
    api.post("secure", b"{}")
    api.post("missing", b"{}")
    entries = quarantine(api)
    reasons = [e["reason"] for e in entries]
    assert reasons == ["source_not_found", "token_required", "schema_rejected", "invalid_json"]
    bad_json = entries[-1]
    assert bad_json["body_head"] == '{"v": 1,,}'
    assert bad_json["principal"] == "anonymous"
    assert bad_json["source"] == "readings"
    assert bad_json["details"]["position"] == 8
    assert entries[2]["details"]["errors"][0]["errors"][0]["message"] == '"v" is a required property'


def test_quarantine_pages(api: Api) -> None:
    api.source(name="readings")
    for _ in range(5):
        api.post("readings", b"{")
    page = api.admin("GET", "/quarantine?limit=2").json()
    assert len(page["data"]) == 2
    assert page["next_page"]
    seen = [e["id"] for e in page["data"]]
    while page["next_page"]:
        page = api.client.get(page["next_page"], headers=api.auth).json()
        seen += [e["id"] for e in page["data"]]
    assert seen == sorted(seen, reverse=True)
    assert len(seen) == 5


def test_metrics_count_ingest(api: Api) -> None:
    api.source(name="readings")
    api.post("readings", b"1\n2\n", "application/x-ndjson")
    api.post("readings", b"{")
    text = api.client.get("/metrics").text
    assert "iotman_ingest_events_total 2.0" in text
    assert 'iotman_ingest_requests_total{outcome="accepted"} 1.0' in text
    assert 'iotman_ingest_requests_total{outcome="invalid_json"} 1.0' in text
    assert "iotman_ingest_latency_seconds_count 1.0" in text


def test_wrong_method_on_data_route(api: Api) -> None:
    api.source(name="readings")
    response = api.client.delete("/data/acme/readings")
    assert response.status_code == 405
    assert orjson.loads(response.content)["error"]["code"] == "method_not_allowed"
