"""Acknowledged means durable: SIGKILL the server during concurrent ingest, restart, check the log.

A history check (DESIGN.md "Reliability practices"): producers record every
acknowledged event; after each kill and restart every acknowledged event is in the
log exactly once, at the seq it was acknowledged with, and seq has no gaps or
duplicates.
"""

from __future__ import annotations

import http.client
import json
import random
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.server_process import ServerProcess, cli

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PRODUCERS = 8
ROUNDS = 3


class Producer(threading.Thread):
    def __init__(self, port: int, name: str, acked: dict[str, int], lock: threading.Lock) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.tag = name
        self.acked = acked
        self.lock = lock
        self.sent = 0
        self.deadline = time.monotonic() + 30

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        n = 0
        try:
            while time.monotonic() < self.deadline:
                if n % 5 == 4:  # every fifth request is an NDJSON batch of 10
                    markers = [f"{self.tag}-{n}-{k}" for k in range(10)]
                    body = "\n".join(json.dumps({"m": m}) for m in markers).encode()
                    ctype = "application/x-ndjson"
                else:
                    markers = [f"{self.tag}-{n}"]
                    body = json.dumps({"m": markers[0]}).encode()
                    ctype = "application/json"
                n += 1
                conn.request("POST", "/data/demo/readings", body=body, headers={"Content-Type": ctype})
                response = conn.getresponse()
                answer = json.loads(response.read())
                self.sent += 1
                if response.status != 202:
                    raise AssertionError(f"unexpected {response.status}: {answer}")
                first = answer["seq"] if "seq" in answer else answer["first_seq"]
                with self.lock:
                    for offset, marker in enumerate(markers):
                        self.acked[marker] = first + offset
        except (OSError, http.client.HTTPException):
            return  # the server was killed
        finally:
            conn.close()


def read_all(server: ServerProcess, token: str) -> list[str]:
    response = httpx.get(
        f"{server.url}/data/demo/readings?order=asc",
        headers={"Accept": "application/x-ndjson", "Authorization": f"Bearer {token}"},
        timeout=60,
    )
    assert response.status_code == 200
    return [json.loads(line)["m"] for line in response.text.splitlines()]


def test_sigkill_during_concurrent_ingest_loses_nothing_acknowledged(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cli(data, "workspace", "create", "demo")
    token = cli(data, "token", "create", "--workspace", "demo", "--preset", "full-access")
    server = ServerProcess(data).start()
    httpx.post(
        f"{server.url}/api/v1/workspaces/demo/sources",
        json={"name": "readings", "read_access": True},
        headers={"Authorization": f"Bearer {token}"},
    ).raise_for_status()
    acked: dict[str, int] = {}
    lock = threading.Lock()
    rng = random.Random(7)
    try:
        for round_no in range(ROUNDS):
            producers = [Producer(server.port, f"r{round_no}p{i}", acked, lock) for i in range(PRODUCERS)]
            for p in producers:
                p.start()
            time.sleep(1.0 + rng.random())
            server.kill()
            for p in producers:
                p.join(30)
                assert not p.is_alive()
            assert sum(p.sent for p in producers) > 50, "producers barely ran"
            server = ServerProcess(data, server.port).start()
            markers = read_all(server, token)
            # seq i is the i-th event in ascending order when the log has no gaps
            position = {m: i + 1 for i, m in enumerate(markers)}
            assert len(position) == len(markers), "an event is in the log twice"
            missing = [m for m in acked if m not in position]
            assert not missing, f"{len(missing)} acknowledged events lost, e.g. {missing[:3]}"
            wrong = [(m, s, position[m]) for m, s in acked.items() if position[m] != s]
            assert not wrong, f"acknowledged seq differs from log position: {wrong[:3]}"
        assert len(acked) > 500
    finally:
        server.terminate()


def test_sigterm_is_graceful(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cli(data, "workspace", "create", "demo")
    token = cli(data, "token", "create", "--workspace", "demo", "--preset", "full-access")
    server = ServerProcess(data).start()
    auth = {"Authorization": f"Bearer {token}"}
    httpx.post(
        f"{server.url}/api/v1/workspaces/demo/sources", json={"name": "readings", "read_access": True}, headers=auth
    ).raise_for_status()
    for i in range(20):
        httpx.post(f"{server.url}/data/demo/readings", json={"m": str(i)}).raise_for_status()
    assert server.terminate() == 0
    server = ServerProcess(data, server.port).start()
    try:
        assert len(read_all(server, token)) == 20
    finally:
        server.terminate()
