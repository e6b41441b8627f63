"""``iotman view rebuild`` against a real ``iotman serve``: progress bar, swap, errors."""

from __future__ import annotations

import os
import subprocess

import httpx
import pytest

from tests.e2e.conftest import Running
from tests.e2e.server_process import IOTMAN

pytestmark = pytest.mark.e2e


def test_view_rebuild_command_follows_the_rebuild_to_the_end(running: Running) -> None:
    url = running.server.url
    body = "\n".join(f'{{"device_id": "d-{i % 4}", "value": {i}}}' for i in range(5000))
    headers = {**running.auth, "Content-Type": "application/x-ndjson"}
    assert httpx.post(f"{url}/data/demo/readings", content=body, headers=headers).status_code == 202
    view = {"name": "total", "key": "payload.device_id", "reducer": "prev + event.payload.value", "init": "0"}
    assert httpx.post(f"{url}/api/v1/workspaces/demo/views", json=view, headers=running.auth).status_code == 201
    # the view starts empty: it folds new events only, until rebuilt
    assert httpx.get(f"{url}/views/demo/total/data", headers=running.auth).json()["data"] == []
    done = subprocess.run(
        [IOTMAN, "view", "rebuild", "demo", "total", "--url", url, "--token", running.token],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "rebuilding total" in done.stdout
    assert '"state":"done"' in done.stdout
    rows = httpx.get(f"{url}/views/demo/total/data", headers=running.auth).json()["data"]
    assert {r["key"]: r["value"] for r in rows} == {f"d-{k}": sum(range(k, 5000, 4)) for k in range(4)}


def test_view_rebuild_command_errors_are_clear(running: Running) -> None:
    def rebuild(*args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "IOTMAN_TOKEN"}
        return subprocess.run([IOTMAN, "view", "rebuild", *args], capture_output=True, text=True, check=False, env=env)

    missing = rebuild("demo", "nope", "--url", running.server.url, "--token", running.token)
    assert missing.returncode == 2
    assert "view_not_found" in missing.stderr
    no_token = rebuild("demo", "nope", "--url", running.server.url)
    assert no_token.returncode == 2
    assert "--token" in no_token.stderr
    unreachable = rebuild("demo", "x", "--url", "http://127.0.0.1:9", "--token", "t")
    assert unreachable.returncode == 3
    assert "cannot reach" in unreachable.stderr
