"""Delivering an email through a workspace's SMTP server (aiosmtplib)."""

from __future__ import annotations

from email.message import EmailMessage

import aiosmtplib

from iotman.core.smtp import SmtpSettings

__all__ = ["deliver_email"]


async def deliver_email(settings: SmtpSettings, recipients: list[str], subject: str, body: str) -> None:
    """Send one plain-text email; raises on any failure (the sender retries)."""
    message = EmailMessage()
    message["From"] = settings.from_address
    message["To"] = ", ".join(recipients)
    message["Subject"] = subject
    message.set_content(body)
    await aiosmtplib.send(
        message,
        hostname=settings.host,
        port=settings.port,
        username=settings.username,
        password=settings.password,
        use_tls=settings.security == "tls",
        start_tls=settings.security == "starttls",
        timeout=settings.timeout_s,
    )
