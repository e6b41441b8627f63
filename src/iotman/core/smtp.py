"""A workspace's SMTP settings (``settings/smtp``): where ``$send_email`` delivers from."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["EMAIL_ADDRESS", "SmtpSettings", "check_address"]

EMAIL_ADDRESS = re.compile(r"[^@\s<>,;\"]{1,64}@[^@\s<>,;\"]{1,253}")


def check_address(value: str, what: str = "address") -> str:
    if not isinstance(value, str) or not EMAIL_ADDRESS.fullmatch(value):
        raise ValueError(f"{what} must be an email address like name@example.com, not {value!r}")
    return value


class SmtpSettings(BaseModel):
    """What ``PUT /api/v1/workspaces/{ws}/settings/smtp`` takes. The password is never read back."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field(min_length=1, max_length=253, description="SMTP server host name or address.")
    port: int = Field(default=587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = Field(
        default="starttls", description="`starttls` (port 587), `tls` (implicit, port 465) or `none`."
    )
    username: str | None = Field(default=None, max_length=512)
    password: str | None = Field(
        default=None, max_length=512, description="Write-only: omitted on PUT keeps the stored one."
    )
    from_address: str = Field(description="The sender address of every email.")
    timeout_s: float = Field(default=10.0, gt=0, le=120)

    @field_validator("from_address")
    @classmethod
    def _check_from(cls, value: str) -> str:
        return check_address(value, "from_address")

    def public(self) -> dict[str, Any]:
        """As read back: everything but the password, and whether one is set."""
        out = self.model_dump(mode="json", exclude={"password"})
        out["password_set"] = self.password is not None
        return out
