"""SFTP connection profiles (``settings/sftp-profiles``): where ``$ftp_upload`` writes."""

from __future__ import annotations

import posixpath
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from iotman.core.definition_fields import UrlName

__all__ = ["SftpProfile", "remote_target"]


class SftpProfile(BaseModel):
    """What ``POST /api/v1/workspaces/{ws}/settings/sftp-profiles`` takes. Secrets are never read back."""

    model_config = ConfigDict(extra="forbid")

    name: UrlName = Field(description="The profile id `$ftp_upload` names: letters, digits, `_`, `-`.")
    host: str = Field(min_length=1, max_length=253)
    port: int = Field(default=22, ge=1, le=65535)
    username: str = Field(min_length=1, max_length=256)
    password: str | None = Field(default=None, max_length=1024, description="Write-only.")
    private_key: str | None = Field(default=None, max_length=16384, description="Write-only; OpenSSH or PEM text.")
    host_key: str | None = Field(
        default=None,
        max_length=16384,
        description="The server's public host key (`ssh-ed25519 AAAA…`): the connection is refused when it differs.",
    )
    insecure_skip_host_key_check: bool = Field(
        default=False, description="Accept any host key (only for testing): without it, `host_key` is required."
    )
    base_path: str = Field(default="", max_length=1024, description="Remote folder uploads are confined to.")
    timeout_s: float = Field(default=15.0, gt=0, le=300)

    @model_validator(mode="after")
    def _check_secrets(self) -> SftpProfile:
        if self.host_key is None and not self.insecure_skip_host_key_check:
            raise ValueError("host_key is required (or insecure_skip_host_key_check: true, for testing only)")
        return self

    def public(self) -> dict[str, Any]:
        """As read back: no secrets, whether each is set."""
        out = self.model_dump(mode="json", exclude={"password", "private_key"})
        out["password_set"] = self.password is not None
        out["private_key_set"] = self.private_key is not None
        return out


def remote_target(base_path: str, remote_path: str) -> str:
    """``remote_path`` under ``base_path``; raises ``ValueError`` if it would leave it."""
    if not remote_path or "\x00" in remote_path:
        raise ValueError("the remote path must be a non-empty path")
    base = posixpath.normpath(base_path) if base_path else ""
    joined = posixpath.normpath(posixpath.join(base or ".", remote_path.lstrip("/") if base else remote_path))
    if base and joined != base and not joined.startswith(base.rstrip("/") + "/"):
        raise ValueError(f"{remote_path!r} leaves the profile's base_path {base_path!r}")
    if not base and (joined == ".." or joined.startswith("../")):
        raise ValueError(f"{remote_path!r} leaves the login folder")
    return joined
