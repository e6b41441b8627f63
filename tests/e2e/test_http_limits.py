"""Limits that only a real server (uvicorn + httptools) enforces."""

from __future__ import annotations

import contextlib
import socket

import pytest

from tests.e2e.conftest import Running

pytestmark = pytest.mark.e2e


def test_oversized_request_head_is_refused_with_431(running: Running) -> None:
    with socket.create_connection(("127.0.0.1", running.server.port), timeout=10) as sock:
        head = b"POST /data/demo/readings HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n"
        with contextlib.suppress(OSError):  # the server may close while we are still sending
            sock.sendall(head)
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 431")
    assert b"headers_too_large" in answer


def test_normal_requests_still_work_on_the_same_server(running: Running) -> None:
    import httpx

    headers = {"X-Fine": "b" * 8000}
    assert httpx.post(f"{running.server.url}/data/demo/readings", json={"a": 1}, headers=headers).status_code == 202


def test_large_bodies_are_not_mistaken_for_large_heads(running: Running) -> None:
    import httpx

    body = b"\n".join(b'{"pad": "' + b"x" * 200 + b'"}' for _ in range(2000))
    response = httpx.post(
        f"{running.server.url}/data/demo/readings", content=body, headers={"Content-Type": "application/x-ndjson"}
    )
    assert response.status_code == 202, response.text
    assert response.json()["last_seq"] == 2000


def test_whole_requests_in_one_read_are_not_counted_as_heads(running: Running) -> None:
    """Keep-alive clients sending 150 KB batches concurrently: a socket read may hold a
    whole request (head and body); none of them may be refused as a large head."""
    import http.client
    import threading

    body = b"\n".join(b'{"pad": "' + b"x" * 140 + b'"}' for _ in range(1000))
    statuses: list[int] = []

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", running.server.port, timeout=30)
        for _ in range(15):
            conn.request("POST", "/data/demo/readings", body=body, headers={"Content-Type": "application/x-ndjson"})
            response = conn.getresponse()
            response.read()
            statuses.append(response.status)
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert statuses == [202] * 60
