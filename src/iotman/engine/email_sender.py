"""Delivers the email outbox after commit: due emails, with retries and backoff, then dead.

``$send_email`` writes to the outbox inside the function's transaction, so an email
leaves only if the function commits. The sender claims due emails (a lease keeps two
senders off the same one), delivers each through its workspace's SMTP settings, and
records the outcome; a failure is retried after ``base * 2**attempts`` (jittered, at most
ten minutes) until ``max_attempts``, then the email is dead (its last error kept).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from concurrent.futures import Executor

from iotman.core.clock import Clock
from iotman.core.smtp import SmtpSettings
from iotman.export.email_delivery import deliver_email
from iotman.storage.ports import OutboxEmail, Store

__all__ = ["EmailSender"]

log = logging.getLogger("iotman.email")
LEASE_US = 120_000_000
BATCH = 50
MAX_BACKOFF_S = 600.0


class EmailSender:
    def __init__(
        self, store: Store, clock: Clock, executor: Executor, *, max_attempts: int, backoff_base_s: float
    ) -> None:
        self._store = store
        self._clock = clock
        self._executor = executor
        self._max_attempts = max_attempts
        self._backoff_base_s = backoff_base_s
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._run(), name="iotman-email-sender")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def wake(self) -> None:
        """From any thread: something was queued (a function committed)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake.set)

    async def _run(self) -> None:
        while True:
            try:
                await self.send_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("the email sender failed; retrying in a second")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=1.0)
            self._wake.clear()

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
