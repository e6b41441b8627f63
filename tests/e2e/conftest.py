from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.e2e.server_process import ServerProcess, cli


@dataclass
class Running:
    server: ServerProcess
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    data = tmp_path / "data"
    cli(data, "workspace", "create", "demo")
    token = cli(data, "token", "create", "--workspace", "demo", "--preset", "full-access")
    server = ServerProcess(data).start()
    response = httpx.post(
        f"{server.url}/api/v1/workspaces/demo/sources",
        json={"name": "readings", "read_access": True},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 201, response.text
    try:
        yield Running(server, token)
    finally:
        server.terminate()
