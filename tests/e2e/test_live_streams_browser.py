"""SSE in a real browser: Debian's headless Chromium opens an ``EventSource`` on an export
endpoint, receives live matches, and after a server restart reconnects by itself with
``Last-Event-ID`` and gets what it missed from the log."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, sync_playwright

from tests.e2e.server_process import ServerProcess, cli

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

OPEN_STREAM = """([url]) => {
  window.got = [];
  window.opened = 0;
  const source = new EventSource(url);
  source.onopen = () => { window.opened += 1; };
  source.onmessage = (e) => { window.got.push({id: e.lastEventId, data: JSON.parse(e.data)}); };
  window.source = source;
}"""


@pytest.fixture
def page() -> Iterator[Page]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield browser.new_page()
        finally:
            browser.close()


def test_chromium_event_source_follows_and_resumes_across_a_restart(tmp_path: Path, page: Page) -> None:
    data = tmp_path / "data"
    cli(data, "workspace", "create", "demo")
    token = cli(data, "token", "create", "--workspace", "demo", "--preset", "full-access")
    server = ServerProcess(data).start()
    auth = {"Authorization": f"Bearer {token}"}
    try:
        api = f"{server.url}/api/v1/workspaces/demo"
        assert httpx.post(f"{api}/sources", json={"name": "readings"}, headers=auth).status_code == 201
        output = {"name": "tiles", "constructor": "{v: $.value}"}
        assert httpx.post(f"{api}/outputs", json=output, headers=auth).status_code == 201
        endpoint = {"name": "tiles", "output": "tiles", "auth": "oauth2"}
        assert httpx.post(f"{api}/export-endpoints", json=endpoint, headers=auth).status_code == 201

        def post(value: int) -> int:
            response = httpx.post(f"{server.url}/data/demo/readings", json={"value": value}, headers=auth)
            assert response.status_code == 202, response.text
            seq: int = response.json()["seq"]
            return seq

        first = post(1)
        page.goto(f"{server.url}/healthz")  # the stream's origin: no CORS needed
        page.evaluate(OPEN_STREAM, [f"/data/demo/tiles/events?access_token={token}&last_event_id=0"])
        page.wait_for_function("window.got.length >= 1", timeout=10_000)
        second = post(2)
        page.wait_for_function("window.got.length >= 2", timeout=10_000)

        server.terminate()
        server.start()  # same port: the browser reconnects by itself
        missed = [post(3), post(4)]
        page.wait_for_function("window.got.length >= 4 && window.opened >= 2", timeout=20_000)
        got = page.evaluate("window.got")
        assert [(int(m["id"]), m["data"]) for m in got] == [
            (first, {"v": 1}),
            (second, {"v": 2}),
            (missed[0], {"v": 3}),
            (missed[1], {"v": 4}),
        ], json.dumps(got)
        page.evaluate("window.source.close()")
    finally:
        server.terminate()
