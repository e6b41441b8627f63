"""Schemathesis fuzzes every operation of /openapi.json against a real server: never a 5xx."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.e2e.server_process import ServerProcess, cli

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, str]]:
    data: Path = tmp_path_factory.mktemp("fuzz") / "data"
    cli(data, "workspace", "create", "demo")
    token = cli(data, "token", "create", "--workspace", "demo", "--preset", "full-access")
    server = ServerProcess(data).start()
    auth = {"Authorization": f"Bearer {token}"}
    for body in ({"name": "readings", "read_access": True}, {"name": "strict", "schema": {"required": ["v"]}}):
        httpx.post(f"{server.url}/api/v1/workspaces/demo/sources", json=body, headers=auth).raise_for_status()
    try:
        yield server, token
    finally:
        server.terminate()


def test_no_server_errors(fuzz_server: tuple[ServerProcess, str]) -> None:
    # the schemathesis pytest plugin does not support pytest 9 yet, so hypothesis drives its strategies
    server, token = fuzz_server
    api_schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    headers = {"Authorization": f"Bearer {token}"}
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 11

    for operation in operations:

        @settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def check(case: schemathesis.Case) -> None:
            if case.operation.path.startswith("/data") and case.path_parameters:
                case.path_parameters["ws"] = "demo"
            response = case.call(base_url=server.url, headers=headers, timeout=30)
            where = f"{case.method} {case.formatted_path}"
            assert response.status_code < 500, f"{where}: {response.status_code} {response.text}"
            if response.status_code >= 400:
                assert "code" in response.json()["error"], where

        check()
