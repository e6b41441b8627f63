"""The Engine: one per process, composed by ``iotman.app`` from a store and settings."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor

from iotman.compute.jsonata_fields import engine_named, limits_from
from iotman.core.clock import Clock, SystemClock
from iotman.engine.admin_service import AdminService
from iotman.engine.cron_runner import CronRunner
from iotman.engine.delivery_sender import DeliverySender, SenderOptions
from iotman.engine.email_sender import EmailSender
from iotman.engine.function_calls import ApiCalls
from iotman.engine.function_service import FunctionService
from iotman.engine.ingest_service import IngestService
from iotman.engine.live_streams import LiveStreams
from iotman.engine.read_service import ReadService
from iotman.engine.registry import Registry
from iotman.engine.test_tools import TestTools
from iotman.engine.trigger_runner import TriggerRunner
from iotman.engine.view_rebuild import ViewRebuilds
from iotman.engine.view_service import ViewService
from iotman.metrics import Metrics
from iotman.settings import Settings
from iotman.storage.ports import Store

__all__ = ["Engine"]

log = logging.getLogger("iotman.engine")
PRUNE_EVERY_S = 300.0


class Engine:
    def __init__(
        self, store: Store, settings: Settings, *, clock: Clock | None = None, metrics: Metrics | None = None
    ) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock or SystemClock()
        self.metrics = metrics or Metrics()
        self.reads = ThreadPoolExecutor(max_workers=settings.read_threads, thread_name_prefix="iotman-read")
        # functions wait for the writer while they run: their own threads, so reads never queue behind them
        self.function_threads = ThreadPoolExecutor(max_workers=4, thread_name_prefix="iotman-function")
        self._trigger_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="iotman-triggers")
        self.jsonata_limits = limits_from(
            settings.jsonata_timeout_ms,
            settings.jsonata_max_steps,
            settings.jsonata_max_depth,
            settings.jsonata_max_result_bytes,
        )
        self.jsonata = engine_named(settings.jsonata_engine, self.jsonata_limits)
        self.registry = Registry(
            store,
            default_max_body=settings.max_body_bytes,
            token_ttl_s=settings.token_cache_seconds,
            jsonata=self.jsonata,
            jsonata_limits=self.jsonata_limits,
        )
        self.ingest = IngestService(store, self.registry, self.clock, self.metrics, self.reads)
        self.read = ReadService(store, self.reads)

        # rebuilds run one at a time in their own thread, so reads keep all of theirs
        self._rebuild_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="iotman-rebuild")
        self.rebuilds = ViewRebuilds(store, self.registry, self.clock, self._rebuild_thread)
        self.views = ViewService(store, self.registry, self.reads, self.rebuilds)
        self.admin = AdminService(store, self.registry, self.clock, self.rebuilds.progress)
        self.test_tools = TestTools(self.clock, self.jsonata, self.jsonata_limits)
        self.email = EmailSender(
            store,
            self.clock,
            self.reads,
            max_attempts=max(1, settings.email_max_attempts),
            backoff_base_s=settings.email_backoff_base_ms / 1000,
        )
        self.functions = FunctionService(
            store,
            self.registry,
            self.jsonata,
            self.jsonata_limits,
            settings.function_timeout_ms,
            ApiCalls(self.registry, self.ingest, self.views, self.admin, self.read),
            clock=self.clock,
            on_email=self.email.wake,
            on_committed=self._committed_elsewhere,
        )
        self.live = LiveStreams(
            self.registry,
            self.read,
            self.reads,
            self.metrics,
            buffer_events=settings.stream_buffer_events,
            flush_ms=settings.stream_flush_ms,
            poll_ms=settings.stream_poll_ms,
            recheck_s=settings.stream_recheck_seconds,
            last_seq=store.last_seq,
        )
        self._delivery_threads = ThreadPoolExecutor(max_workers=2, thread_name_prefix="iotman-deliveries")
        self.deliveries = DeliverySender(
            store,
            self.registry,
            self.clock,
            self._delivery_threads,
            self.metrics,
            SenderOptions(
                lease_s=settings.delivery_lease_seconds,
                backoff_base_s=settings.delivery_backoff_base_ms / 1000,
                backoff_max_s=settings.delivery_backoff_max_ms / 1000,
            ),
        )
        self.admin.lane_status = self.deliveries.lane_status
        self.admin.targets_changed = self.deliveries.forget_targets
        self.triggers = TriggerRunner(store, self.functions, self.clock, self._trigger_thread)
        self.admin.triggers_changed = self.triggers.forget_triggers
        self.ingest.on_appended = self._appended
        self._loop: asyncio.AbstractEventLoop | None = None
        self._cron_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="iotman-cron")
        self.cron = CronRunner(store, self.functions, self.clock, self._cron_thread)
        self.ready = False
        self._prune_task: asyncio.Task[None] | None = None

    def _appended(self, workspace_id: int) -> None:
        """Events were committed to this workspace (on the event loop): wake what reacts."""
        self.triggers.wake()
        self.deliveries.wake()
        self.live.wake(workspace_id)

    def _committed_elsewhere(self, workspace_id: int) -> None:
        """A function's transaction committed (in a worker thread); it may have appended."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self.live.wake, workspace_id)
        self.deliveries.wake()

    def open(self) -> None:
        self.store.open()
        self.ready = True

    def close(self) -> None:
        self.ready = False
        self._rebuild_thread.shutdown(wait=False, cancel_futures=True)
        self.function_threads.shutdown(wait=True)
        self._trigger_thread.shutdown(wait=True)
        self._cron_thread.shutdown(wait=True)
        self._delivery_threads.shutdown(wait=True)
        self.reads.shutdown(wait=True)
        self.store.close()

    async def start(self) -> None:
        """Open the store (in a thread) and start housekeeping."""
        self._loop = asyncio.get_running_loop()
        await self._loop.run_in_executor(self.reads, self.store.open)
        self.ready = True
        self._prune_task = asyncio.create_task(self._prune_loop(), name="iotman-prune")
        self.email.start()
        self.triggers.start()
        self.cron.start()
        self.live.start()
        self.deliveries.start()

    async def stop(self) -> None:
        """Finish queued writes, then close. Requests in flight are already answered by now."""
        self.ready = False
        if self._prune_task is not None:
            self._prune_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._prune_task
        await self.live.stop()
        await self.deliveries.stop()
        await self.email.stop()
        await self.triggers.stop()
        await self.cron.stop()
        loop = asyncio.get_running_loop()
        self._rebuild_thread.shutdown(wait=False, cancel_futures=True)
        await loop.run_in_executor(None, lambda: self.function_threads.shutdown(wait=True))
        await loop.run_in_executor(None, lambda: self._trigger_thread.shutdown(wait=True))
        await loop.run_in_executor(None, lambda: self._cron_thread.shutdown(wait=True))
        await loop.run_in_executor(None, lambda: self._delivery_threads.shutdown(wait=True))
        await loop.run_in_executor(None, lambda: self.reads.shutdown(wait=True))
        await loop.run_in_executor(None, self.store.close)

    def prune(self) -> None:
        self.store.prune(
            self.clock.now_us(),
            self.settings.idempotency_ttl_seconds * 1_000_000,
            self.settings.quarantine_keep,
            self.settings.delivery_keep_hours * 3_600_000_000,
        )

    async def _prune_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                await loop.run_in_executor(self.reads, self.prune)
            except Exception:
                log.exception("pruning failed")
            await asyncio.sleep(PRUNE_EVERY_S)
