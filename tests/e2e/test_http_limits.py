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
