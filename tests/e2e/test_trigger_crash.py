"""Triggers across a crash (SPEC §4.3): SIGKILL the server while commands stream in and fire;
after a restart every matched, acknowledged event has fired (at least once: replies carry
the event id, so a duplicate is visible), and non-matching events never fired."""

from __future__ import annotations

import http.client
import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.server_process import ServerProcess, cli

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

FUNCTION = """(
  $iotman_call("POST", "/data/demo/results", {"for": $input.id, "n": $input.payload.n});
  {"n": $input.payload.n}
)"""


def setup(server: ServerProcess, token: str) -> None:
    auth = {"Authorization": f"Bearer {token}"}
    base = f"{server.url}/api/v1/workspaces/demo"
    for name in ("commands", "results", "replies"):
        httpx.post(f"{base}/sources", json={"name": name, "read_access": True}, headers=auth).raise_for_status()
    worker = {"name": "w", "scopes": ["iotman:data:*"], "is_worker": True}
    httpx.post(f"{base}/clients", json=worker, headers=auth).raise_for_status()
    httpx.post(
        f"{base}/functions", json={"name": "run", "body": FUNCTION, "worker": "w"}, headers=auth
    ).raise_for_status()
    trigger = {
        "name": "t",
        "source": "commands",
        "condition": "payload.n % 3 != 0",
        "function": "run",
        "reply_to": "replies",
    }
    httpx.post(f"{base}/triggers", json=trigger, headers=auth).raise_for_status()


def produce(port: int, acked: dict[int, str], stop: threading.Event) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    n = len(acked)
    try:
        while not stop.is_set():
            batch = [{"n": n + k} for k in range(5)]
            body = "\n".join(json.dumps(e) for e in batch).encode()
            conn.request("POST", "/data/demo/commands", body=body, headers={"Content-Type": "application/x-ndjson"})
            response = conn.getresponse()
            answer = json.loads(response.read())
            if response.status != 202:
                raise AssertionError(f"unexpected {response.status}: {answer}")
            for event, event_id in zip(batch, answer["ids"], strict=True):
                acked[event["n"]] = event_id
            n += 5
    except (OSError, http.client.HTTPException):
        return  # the server was killed
    finally:
        conn.close()


def read(server: ServerProcess, token: str, source: str) -> list[Any]:
    response = httpx.get(
        f"{server.url}/data/demo/{source}?order=asc&limit=100000",
        headers={"Accept": "application/x-ndjson", "Authorization": f"Bearer {token}"},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    return [json.loads(line) for line in response.text.splitlines()]


def test_every_matched_event_fires_after_a_sigkill(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cli(data, "workspace", "create", "demo")
    token = cli(data, "token", "create", "--workspace", "demo", "--preset", "full-access")
    server = ServerProcess(data).start()
    try:
        setup(server, token)
        acked: dict[int, str] = {}
        stop = threading.Event()
        producer = threading.Thread(target=produce, args=(server.port, acked, stop))
        producer.start()
        time.sleep(2.0)
        server.kill()  # mid-stream: firings and appends in flight
        stop.set()
        producer.join(30)
        assert len(acked) > 50, "the producer barely ran"
        server = ServerProcess(data, server.port).start()
        matched = {event_id for n, event_id in acked.items() if n % 3 != 0}
        deadline = time.monotonic() + 60
        replies: list[Any] = []
        while time.monotonic() < deadline:
            replies = read(server, token, "replies")
            if matched <= {r["event_id"] for r in replies}:
                break
            time.sleep(0.5)
        fired = {r["event_id"] for r in replies}
        missing = matched - fired
        assert not missing, f"{len(missing)} matched events never fired, e.g. {sorted(missing)[:3]}"
        unmatched = {event_id for n, event_id in acked.items() if n % 3 == 0}
        assert not (fired & unmatched), "an event that did not match fired"
        assert all(r["ok"] for r in replies)
        results = {r["for"] for r in read(server, token, "results")}
        assert matched <= results  # each firing's own append committed with its reply
    finally:
        server.terminate()
