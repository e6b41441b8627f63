"""?agg= on export endpoints (SPEC §3.3), computed by the store."""

from __future__ import annotations

import json

import pytest

from tests.conftest import Api


@pytest.fixture
def metered(api: Api) -> Api:
    api.source(name="readings")
    for body in (
        {"name": "device_id", "method": "value", "path": "$.device_id"},
        {"name": "kind", "method": "constant", "value": "reading"},
    ):
        assert api.admin("POST", "/tag-rules", json=body).status_code == 201
    output = {
        "name": "series",
        "select": {"tags": {"kind": "reading"}},
        "constructor": "{v: $.value, ts: $received_at}",
    }
    assert api.admin("POST", "/outputs", json=output).status_code == 201
    endpoint = {"name": "series", "output": "series", "auth": "none"}
    assert api.admin("POST", "/export-endpoints", json=endpoint).status_code == 201
    # two hours of readings: d-1 values 1..4, d-2 values 10, 20; one non-numeric value
    events = [
        ("d-1", 1, 0),
        ("d-1", 2, 600),
        ("d-2", 10, 1200),
        ("d-1", 3, 3600),
        ("d-1", 4, 4200),
        ("d-2", 20, 4800),
        ("d-2", "n/a", 5000),
    ]
    at = 0
    for device, value, second in events:
        api.clock.advance(second - at)
        at = second
        assert api.post("readings", json.dumps({"device_id": device, "value": value})).status_code == 202
    return api


def agg(api: Api, query: str) -> list[dict]:
    response = api.client.get(f"/data/acme/series?{query}")
    assert response.status_code == 200, response.text
    return response.json()["data"]


def test_count_sum_avg_min_max(metered: Api) -> None:
    assert agg(metered, "agg=count") == [{"value": 7, "count": 7}]
    assert agg(metered, "agg=sum(v)") == [{"value": 40, "count": 6}]
    assert agg(metered, "agg=avg(v)")[0]["value"] == pytest.approx(40 / 6)
    assert agg(metered, "agg=min(v)")[0]["value"] == 1
    assert agg(metered, "agg=max(v)")[0]["value"] == 20


def test_bucket_and_group_by(metered: Api) -> None:
    rows = agg(metered, "agg=avg(v)&bucket=1h&group_by=device_id")
    assert rows == [
        {"bucket": "2026-11-23T10:00:00.000000Z", "group": "d-1", "value": 1.5, "count": 2},
        {"bucket": "2026-11-23T10:00:00.000000Z", "group": "d-2", "value": 10.0, "count": 1},
        {"bucket": "2026-11-23T11:00:00.000000Z", "group": "d-1", "value": 3.5, "count": 2},
        {"bucket": "2026-11-23T11:00:00.000000Z", "group": "d-2", "value": 20.0, "count": 1},
    ]


def test_percentiles_nearest_rank(metered: Api) -> None:
    assert [r["value"] for r in agg(metered, "agg=p50(v)&group_by=device_id")] == [2, 10]
    assert [r["value"] for r in agg(metered, "agg=p95(v)&group_by=device_id")] == [4, 20]
    assert agg(metered, "agg=p99(v)")[0]["value"] == 20


def test_time_range(metered: Api) -> None:
    start = 1_795_428_000
    rows = agg(metered, f"agg=count&from={start + 3600}&to={start + 4500}")
    assert rows == [{"value": 2, "count": 2}]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("agg=median(v)", "agg"),
        ("agg=avg", "agg"),
        ("agg=count(v)", "agg"),
        ("agg=avg(nope)", "agg"),
        ("agg=avg(ts)", "agg"),
        ("agg=avg(v)&bucket=2h", "bucket"),
        ("agg=avg(v)&group_by=bad key", "group_by"),
        ("agg=avg(v)&limit=5", "limit"),
        ("agg=avg(v)&from=inf", "from"),
    ],
)
def test_bad_aggregations(metered: Api, query: str, field: str) -> None:
    response = metered.client.get(f"/data/acme/series?{query}")
    assert response.status_code == 400, response.text
    assert response.json()["error"]["field"] == field


def test_passthrough_aggregates_payload_keys(api: Api) -> None:
    api.source(name="raw", read_access=True, read_auth="none")
    for value in (1, 2, 6):
        api.post("raw", json.dumps({"x": value}))
    assert api.client.get("/data/acme/raw?agg=avg(x)").json()["data"] == [{"value": 3.0, "count": 3}]


def test_field_names_that_cannot_be_paths(api: Api) -> None:
    api.source(name="raw", read_access=True, read_auth="none")
    api.post("raw", json.dumps({"x": 1}))
    response = api.client.get('/data/acme/raw?agg=avg(a"b)')
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_agg"
