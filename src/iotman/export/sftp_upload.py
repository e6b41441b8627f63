"""Writing a file through an SFTP connection profile (asyncssh), synchronously for ``$ftp_upload``."""

from __future__ import annotations

import asyncio
import posixpath

import asyncssh

from iotman.core.sftp import SftpProfile, remote_target

__all__ = ["upload"]


def upload(profile: SftpProfile, remote_path: str, data: bytes) -> int:
    """Write ``data`` to ``remote_path`` (under the profile's ``base_path``); the bytes written.

    Runs its own event loop: it is called from the store's writer thread, which has none."""
    target = remote_target(profile.base_path, remote_path)
    return asyncio.run(asyncio.wait_for(_upload(profile, target, data), timeout=profile.timeout_s))


async def _upload(profile: SftpProfile, target: str, data: bytes) -> int:
    known_hosts: object = None
    if profile.host_key is not None:
        key = asyncssh.import_public_key(profile.host_key)
        known_hosts = ([key], [], [])
    async with (
        asyncssh.connect(
            profile.host,
            port=profile.port,
            username=profile.username,
            password=profile.password,
            client_keys=[asyncssh.import_private_key(profile.private_key)] if profile.private_key else (),
            known_hosts=known_hosts,
            connect_timeout=profile.timeout_s,
            agent_path=None,
        ) as connection,
        connection.start_sftp_client() as sftp,
    ):
        folder = posixpath.dirname(target)
        if folder and folder not in (".", "/"):
            await sftp.makedirs(folder, exist_ok=True)  # missing folders are made, as `mkdir -p`
        async with sftp.open(target, "wb") as remote:
            await remote.write(data)
    return len(data)
