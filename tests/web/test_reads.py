"""GET /data/{ws}/{path} on a source with read_access: pages, order, time bounds, NDJSON, auth."""

from __future__ import annotations

import json

import pytest

from tests.conftest import START_US, Api


def fill(api: Api, n: int, source: str = "readings", step_s: float = 0.0) -> None:
    for i in range(1, n + 1):
        assert api.post(source, json.dumps({"i": i})).status_code == 202
        api.clock.advance(step_s)


@pytest.fixture
def readable(api: Api) -> Api:
    api.source(name="readings", read_access=True, read_auth="none")
    return api


def items(response) -> list[int]:  # type: ignore[no-untyped-def]
    assert response.status_code == 200, response.text
    return [d["i"] for d in response.json()["data"]]


def test_newest_first_with_limit_and_next_page(readable: Api) -> None:
    fill(readable, 5)
    first = readable.client.get("/data/acme/readings?limit=2")
    assert items(first) == [5, 4]
    next_page = first.json()["next_page"]
    assert "before_seq=4" in next_page
    fill(readable, 3)  # new events do not disturb the walk
    second = readable.client.get(next_page)
    assert items(second) == [3, 2]
    third = readable.client.get(second.json()["next_page"])
    assert items(third) == [1]
    assert third.json()["next_page"] is None


def test_default_limit_is_100(readable: Api) -> None:
    readable.post("readings", "\n".join(json.dumps({"i": i}) for i in range(150)), "application/x-ndjson")
    body = readable.client.get("/data/acme/readings").json()
    assert len(body["data"]) == 100
    assert body["next_page"]


def test_ascending_walk_after_seq(readable: Api) -> None:
    fill(readable, 5)
    page = readable.client.get("/data/acme/readings?order=asc&after_seq=1&limit=2")
    assert items(page) == [2, 3]
    assert "after_seq=3" in page.json()["next_page"]
    assert items(readable.client.get(page.json()["next_page"])) == [4, 5]


def test_time_bounds_unix_and_rfc3339(readable: Api) -> None:
    fill(readable, 6, step_s=60)  # event i received at START + (i-1) minutes
    start_s = START_US // 1_000_000
    unix = readable.client.get(f"/data/acme/readings?from={start_s + 60}&to={start_s + 180}")
    assert items(unix) == [3, 2]
    rfc = readable.client.get("/data/acme/readings?from=2026-11-23T10:02:00Z&to=2026-11-23T11:03:00%2B01:00")
    assert items(rfc) == [3]
    assert items(readable.client.get("/data/acme/readings?from=2030-01-01T00:00:00Z")) == []


def test_only_the_source_events_are_read(readable: Api) -> None:
    readable.source(name="other")
    fill(readable, 2)
    readable.post("other", b'{"i": 99}')
    assert items(readable.client.get("/data/acme/readings")) == [2, 1]


def test_ndjson_stream(readable: Api) -> None:
    readable.post("readings", "\n".join(json.dumps({"i": i}) for i in range(2500)), "application/x-ndjson")
    response = readable.client.get("/data/acme/readings", headers={"Accept": "application/x-ndjson"})
    assert response.headers["content-type"].startswith("application/x-ndjson")
    lines = response.text.splitlines()
    assert len(lines) == 2500
    assert json.loads(lines[0]) == {"i": 2499}
    asc = readable.client.get(
        "/data/acme/readings?order=asc&limit=1500", headers={"Accept": "application/x-ndjson"}
    ).text.splitlines()
    assert len(asc) == 1500
    assert json.loads(asc[-1]) == {"i": 1499}


@pytest.mark.parametrize("chunk", [1, 3, 10, 11])
def test_ndjson_stream_across_chunk_edges(readable: Api, monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    monkeypatch.setattr("iotman.engine.read_service.STREAM_CHUNK", chunk)
    readable.post("readings", "\n".join(json.dumps({"i": i}) for i in range(10)), "application/x-ndjson")

    def stream(query: str) -> list[int]:
        response = readable.client.get(f"/data/acme/readings?{query}", headers={"Accept": "application/x-ndjson"})
        return [json.loads(line)["i"] for line in response.text.splitlines()]

    assert stream("") == list(range(9, -1, -1))
    assert stream("order=asc") == list(range(10))
    assert stream("order=asc&limit=7") == list(range(7))
    assert stream("limit=3") == [9, 8, 7]
    assert stream("order=asc&after_seq=4&limit=4") == [4, 5, 6, 7]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "limit"),
        ("limit=10001", "limit"),
        ("limit=x", "limit"),
        ("from=yesterday", "from"),
        ("order=sideways", "order"),
        ("after_seq=-1", "after_seq"),
        ("colour=red", "colour"),
        ("from=100&to=50", "to"),
    ],
)
def test_bad_read_parameters(readable: Api, query: str, field: str) -> None:
    response = readable.client.get(f"/data/acme/readings?{query}")
    assert response.status_code == 400
    assert response.json()["error"]["field"] == field


def test_read_access_off_is_404(api: Api) -> None:
    api.source(name="private")
    response = api.client.get("/data/acme/private")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "read_access_off"


def test_read_auth_defaults_to_token_with_data_read(api: Api) -> None:
    api.source(name="readings", read_access=True)
    api.post("readings", b'{"i": 1}')
    assert api.client.get("/data/acme/readings").status_code == 401
    writer = api.token_for("iotman:data:write")
    assert api.client.get("/data/acme/readings", headers={"Authorization": f"Bearer {writer}"}).status_code == 403
    reader = api.token_for(preset="read-only")
    response = api.client.get("/data/acme/readings", headers={"Authorization": f"Bearer {reader}"})
    assert items(response) == [1]


def test_read_auth_oauth2_or_none(api: Api) -> None:
    api.source(name="readings", read_access=True, read_auth="oauth2+none")
    assert api.client.get("/data/acme/readings").status_code == 200
    assert api.client.get("/data/acme/readings", headers={"Authorization": "Bearer bad"}).status_code == 401
