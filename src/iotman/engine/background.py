"""A background task of the engine: runs ``tick()`` again and again, woken early by ``wake()``."""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging

__all__ = ["BackgroundLoop"]


class BackgroundLoop(abc.ABC):
    """``tick()`` answers whether there may be more to do at once; otherwise the loop waits for
    ``wake()`` (from any thread) or ``idle_s``. A failing tick is logged and tried again later."""

    name = "iotman-background"
    idle_s = 1.0

    def __init__(self) -> None:
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._log = logging.getLogger(f"iotman.{self.name}")

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def wake(self) -> None:
        """From any thread: there is something to do."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake.set)

    @abc.abstractmethod
    async def tick(self) -> bool:
        """One round of work; True when there may be more to do at once."""

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                busy = await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - logged; the loop must outlive any one failure
                self._log.exception("%s failed; trying again in %s s", self.name, self.idle_s)
                busy = False
            if busy:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.idle_s)
