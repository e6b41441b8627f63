"""Delivers the email outbox after commit: due emails, with retries and backoff, then dead.

``$send_email`` writes to the outbox inside the function's transaction, so an email
leaves only if the function commits. The sender claims due emails (a lease keeps two
senders off the same one), delivers each through its workspace's SMTP settings, and
records the outcome; a failure is retried after ``base * 2**attempts`` (jittered, at most
ten minutes) until ``max_attempts``, then the email is dead (its last error kept).
"""

from __future__ import annotations

import asyncio
import logging
import random
from concurrent.futures import Executor

from iotman.core.clock import Clock
from iotman.core.smtp import SmtpSettings
from iotman.engine.background import BackgroundLoop
from iotman.export.email_delivery import deliver_email
from iotman.storage.ports import OutboxEmail, Store

__all__ = ["EmailSender"]

log = logging.getLogger("iotman.email")
LEASE_US = 120_000_000
BATCH = 50
MAX_BACKOFF_S = 600.0


class EmailSender(BackgroundLoop):
    name = "iotman-email"

    def __init__(
        self, store: Store, clock: Clock, executor: Executor, *, max_attempts: int, backoff_base_s: float
    ) -> None:
        super().__init__()
        self._store = store
        self._clock = clock
        self._executor = executor
        self._max_attempts = max_attempts
        self._backoff_base_s = backoff_base_s

    async def tick(self) -> bool:
        return await self.send_due() >= BATCH  # a full batch: more may be due

    async def send_due(self) -> int:
        """Deliver what is due now; the number of emails tried."""
        loop = asyncio.get_running_loop()
        now = self._clock.now_us()
        due = await loop.run_in_executor(self._executor, self._store.claim_emails, now, LEASE_US, BATCH)
        for email in due:
            await self._deliver(email)
        return len(due)

    async def _deliver(self, email: OutboxEmail) -> None:
        loop = asyncio.get_running_loop()
        raw = await loop.run_in_executor(self._executor, self._store.get_setting, email.workspace_id, "smtp")
        try:
            if raw is None:
                raise LookupError("the workspace has no SMTP settings (PUT …/settings/smtp)")
            settings = SmtpSettings.model_validate(raw)
            await deliver_email(settings, email.recipients, email.subject, email.body)
        except Exception as exc:  # noqa: BLE001 - any failure (settings included) is retried, then dead
            error = f"{type(exc).__name__}: {exc}"
            attempts = email.attempts + 1
            retry_at = None
            if attempts < self._max_attempts:
                delay = min(MAX_BACKOFF_S, self._backoff_base_s * 2 ** (attempts - 1)) * random.uniform(0.8, 1.2)
                retry_at = self._clock.now_us() + int(delay * 1_000_000)
            log.warning("email %s attempt %s failed: %s", email.id, attempts, error)
            await loop.run_in_executor(self._executor, self._store.email_failed, email.id, error, retry_at)
            return
        await loop.run_in_executor(self._executor, self._store.email_sent, email.id, self._clock.now_us())
