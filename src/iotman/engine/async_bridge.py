"""Handing store outcomes from the writer thread back to the event loop, cheaply.

Every append would otherwise wake the loop on its own (one self-pipe write each).
The relay queues outcomes and wakes the loop once per burst; the loop then
resolves all the waiting futures in one go.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["CompletionRelay"]


class CompletionRelay:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._ready: list[tuple[asyncio.Future[Any], Any]] = []

    def waiter(self) -> tuple[asyncio.Future[Any], Callable[[Any], None]]:
        future: asyncio.Future[Any] = self._loop.create_future()

        def done(outcome: Any) -> None:
            with self._lock:
                self._ready.append((future, outcome))
                first = len(self._ready) == 1
            if first:
                self._loop.call_soon_threadsafe(self._flush)

        return future, done

    def _flush(self) -> None:
        with self._lock:
            ready, self._ready = self._ready, []
        for future, outcome in ready:
            if not future.done():
                future.set_result(outcome)
