"""Live streams of export endpoints (SPEC §5.1) against a real `iotman serve`: SSE and WebSocket,
resuming from the log, auth, slow consumers, events appended by functions."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from tests.e2e.server_process import ServerProcess, cli
from tests.e2e.sse_client import SseReader, parse_frames

STREAM_ENV = {
    "IOTMAN_STREAM_PING_SECONDS": "1",
    "IOTMAN_STREAM_BUFFER_EVENTS": "2000",
    "IOTMAN_STREAM_RECHECK_SECONDS": "1",
}


class Plant:
    def __init__(self, server: ServerProcess, token: str) -> None:
        self.server = server
        self.token = token
        self.http = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)

    def admin(self, method: str, path: str, body: Any = None) -> httpx.Response:
        return self.http.request(method, f"/api/v1/workspaces/demo{path}", json=body)

    def post(self, values: list[Any], source: str = "readings") -> list[int]:
        body = "\n".join(json.dumps(v) for v in values)
        response = self.http.post(
            f"/data/demo/{source}", content=body, headers={"Content-Type": "application/x-ndjson"}
        )
        assert response.status_code == 202, response.text
        answer = response.json()
        return list(range(answer["first_seq"], answer["last_seq"] + 1))

    def sse(self, path: str = "tiles", **headers: str) -> SseReader:
        return SseReader(
            f"{self.server.url}/data/demo/{path}/events", {"Authorization": f"Bearer {self.token}", **headers}
        )


def dechunk(body: bytes) -> bytes:
    """The payload of an HTTP/1.1 chunked body (complete chunks only)."""
    out = b""
    while body:
        size_line, sep, rest = body.partition(b"\r\n")
        if not sep:
            break
        size = int(size_line.split(b";")[0], 16)
        if size == 0 or len(rest) < size:
            break
        out += rest[:size]
        body = rest[size + 2 :]
    return out


@pytest.fixture
def plant(tmp_path: Path) -> Iterator[Plant]:
    data = tmp_path / "data"
    cli(data, "workspace", "create", "demo")
    token = cli(data, "token", "create", "--workspace", "demo", "--preset", "full-access")
    server = ServerProcess(data, env=STREAM_ENV).start()
    plant = Plant(server, token)
    for path, body in [
        ("/sources", {"name": "readings"}),
        ("/sources", {"name": "other"}),
        ("/tag-rules", {"name": "device_id", "path": "$.device_id", "method": "value"}),
        (
            "/outputs",
            {"name": "tiles", "select": {"tags": {"device_id": "*"}}, "constructor": "{v: $.value, d: $.device_id}"},
        ),
        ("/export-endpoints", {"name": "tiles", "output": "tiles", "path": "tiles"}),
    ]:
        response = plant.admin("POST", path, body)
        assert response.status_code == 201, response.text
    try:
        yield plant
    finally:
        plant.http.close()
        server.terminate()


def test_sse_streams_each_match_with_its_seq_as_id(plant: Plant) -> None:
    reader = plant.sse().start()
    assert reader.status == 200
    seqs = plant.post([{"device_id": "d1", "value": i} for i in range(3)])
    plant.post([{"no_device": True}])  # no device_id tag: not a match
    seqs += plant.post([{"device_id": "d2", "value": 9}])
    reader.wait(4)
    assert reader.messages() == [
        (seqs[0], {"v": 0, "d": "d1"}),
        (seqs[1], {"v": 1, "d": "d1"}),
        (seqs[2], {"v": 2, "d": "d1"}),
        (seqs[3], {"v": 9, "d": "d2"}),
    ]
    reader.close()


def test_last_event_id_resumes_from_the_log_without_gaps_or_repeats(plant: Plant) -> None:
    first = plant.post([{"device_id": "d1", "value": i} for i in range(5)])
    reader = plant.sse(**{"Last-Event-ID": "0"}).start()
    reader.wait(5)
    reader.close()
    seen = reader.messages()
    assert [s for s, _ in seen] == first
    # missed while disconnected: more than one page of the log, some not matching
    missed = plant.post([{"device_id": "d3", "value": i} if i % 3 else {"x": i} for i in range(2500)])
    matching = [s for i, s in enumerate(missed) if i % 3]
    again = plant.sse(**{"Last-Event-ID": str(seen[-1][0])}).start()
    live = plant.post([{"device_id": "d4", "value": -1}])
    again.wait(len(matching) + 1)
    time.sleep(0.3)
    assert [s for s, _ in again.messages()] == matching + live
    again.close()


def test_a_source_with_read_access_streams_its_payloads(plant: Plant) -> None:
    assert plant.admin("PUT", "/sources/other", {"name": "other", "read_access": True}).status_code == 200
    reader = plant.sse("other", **{"Last-Event-ID": "0"}).start()
    seqs = plant.post([{"a": 1}, {"b": [1, 2]}], source="other")
    reader.wait(2)
    assert reader.messages() == [(seqs[0], {"a": 1}), (seqs[1], {"b": [1, 2]})]
    reader.close()


def test_streams_take_the_endpoints_auth(plant: Plant) -> None:
    url = f"{plant.server.url}/data/demo/tiles/events"
    refused = httpx.get(url, timeout=10)
    assert refused.status_code == 401
    assert refused.json()["error"]["code"]
    narrow = cli(plant.server.data, "token", "create", "--workspace", "demo", "--scope", "iotman:views:read")
    assert httpx.get(url, headers={"Authorization": f"Bearer {narrow}"}, timeout=10).status_code == 403
    bad = httpx.get(url, headers={"Authorization": f"Bearer {plant.token}", "Last-Event-ID": "x1"}, timeout=10)
    assert bad.status_code == 400
    assert "Last-Event-ID" in bad.json()["error"]["message"]
    # browsers' EventSource cannot set headers: the token may come in the query
    reader = SseReader(f"{url}?access_token={plant.token}&last_event_id=0").start()
    assert reader.status == 200
    plant.post([{"device_id": "q", "value": 1}])
    reader.wait(1)
    reader.close()
    assert httpx.get(f"{plant.server.url}/data/demo/nothing/events", timeout=10).status_code == 404


def test_a_slow_consumer_is_dropped_with_a_notice_and_never_holds_up_others(plant: Plant) -> None:
    assert plant.admin("PUT", "/sources/other", {"name": "other", "read_access": True}).status_code == 200
    fast = plant.sse("other").start()
    slow = socket.create_connection(("127.0.0.1", plant.server.port))
    slow.sendall(
        f"GET /data/demo/other/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {plant.token}\r\n\r\n".encode()
    )
    time.sleep(0.3)
    padding = "x" * 2000
    sent: list[int] = []
    started = time.monotonic()
    for _ in range(20):  # ~20 MB of matches while the slow client reads nothing
        sent += plant.post([{"value": i, "pad": padding} for i in range(500)], source="other")
    ingest_s = time.monotonic() - started
    fast.wait(len(sent), timeout_s=60)
    assert [s for s, _ in fast.messages()] == sent, "the fast client missed or repeated matches"
    assert ingest_s < 30, "ingest waited for the slow client"
    # now the slow client reads: what it got is a gap-free prefix, then the notice, then the end
    slow.settimeout(20)
    received = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        data = slow.recv(1 << 20)
        received += data
        if not data or b"event: dropped" in received[-(len(data) + 4096) :]:
            break
    slow.close()
    frames = parse_frames(dechunk(received.split(b"\r\n\r\n", 1)[1]).decode())
    assert frames[-1].event == "dropped", frames[-1]
    notice = json.loads(frames[-1].data)
    assert notice["reason"] == "slow_consumer"
    got = [int(f.id or 0) for f in frames if f.event == "message"]
    assert got == sent[: len(got)]
    assert notice["last_event_id"] == (got[-1] if got else 0)
    assert len(got) < len(sent)
    # reconnecting from the notice's id resumes from the log
    resumed = plant.sse("other", **{"Last-Event-ID": str(notice["last_event_id"])}).start()
    resumed.wait(len(sent) - len(got), timeout_s=60)
    assert [s for s, _ in resumed.messages()] == sent[len(got) :]
    resumed.close()
    fast.close()


def test_websocket_stream_resumes_and_follows(plant: Plant) -> None:
    seqs = plant.post([{"device_id": "w", "value": i} for i in range(3)])

    async def run() -> list[Any]:
        url = f"ws://127.0.0.1:{plant.server.port}/data/demo/tiles/stream?after_seq={seqs[0]}"
        got: list[Any] = []
        async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {plant.token}"}) as ws:
            got += [json.loads(await ws.recv()) for _ in range(2)]
            await asyncio.to_thread(plant.post, [{"device_id": "w", "value": 7}])
            got.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
        return got

    got = asyncio.run(run())
    assert [m["seq"] for m in got] == [seqs[1], seqs[2], seqs[2] + 1]
    assert got[-1]["data"] == {"v": 7, "d": "w"}

    async def refused() -> int:
        try:
            async with websockets.connect(f"ws://127.0.0.1:{plant.server.port}/data/demo/tiles/stream"):
                return 0
        except websockets.InvalidStatus as exc:
            return exc.response.status_code

    assert asyncio.run(refused()) == 401


def test_deleting_the_endpoint_ends_its_streams_with_a_notice(plant: Plant) -> None:
    reader = plant.sse().start()
    plant.post([{"device_id": "d", "value": 1}])
    reader.wait(1)
    assert plant.admin("DELETE", "/export-endpoints/tiles").status_code == 204
    plant.post([{"device_id": "d", "value": 2}])
    reader.wait(2)
    assert reader.events[-1].event == "dropped"
    assert json.loads(reader.events[-1].data)["reason"] == "endpoint_gone"


def test_events_appended_by_a_function_reach_the_stream_at_once(plant: Plant) -> None:
    assert (
        plant.admin("POST", "/clients", {"name": "bot", "scopes": ["iotman:data:write"], "is_worker": True}).status_code
        == 201
    )
    fn = {
        "name": "emit",
        "body": '$iotman_call("POST", "/data/demo/readings", {"device_id": "f", "value": $input})',
        "worker": "bot",
    }
    assert plant.admin("POST", "/functions", fn).status_code == 201
    reader = plant.sse().start()
    started = time.monotonic()
    response = plant.http.post("/functions/demo/emit", json=42)
    assert response.status_code == 200, response.text
    reader.wait(1)
    # the function's commit wakes the stream (not the once-a-second poll)
    assert time.monotonic() - started < 0.9
    assert reader.messages()[0][1] == {"v": 42, "d": "f"}
    reader.close()


def test_a_stream_ends_when_its_token_may_no_longer_read(plant: Plant) -> None:
    reader = plant.sse().start()
    plant.post([{"device_id": "d", "value": 1}])
    reader.wait(1)
    endpoint = {"name": "tiles", "output": "tiles", "path": "tiles", "required_scope": "app:tiles"}
    assert plant.admin("PUT", "/export-endpoints/tiles", endpoint).status_code == 200
    reader.wait(2, timeout_s=10)
    assert reader.events[-1].event == "dropped"
    assert json.loads(reader.events[-1].data)["reason"] == "unauthorized"


def test_a_client_that_saw_no_match_yet_resumes_from_where_it_started(plant: Plant) -> None:
    before = plant.post([{"device_id": "d", "value": 0}])
    url = f"{plant.server.url}/data/demo/tiles/events"
    with httpx.stream("GET", url, headers={"Authorization": f"Bearer {plant.token}"}, timeout=10) as response:
        first = next(response.iter_text())
    # the id-only frame sets EventSource's lastEventId: a reconnect resumes from here
    assert f"id: {before[-1]}" in first
    missed = plant.post([{"device_id": "d", "value": 1}])
    again = plant.sse(**{"Last-Event-ID": str(before[-1])}).start()
    again.wait(1)
    assert [s for s, _ in again.messages()] == missed
    again.close()


def test_websocket_from_a_foreign_origin_is_refused_unless_allowed(plant: Plant) -> None:
    async def status(origin: str) -> int:
        url = f"ws://127.0.0.1:{plant.server.port}/data/demo/tiles/stream"
        headers = {"Authorization": f"Bearer {plant.token}"}
        try:
            async with websockets.connect(url, additional_headers=headers, origin=origin):  # type: ignore[arg-type]
                return 101
        except websockets.InvalidStatus as exc:
            return exc.response.status_code

    assert asyncio.run(status("https://evil.example")) == 403
    assert asyncio.run(status(f"http://127.0.0.1:{plant.server.port}")) == 101  # same origin
    endpoint = {"name": "tiles", "output": "tiles", "path": "tiles", "cors_origins": ["https://app.example"]}
    assert plant.admin("PUT", "/export-endpoints/tiles", endpoint).status_code == 200
    assert asyncio.run(status("https://app.example")) == 101
