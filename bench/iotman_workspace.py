"""The ``bench`` workspace in iotman: create it, get a token, add the source, check what was stored."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import orjson

from bench.loopback_http import request
from bench.sample_events import SINGLE_EVENT
from bench.servers import REPO_ROOT, ServerError, ServerProcess, bench_environment, iotman_executable

__all__ = ["SOURCE", "WORKSPACE", "StoredCheck", "check_stored", "create_source", "create_workspace_and_token"]

WORKSPACE = "bench"
SOURCE = "readings"


def _cli(*args: str) -> str:
    try:
        finished = subprocess.run(
            [iotman_executable(), *args],
            capture_output=True,
            text=True,
            cwd=REPO_ROOT,
            env=bench_environment(),
            timeout=60,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ServerError(f"`iotman {' '.join(args)}` did not finish within 60 s") from None
    if finished.returncode != 0:
        raise ServerError(
            f"`iotman {' '.join(args)}` exited with code {finished.returncode}:\n{finished.stderr.strip()}"
        )
    return finished.stdout.strip()


def create_workspace_and_token(data_dir: Path) -> str:
    """``iotman workspace create bench`` then ``iotman token create``; returns the token."""
    _cli("workspace", "create", WORKSPACE, "--data", str(data_dir))
    token = _cli("token", "create", "--workspace", WORKSPACE, "--preset", "full-access", "--data", str(data_dir))
    if not token or len(token.split()) != 1:
        raise ServerError(f"`iotman token create` printed {token!r}, expected one token")
    return token


def create_source(server: ServerProcess, token: str) -> None:
    answer = request(
        "POST",
        f"{server.base_url}/api/v1/workspaces/{WORKSPACE}/sources",
        body=orjson.dumps({"name": SOURCE, "read_access": True}),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    if not answer.ok:
        raise ServerError(f"creating source {SOURCE!r} answered HTTP {answer.status}: {answer.body[:500]!r}")


@dataclass(frozen=True, slots=True)
class StoredCheck:
    probe_seq: int
    newest_seq_read: int | None
    expected_at_least: int

    @property
    def ok(self) -> bool:
        return self.probe_seq >= self.expected_at_least and self.newest_seq_read == self.probe_seq


def check_stored(server: ServerProcess, token: str, events_acknowledged: int) -> StoredCheck:
    """POST one probe event and read the newest event back.

    The probe's ``seq`` counts every event stored in the workspace (seq starts at 1 and
    has no gaps), so it must be at least every event acknowledged so far plus the probe.
    ``GET ?limit=1`` (newest first) must then name the probe's seq in its ``next_page``.
    """
    url = f"{server.base_url}/data/{WORKSPACE}/{SOURCE}"
    probe = request("POST", url, body=orjson.dumps(SINGLE_EVENT), headers={"Content-Type": "application/json"})
    if not probe.ok:
        raise ServerError(f"probe POST answered HTTP {probe.status}: {probe.body[:500]!r}")
    seq = int(probe.json()["seq"])
    page = request("GET", url + "?limit=1", headers={"Authorization": f"Bearer {token}"})
    if not page.ok:
        raise ServerError(f"GET {url}?limit=1 answered HTTP {page.status}: {page.body[:500]!r}")
    document = page.json()
    newest: int | None = None
    next_page = document.get("next_page")
    if len(document.get("data", [])) == 1 and next_page:
        before = parse_qs(urlsplit(next_page).query).get("before_seq", [])
        newest = int(before[0]) if before else None
    return StoredCheck(probe_seq=seq, newest_seq_read=newest, expected_at_least=events_acknowledged + 1)
