"""Runs every command of docs/getting-started.md against a real server, as written."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.server_process import ROOT, free_port

pytestmark = pytest.mark.e2e

DOC = ROOT / "docs" / "getting-started.md"


def blocks(text: str) -> list[tuple[str, str]]:
    return [(m.group(1).strip(), m.group(2)) for m in re.finditer(r"```([^\n]*)\n(.*?)```", text, re.S)]


def test_getting_started_commands_work(tmp_path: Path) -> None:
    text = DOC.read_text()
    found = blocks(text)
    server_cmd = [body for info, body in found if info == "sh server"]
    steps = [body for info, body in found if info == "sh"]
    expected = [body for info, body in found if info == "json"]
    assert server_cmd == ["make serve\n"]
    assert len(steps) >= 4
    port = free_port()
    env = {**os.environ, "IOTMAN_PORT": str(port), "IOTMAN_DATA": str(tmp_path / "iotman-data")}
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        ["bash", "-c", server_cmd[0]], cwd=ROOT, env=env, stdout=log, stderr=log, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.1)
        script = "set -euo pipefail\n" + "\n".join(steps).replace("127.0.0.1:8080", f"127.0.0.1:{port}")
        result = subprocess.run(
            ["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
        )
        assert result.returncode == 0, result.stderr + result.stdout
        out = result.stdout
        assert '"seq":1' in out
        assert '"first_seq":2,"last_seq":3' in out
        assert expected[0].strip() in out
        assert '"reason":"invalid_json"' in out
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
        log.close()
