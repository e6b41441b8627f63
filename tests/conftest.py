"""Shared fixtures: an in-process app (real SQLite store in a temp dir) and API helpers."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from iotman.app import build_engine
from iotman.core.clock import FixedClock
from iotman.engine.engine import Engine
from iotman.settings import Settings, load_settings
from iotman.web.application import create_app

START_US = 1_795_428_000_000_000  # 2026-11-23T10:00:00Z


@dataclass
class Api:
    """A client bound to one workspace with a full-access token."""

    client: TestClient
    engine: Engine
    ws: str
    token: str
    clock: FixedClock

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def admin(self, method: str, path: str, json: Any = None, token: str | None = None) -> Any:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        return self.client.request(method, f"/api/v1/workspaces/{self.ws}{path}", json=json, headers=headers)

    def create(self, collection: str, **fields: Any) -> dict[str, Any]:
        """Create a definition (``POST /{collection}``), asserting it was."""
        response = self.admin("POST", f"/{collection}", json=fields)
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    def source(self, **fields: Any) -> dict[str, Any]:
        response = self.admin("POST", "/sources", json=fields)
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    def post(self, path: str, content: bytes | str, content_type: str = "application/json", **kw: Any) -> Any:
        headers = {"Content-Type": content_type, **kw.pop("headers", {})}
        return self.client.post(f"/data/{self.ws}/{path}", content=content, headers=headers, **kw)

    def token_for(self, *scopes: str, preset: str | None = None) -> str:
        token, _ = self.engine.admin.create_token(self.ws, preset=preset, scopes=list(scopes), name="test")
        return token


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(environ={}, data=str(tmp_path / "data"))


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(START_US)


@pytest.fixture
def api(settings: Settings, clock: FixedClock) -> Iterator[Api]:
    engine = build_engine(settings, clock=clock)
    with TestClient(create_app(engine), client=("203.0.113.7", 5000)) as client:
        engine.admin.create_workspace("acme")
        token, _ = engine.admin.create_token("acme", preset="full-access")
        yield Api(client, engine, "acme", token, clock)


def wait_for(predicate: Callable[[], object], timeout_s: float = 10.0, what: str = "the condition") -> None:
    """Poll ``predicate`` until it is truthy (background work: senders, triggers, cron)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
