"""$ftp_upload (SPEC §4.2): SFTP through a workspace connection profile, immediate and not
undone; profiles never give their secrets back. Against a real SFTP server (asyncssh)."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from tests.conftest import Api


class _Logins(asyncssh.SSHServer):
    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        return username == "iot" and password == "pw"


class SftpServer:
    """A loopback SFTP server in its own thread and event loop, rooted in a temporary folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.key = asyncssh.generate_private_key("ssh-ed25519")
        self.host_key = self.key.export_public_key().decode().strip()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: Any = None

    def start(self) -> None:
        self._thread.start()
        root = str(self.root)

        def sftp(channel: Any) -> asyncssh.SFTPServer:
            return asyncssh.SFTPServer(channel, chroot=root)

        async def listen() -> Any:
            return await asyncssh.listen(
                "127.0.0.1", self.port, server_host_keys=[self.key], server_factory=_Logins, sftp_factory=sftp
            )

        self._server = asyncio.run_coroutine_threadsafe(listen(), self._loop).result(timeout=10)

    def stop(self) -> None:
        async def close() -> None:
            self._server.close()
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


@pytest.fixture
def sftp(tmp_path: Path) -> Iterator[SftpServer]:
    root = tmp_path / "sftp-root"
    (root / "exports").mkdir(parents=True)
    server = SftpServer(root)
    server.start()
    yield server
    server.stop()


def profile(server: SftpServer, **extra: Any) -> dict[str, Any]:
    return {
        "name": "archive",
        "host": "127.0.0.1",
        "port": server.port,
        "username": "iot",
        "password": "pw",
        "host_key": server.host_key,
        "base_path": "/exports",
        **extra,
    }


UPLOAD = """(
  $written := $ftp_upload("archive", $input.file, $input.content);
  $input.fail ? $fail(409, "stopped after the upload") : {"written": $written}
)"""


def prepare(api: Api, server: SftpServer) -> None:
    created = api.admin("POST", "/settings/sftp-profiles", json=profile(server))
    assert created.status_code == 201, created.text
    api.admin("POST", "/clients", json={"name": "archiver", "is_worker": True})
    assert (
        api.admin("POST", "/functions", json={"name": "upload", "body": UPLOAD, "worker": "archiver"}).status_code
        == 201
    )


def call(api: Api, body: Any, test: bool = False) -> Any:
    return api.client.post(f"/functions/{api.ws}/upload" + ("/test" if test else ""), json=body, headers=api.auth)


def test_profiles_never_give_secrets_back(api: Api, sftp: SftpServer) -> None:
    prepare(api, sftp)
    read = api.admin("GET", "/settings/sftp-profiles/archive").json()
    assert "password" not in read
    assert "private_key" not in read
    assert (read["password_set"], read["private_key_set"]) == (True, False)
    assert [p["name"] for p in api.admin("GET", "/settings/sftp-profiles").json()["data"]] == ["archive"]
    again = api.admin("POST", "/settings/sftp-profiles", json=profile(sftp))
    assert (again.status_code, again.json()["error"]["code"]) == (409, "already_exists")
    without_secret = {k: v for k, v in profile(sftp).items() if k != "password"}
    kept = api.admin("PUT", "/settings/sftp-profiles/archive", json=without_secret)
    assert kept.json()["password_set"] is True
    unchecked = api.admin("POST", "/settings/sftp-profiles", json=profile(sftp, name="x", host_key=None))
    assert unchecked.status_code == 422
    assert "host_key" in unchecked.json()["error"]["message"]
    assert api.admin("DELETE", "/settings/sftp-profiles/archive").status_code == 204
    assert api.admin("GET", "/settings/sftp-profiles/archive").status_code == 404


def test_an_upload_happens_at_once_and_stays_when_the_function_stops(api: Api, sftp: SftpServer) -> None:
    prepare(api, sftp)
    done = call(api, {"file": "2026/11/report.csv", "content": "a,b\n1,2\n"})  # folders made as needed
    assert done.status_code == 200, done.text
    assert done.json() == {"result": {"written": 8}}
    assert (sftp.root / "exports" / "2026" / "11" / "report.csv").read_text() == "a,b\n1,2\n"
    stopped = call(api, {"file": "kept.json", "content": {"n": 1}, "fail": True})
    assert stopped.status_code == 409
    assert (sftp.root / "exports" / "kept.json").read_bytes() == b'{"n":1}'  # immediate, not undone


def test_a_test_run_uploads_nothing_and_paths_stay_under_the_base(api: Api, sftp: SftpServer) -> None:
    prepare(api, sftp)
    report = call(api, {"file": "t.txt", "content": "hello"}, test=True).json()
    assert report["ok"] is True
    assert report["calls"] == [
        {"function": "ftp_upload", "profile": "archive", "path": "t.txt", "bytes": 5, "performed": False}
    ]
    assert not (sftp.root / "exports" / "t.txt").exists()
    escape = call(api, {"file": "../../etc/passwd", "content": "x"})
    assert (escape.status_code, escape.json()["error"]["code"]) == (500, "invalid_upload")


def test_a_wrong_host_key_refuses_the_connection(api: Api, sftp: SftpServer) -> None:
    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
    api.admin("POST", "/settings/sftp-profiles", json=profile(sftp, host_key=other))
    api.admin("POST", "/clients", json={"name": "archiver", "is_worker": True})
    api.admin("POST", "/functions", json={"name": "upload", "body": UPLOAD, "worker": "archiver"})
    refused = call(api, {"file": "x.txt", "content": "x"})
    assert (refused.status_code, refused.json()["error"]["code"]) == (500, "upload_failed")
    assert not (sftp.root / "exports" / "x.txt").exists()
