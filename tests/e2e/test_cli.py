"""The `iotman` CLI as a user runs it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.e2e.server_process import IOTMAN

pytestmark = pytest.mark.e2e


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([IOTMAN, *args], capture_output=True, text=True, timeout=60, check=False)


def test_workspace_and_token_commands(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    created = run("workspace", "create", "demo", "--data", data)
    assert created.returncode == 0, created.stderr
    body = json.loads(created.stdout)
    assert body["slug"] == "demo"
    assert len(body["uuid"]) == 36
    token = run("token", "create", "--workspace", "demo", "--preset", "full-access", "--data", data)
    assert token.returncode == 0
    assert token.stdout.strip().startswith("iotman_pat_")
    assert len(token.stdout.strip().splitlines()) == 1
    listed = json.loads(run("workspace", "list", "--data", data).stdout)
    assert [w["slug"] for w in listed["data"]] == ["demo"]


def test_cli_errors_are_clear(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    run("workspace", "create", "demo", "--data", data)
    duplicate = run("workspace", "create", "demo", "--data", data)
    assert duplicate.returncode == 2
    assert json.loads(duplicate.stderr)["error"]["code"] == "already_exists"
    bad_slug = run("workspace", "create", "Not OK", "--data", data)
    assert json.loads(bad_slug.stderr)["error"]["field"] == "slug"
    preset = run("token", "create", "--workspace", "demo", "--preset", "root", "--data", data)
    assert preset.returncode == 2
    assert "presets are" in json.loads(preset.stderr)["error"]["message"]
    missing = run("token", "create", "--workspace", "ghost", "--preset", "full-access", "--data", data)
    assert json.loads(missing.stderr)["error"]["code"] == "workspace_not_found"
    store = run("serve", "--store", "postgresql://localhost/x", "--data", data)
    assert store.returncode == 2
    assert json.loads(store.stderr)["error"]["code"] == "store_unsupported"


def test_server_admin_token(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    run("workspace", "create", "demo", "--data", data)
    token = run("token", "create", "--server-admin", "--data", data)
    assert token.returncode == 0, token.stderr
    assert token.stdout.strip().startswith("iotman_pat_")
    mixed = run("token", "create", "--server-admin", "--workspace", "demo", "--data", data)
    assert mixed.returncode == 2
    neither = run("token", "create", "--data", data)
    assert json.loads(neither.stderr)["error"]["field"] == "workspace"
