"""Views end to end (SPEC §4.1): definitions, folding in the append transaction, reads."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from iotman.storage.ports import EventQuery
from tests.conftest import Api

COUNTER = "{'count': ($exists(prev.count) ? prev.count : 0) + 1, 'max': $max([prev.max, event.payload.value])}"


def create(api: Api, **body: Any) -> Any:
    return api.admin("POST", "/views", json=body)


def send(api: Api, *events: dict[str, Any], source: str = "readings") -> None:
    body = "\n".join(json.dumps(e) for e in events)
    response = api.post(source, body, "application/x-ndjson")
    assert response.status_code == 202, response.text


def read(api: Api, view: str, token: str | None = None, **query: str) -> Any:
    headers = {"Authorization": f"Bearer {token or api.token}"}
    return api.client.get(f"/views/{api.ws}/{view}/data", params=query, headers=headers)


@pytest.fixture
def plant(api: Api) -> Api:
    api.source(name="readings")
    api.source(name="alerts")
    assert (
        api.admin("POST", "/tag-rules", json={"name": "site", "method": "value", "path": "$.site"}).status_code == 201
    )
    assert create(api, name="latest", sources=["readings"], key="payload.device_id", reducer="last").status_code == 201
    assert create(api, name="counts", key="source", reducer="count").status_code == 201
    assert create(api, name="stats", key="payload.device_id", reducer=COUNTER).status_code == 201
    assert create(api, name="by-site", key="tags.site", reducer="first").status_code == 201
    return api


def test_a_post_returns_with_every_view_already_folded(plant: Api) -> None:
    send(plant, {"device_id": "d-1", "value": 20, "site": "s-a"})
    row = read(plant, "latest", key="d-1").json()["data"][0]
    assert row["key"] == "d-1"
    assert row["value"] == {"device_id": "d-1", "value": 20, "site": "s-a"}
    assert row["seq"] == 1
    assert row["updated_at"].endswith("Z")
    send(
        plant,
        {"device_id": "d-1", "value": 25, "site": "s-a"},
        {"device_id": "d-2", "value": 5, "site": "s-b"},
        {"device_id": "d-1", "value": 22, "site": "s-b"},
    )
    assert read(plant, "latest", key="d-1").json()["data"][0]["value"]["value"] == 22
    assert read(plant, "stats", key="d-1").json()["data"][0]["value"] == {"count": 3, "max": 25}
    assert read(plant, "stats", key="d-2").json()["data"][0]["value"] == {"count": 1, "max": 5}
    assert read(plant, "counts", key="readings").json()["data"][0]["value"] == 4
    first = read(plant, "by-site", key="s-a").json()["data"][0]
    assert (first["value"]["value"], first["seq"]) == (20, 1)
    send(plant, {"device_id": "x", "value": 1}, source="alerts")
    assert read(plant, "latest", key="x").json()["data"] == []  # latest folds readings only
    assert read(plant, "counts", key="alerts").json()["data"][0]["value"] == 1


def test_point_reads_carry_an_etag_for_cheap_polling(plant: Api) -> None:
    send(plant, {"device_id": "d-1", "value": 1})
    first = read(plant, "latest", key="d-1")
    etag = first.headers["etag"]
    unchanged = plant.client.get(
        f"/views/{plant.ws}/latest/data", params={"key": "d-1"}, headers={**plant.auth, "If-None-Match": etag}
    )
    assert unchanged.status_code == 304
    send(plant, {"device_id": "d-1", "value": 2})
    changed = plant.client.get(
        f"/views/{plant.ws}/latest/data", params={"key": "d-1"}, headers={**plant.auth, "If-None-Match": etag}
    )
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag
    missing = read(plant, "latest", key="nobody")
    assert missing.status_code == 200
    assert missing.json() == {"data": []}


def test_prefix_scans_walk_keys_in_order_with_next_page(plant: Api) -> None:
    send(plant, *({"device_id": f"dev-{i:02d}", "value": i} for i in range(7)), {"device_id": "other", "value": 0})
    page = read(plant, "latest", prefix="dev-", limit="3").json()
    keys = [r["key"] for r in page["data"]]
    assert keys == ["dev-00", "dev-01", "dev-02"]
    seen = list(keys)
    while "next_page" in page:
        page = plant.client.get(page["next_page"], headers=plant.auth).json()
        seen += [r["key"] for r in page["data"]]
    assert seen == [f"dev-{i:02d}" for i in range(7)]
    everything = read(plant, "latest").json()["data"]
    assert [r["key"] for r in everything] == [*seen, "other"]
    assert read(plant, "latest", limit="0").status_code == 400
    assert read(plant, "latest", key="a", prefix="b").status_code == 400
    assert read(plant, "latest", colour="red").json()["error"]["code"] == "unknown_parameter"


def test_keys_that_are_null_missing_or_not_scalar_skip_the_event(plant: Api) -> None:
    send(plant, {"value": 1}, {"device_id": None, "value": 2}, {"device_id": {"a": 1}}, {"device_id": 7, "value": 3})
    assert [r["key"] for r in read(plant, "latest").json()["data"]] == ["7"]
    status = plant.admin("GET", "/views/latest").json()["status"]
    assert status["skipped"] == 3
    assert status["failures"] == 0


def test_a_failing_reducer_leaves_the_row_and_never_blocks_the_append(plant: Api) -> None:
    create(plant, name="strict", key="payload.device_id", reducer="prev + event.payload.value", init="0")
    send(
        plant, {"device_id": "d-1", "value": 2}, {"device_id": "d-1", "value": "oops"}, {"device_id": "d-1", "value": 3}
    )
    assert read(plant, "strict", key="d-1").json()["data"][0]["value"] == 5
    status = plant.admin("GET", "/views/strict").json()["status"]
    assert status["failures"] == 1
    assert status["last_error"]["jsonata_code"] == "T2002"
    assert status["last_error"]["seq"] == 2
    assert status["last_error"]["event_id"]
    ws = plant.engine.admin.workspace(plant.ws)
    assert plant.engine.store.count_events(ws.id) == 3


def test_a_runaway_reducer_is_stopped_and_the_server_keeps_serving(plant: Api) -> None:
    create(plant, name="runaway", key="payload.device_id", reducer="($f := function($n){ $f($n + 1) }; $f(1))")
    answers: list[int] = []

    def other_requests() -> None:
        for _ in range(20):
            answers.append(read(plant, "latest", key="d-1").status_code)

    reader = threading.Thread(target=other_requests)
    started = time.monotonic()
    reader.start()
    send(plant, {"device_id": "d-1", "value": 1})
    reader.join()
    assert time.monotonic() - started < 30
    assert answers == [200] * 20
    status = plant.admin("GET", "/views/runaway").json()["status"]
    assert status["failures"] == 1
    assert status["last_error"]["code"] == "jsonata_limit_exceeded"
    assert read(plant, "runaway", key="d-1").json()["data"] == []
    assert read(plant, "latest", key="d-1").json()["data"][0]["value"]["value"] == 1


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({"key": "payload.id[", "reducer": "last"}, "invalid_jsonata", "key"),
        ({"key": "$.payload.id", "reducer": "last"}, "wrong_expression_language", "key"),
        ({"key": "payload.id", "reducer": "prev +"}, "invalid_jsonata", "reducer"),
        ({"key": "payload.id", "reducer": "last", "init": "{"}, "invalid_jsonata", "init"),
        ({"key": "payload.id", "reducer": "last", "sources": ["nope"]}, "unknown_source", "sources"),
        ({"key": "payload.id"}, "invalid_definition", "reducer"),
        ({"name": "bad name", "key": "payload.id", "reducer": "last"}, "invalid_definition", "name"),
    ],
)
def test_bad_definitions_are_refused_at_save_time(plant: Api, body: dict[str, Any], code: str, field: str) -> None:
    response = create(plant, **{"name": "v", **body})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["field"] == field


def test_reads_need_a_token_with_the_right_scope(plant: Api) -> None:
    send(plant, {"device_id": "d-1", "value": 1})
    assert plant.client.get(f"/views/{plant.ws}/latest/data", params={"key": "d-1"}).status_code == 401
    writer = plant.token_for("iotman:data:write")
    assert read(plant, "latest", token=writer, key="d-1").status_code == 403
    reader = plant.token_for("iotman:data:read")
    assert read(plant, "latest", token=reader, key="d-1").status_code == 200
    create(plant, name="private", key="payload.device_id", reducer="last", required_scope="acme:ops")
    assert read(plant, "private", token=reader, key="d-1").status_code == 403
    assert read(plant, "nope", key="d-1").json()["error"]["code"] == "view_not_found"


def test_deleting_a_view_deletes_its_rows(plant: Api) -> None:
    send(plant, {"device_id": "d-1", "value": 1})
    assert plant.admin("DELETE", "/views/latest").status_code == 204
    create(plant, name="latest", key="payload.device_id", reducer="last")
    assert read(plant, "latest", key="d-1").json()["data"] == []
    send(plant, {"device_id": "d-1", "value": 2})
    assert read(plant, "latest", key="d-1").json()["data"][0]["value"]["value"] == 2


def wait_rebuilt(api: Api, view: str, timeout_s: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        rebuild = api.admin("GET", f"/views/{view}").json()["status"]["rebuild"]
        if rebuild is not None and rebuild["state"] != "running":
            return dict(rebuild)
        time.sleep(0.02)
    raise AssertionError(f"the rebuild of {view} did not finish in {timeout_s} s")


def rows(api: Api, view: str) -> dict[str, Any]:
    return {r["key"]: r["value"] for r in read(api, view, limit="1000").json()["data"]}


def test_a_changed_view_applies_going_forward_and_a_rebuild_refolds_the_log(plant: Api) -> None:
    send(plant, *({"device_id": f"d-{i % 3}", "value": i} for i in range(9)))
    body = {"key": "payload.device_id", "reducer": "prev + event.payload.value", "init": "0"}
    assert plant.admin("PUT", "/views/latest", json=body).status_code == 200
    send(plant, {"device_id": "d-0", "value": 100})
    assert rows(plant, "latest")["d-1"] == {"device_id": "d-1", "value": 7}  # old rows stay until a rebuild
    # the new reducer cannot add to an old row (an object): it fails, the row stays, the failure counts
    assert rows(plant, "latest")["d-0"] == {"device_id": "d-0", "value": 6}
    assert plant.admin("GET", "/views/latest").json()["status"]["last_error"]["jsonata_code"] == "T2001"
    started = plant.client.post(f"/views/{plant.ws}/latest/rebuild", headers=plant.auth)
    assert started.status_code == 202
    assert started.json()["rebuild"]["state"] in ("running", "done")
    done = wait_rebuilt(plant, "latest")
    assert done["state"] == "done"
    assert done["fraction"] == 1.0
    assert rows(plant, "latest") == {"d-0": 0 + 3 + 6 + 100, "d-1": 1 + 4 + 7, "d-2": 2 + 5 + 8}


def test_a_rebuild_under_concurrent_ingest_equals_the_incremental_fold(
    plant: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    from iotman.engine import view_rebuild

    monkeypatch.setattr(view_rebuild, "CHUNK", 7)  # many chunks, so events arrive between them
    create(plant, name="twin", key="payload.device_id", reducer=COUNTER)
    send(plant, *({"device_id": f"d-{i % 5}", "value": i} for i in range(200)))
    assert plant.client.post(f"/views/{plant.ws}/twin/rebuild", headers=plant.auth).status_code == 202
    for i in range(30):
        send(plant, {"device_id": f"d-{i % 7}", "value": 1000 + i})
    assert wait_rebuilt(plant, "twin")["state"] == "done"
    assert rows(plant, "twin") == rows(plant, "stats")  # stats folded the same reducer incrementally
    assert len(rows(plant, "twin")) == 7


def test_rebuilds_need_the_views_update_scope_and_run_one_at_a_time(plant: Api) -> None:
    reader = plant.token_for("iotman:data:read")
    refused = plant.client.post(f"/views/{plant.ws}/latest/rebuild", headers={"Authorization": f"Bearer {reader}"})
    assert refused.status_code == 403
    assert plant.client.post(f"/views/{plant.ws}/latest/rebuild").status_code == 401
    assert plant.client.post(f"/views/{plant.ws}/nope/rebuild", headers=plant.auth).status_code == 404


def test_the_view_test_tool_folds_samples_and_writes_nothing(plant: Api) -> None:
    samples = [
        {"payload": {"device_id": "d-1", "value": 3}, "source": "readings"},
        {"payload": {"device_id": "d-2", "value": 9}, "source": "readings", "tags": {"site": "s-1"}},
        {"payload": {"device_id": "d-1", "value": 5}, "source": "readings"},
        {"payload": {"value": 1}, "source": "readings"},
        {"payload": {"device_id": "d-1", "value": "x"}, "source": "readings"},
    ]
    view = {"key": "payload.device_id", "reducer": "prev + event.payload.value", "init": "0"}
    answer = plant.admin("POST", "/test/view", json={"view": view, "events": samples})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [(r["key"], r["value"], r["seq"]) for r in body["rows"]] == [("d-1", 8, 3), ("d-2", 9, 2)]
    assert body["status"]["skipped"] == 1
    assert body["status"]["failures"] == 1
    assert body["status"]["last_error"]["seq"] == 5
    by_tag = plant.admin(
        "POST", "/test/view", json={"view": {"key": "tags.site", "reducer": "count"}, "events": samples}
    ).json()
    assert by_tag["rows"] == [{"key": "s-1", "value": 1, "seq": 2}]
    bad = plant.admin("POST", "/test/view", json={"view": {"key": "payload.[", "reducer": "last"}, "events": []})
    assert bad.status_code == 422
    assert bad.json()["error"]["field"] == "view.key"
    assert read(plant, "latest").json()["data"] == []  # nothing written


def test_odd_values_never_fail_the_append_nor_mix_rows(plant: Api) -> None:
    """Found by review: lone surrogates, NUL characters and float keys."""
    create(plant, name="by-json", key="payload.(device_id)", reducer="count")
    raw = '{"device_id": "d-1", "note": "\\ud800"}'  # a lone surrogate: valid JSON, not valid Unicode
    assert plant.post("readings", raw).status_code == 202
    ws = plant.engine.admin.workspace(plant.ws)
    assert plant.engine.store.count_events(ws.id) == 1
    send(plant, {"device_id": "a", "value": 1}, {"device_id": "a\u0000x", "value": 2})
    assert read(plant, "latest", key="a").json()["data"][0]["value"]["value"] == 1  # not overwritten
    send(plant, {"device_id": 1, "value": 1}, {"device_id": 1.0, "value": 2}, {"device_id": 1e16, "value": 3})
    for view in ("latest", "by-json"):
        keys = [r["key"] for r in read(plant, view).json()["data"]]
        assert "1" in keys, (view, keys)
        assert "1.0" not in keys, (view, keys)
        assert "10000000000000000" in keys, (view, keys)
    assert read(plant, "by-json", key="1").json()["data"][0]["value"] == 2


def test_the_view_tool_never_sees_stored_events(plant: Api) -> None:
    send(plant, {"device_id": "d-1", "secret": "private"})
    stored = read(plant, "latest", key="d-1").json()["data"][0]
    ws = plant.engine.admin.workspace(plant.ws)
    event = plant.engine.store.read_events(EventQuery(ws.id, limit=1))[0]
    sample = {"id": event.id, "seq": stored["seq"], "source": "readings", "payload": {"device_id": "d-1"}}
    answer = plant.admin(
        "POST",
        "/test/view",
        json={"view": {"key": "payload.device_id", "reducer": "event.payload"}, "events": [sample]},
    )
    assert answer.json()["rows"] == [{"key": "d-1", "value": {"device_id": "d-1"}, "seq": stored["seq"]}]


def test_a_view_that_no_longer_compiles_is_reported_and_ingest_goes_on(plant: Api) -> None:
    ws = plant.engine.admin.workspace(plant.ws)
    body = {
        "name": "stale",
        "key": "payload.(",
        "reducer": "last",
        "sources": None,
        "init": None,
        "scope_field": None,
        "required_scope": None,
        "description": "",
    }
    plant.engine.store.create_definition(ws.id, "view", "stale", None, body, 0)  # as if saved by another engine
    plant.engine.registry.forget_definitions(ws)
    send(plant, {"device_id": "d-1", "value": 1})
    assert read(plant, "latest", key="d-1").json()["data"] != []
    status = plant.admin("GET", "/views/stale").json()["status"]
    assert status["broken"].startswith("key: ")
    assert read(plant, "stale", key="d-1").json()["error"]["code"] == "view_broken"


def test_strangers_cannot_tell_which_views_exist(plant: Api) -> None:
    other = plant.engine.admin.create_workspace("other")
    token, _ = plant.engine.admin.create_token(other.slug, preset="full-access")
    stranger = {"Authorization": f"Bearer {token}"}
    for view in ("latest", "nope"):
        answer = plant.client.get(f"/views/{plant.ws}/{view}/data", params={"key": "x"}, headers=stranger)
        assert answer.status_code == 401, view


def test_a_key_that_is_not_valid_unicode_skips_the_event_and_never_fails_the_append(plant: Api) -> None:
    body = '{"device_id": "d-1", "value": 1}\n{"device_id": "\\ud800", "value": 2}'
    response = plant.post("readings", body, "application/x-ndjson")
    assert response.status_code == 202, response.text
    assert read(plant, "latest", key="d-1").json()["data"][0]["value"]["value"] == 1
    assert plant.admin("GET", "/views/latest").json()["status"]["skipped"] >= 1


def test_integer_keys_past_2_53_are_the_same_live_and_after_a_rebuild(plant: Api) -> None:
    assert create(plant, name="by-number", key="payload.n", reducer="count").status_code == 201
    send(plant, {"n": 18446744073709551617}, {"n": 9007199254740993})
    live = rows(plant, "by-number")
    assert live == {"18446744073709552000": 1, "9007199254740992": 1}  # as JSONata reads the numbers
    assert plant.client.post(f"/views/{plant.ws}/by-number/rebuild", headers=plant.auth).status_code == 202
    assert wait_rebuilt(plant, "by-number")["state"] == "done"
    assert rows(plant, "by-number") == live
