"""Live streams of an export endpoint (SPEC §5.1: SSE and WebSocket), fed from the log.

One hub per streamed endpoint tails the log after each commit (``wake``), and on a
timer for appends this process did not see (functions, another server on the same
file). It reads and renders each new match once and hands the lines to every
subscriber's bounded buffer; it never waits for a subscriber.

A subscriber first reads what it missed from the log (``Last-Event-ID``), then takes
the lines the hub hands it, skipping what it already sent. Its buffer filling up
while it is live means the client reads slower than events arrive: it is dropped
with a final notice (the client may reconnect with its last id and resume from the
log). Filling up while it is still catching up from the log only sends it back to
the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field

from iotman.core.workspace import Workspace
from iotman.engine.read_service import LogLines, ReadService
from iotman.engine.registry import ReadTarget, Registry
from iotman.errors import IotmanError
from iotman.metrics import Metrics

__all__ = ["Dropped", "LiveChunk", "LiveStreams", "Started"]

log = logging.getLogger("iotman.live")
READ_LIMIT = 1000
FLUSH_PER_SUBSCRIBER_S = 0.0002
"""The flush interval grows by this per subscriber (100 subscribers: at most 50 writes each a second)."""


class LiveChunk:
    """Lines of consecutive matches, in log order; their SSE frame is encoded once, however
    many subscribers send it."""

    __slots__ = ("_sse", "lines")

    def __init__(self, lines: list[tuple[int, str]]) -> None:
        self.lines = lines
        self._sse: bytes | None = None

    @property
    def last_seq(self) -> int:
        return self.lines[-1][0]

    def after(self, seq: int) -> LiveChunk | None:
        """The part of this chunk after ``seq`` (None when nothing is left)."""
        if self.lines[0][0] > seq:
            return self
        rest = [pair for pair in self.lines if pair[0] > seq]
        return LiveChunk(rest) if rest else None

    def sse(self) -> bytes:
        if self._sse is None:
            parts: list[str] = []
            for seq, line in self.lines:
                data = line
                if "\n" in data or "\r" in data:  # JSON whitespace only: one data line each
                    data = "\ndata: ".join(data.splitlines())
                parts.append(f"id: {seq}\ndata: {data}\n\n")
            self._sse = "".join(parts).encode()
        return self._sse


@dataclass(frozen=True, slots=True)
class Started:
    """The first item of a stream: the seq it follows from (what a reconnect resumes after
    when no match has been sent yet)."""

    after_seq: int


@dataclass(frozen=True, slots=True)
class Dropped:
    """The final notice of a stream: why it ends, and the id to resume after."""

    reason: str
    message: str
    last_event_id: int


@dataclass(eq=False, slots=True)
class _Subscriber:
    limit: int
    chunks: deque[LiveChunk] = field(default_factory=deque)
    buffered: int = 0
    overflowed: bool = False
    closed: str | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, chunk: LiveChunk) -> None:
        if self.overflowed:
            return
        # a chunk always fits an empty buffer (a hub reads at most stream_buffer_events lines at once)
        if self.buffered and self.buffered + len(chunk.lines) > self.limit:
            self.overflowed = True  # the log still has it all: drop the buffer, not the events
            self.chunks.clear()
            self.buffered = 0
        else:
            self.chunks.append(chunk)
            self.buffered += len(chunk.lines)
        self.ready.set()

    def close(self, reason: str) -> None:
        self.closed = reason
        self.ready.set()

    def reset(self) -> None:
        self.chunks.clear()
        self.buffered = 0
        self.overflowed = False

    def take(self) -> list[LiveChunk]:
        taken = list(self.chunks)
        self.chunks.clear()
        self.buffered = 0
        self.ready.clear()
        return taken


@dataclass(eq=False, slots=True)
class _Hub:
    workspace: Workspace
    path: str
    cursor: int
    subscribers: set[_Subscriber] = field(default_factory=set)
    pumping: bool = False
    dirty: bool = False
    last_read: float = 0.0


class LiveStreams:
    def __init__(
        self,
        registry: Registry,
        read: ReadService,
        reads: Executor,
        metrics: Metrics,
        *,
        buffer_events: int,
        flush_ms: float,
        poll_ms: float,
        recheck_s: float,
        last_seq: Callable[[int], int],
    ) -> None:
        self._recheck_s = max(0.1, recheck_s)
        self._registry = registry
        self._read = read
        self._reads = reads
        self._metrics = metrics
        self._buffer_events = max(1, buffer_events)
        self._flush_s = max(0.0, flush_ms) / 1000
        self._poll_s = max(0.05, poll_ms / 1000)
        self._last_seq = last_seq
        self._hubs: dict[tuple[int, str], _Hub] = {}
        self._poller: asyncio.Task[None] | None = None

    # lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        self._poller = asyncio.create_task(self._poll(), name="iotman-live-poll")

    async def stop(self) -> None:
        for hub in list(self._hubs.values()):
            for subscriber in hub.subscribers:
                subscriber.close("server_stopping")
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._poll_s)
            for hub in list(self._hubs.values()):
                self._schedule(hub)

    def wake(self, workspace_id: int) -> None:
        """New events were committed in this workspace (called on the event loop)."""
        for (ws_id, _), hub in list(self._hubs.items()):
            if ws_id == workspace_id:
                self._schedule(hub)

    @property
    def subscribers(self) -> int:
        return sum(len(h.subscribers) for h in self._hubs.values())

    # the hub ------------------------------------------------------------------------
    def _schedule(self, hub: _Hub) -> None:
        if hub.pumping:
            hub.dirty = True
            return
        hub.pumping = True
        asyncio.get_running_loop().create_task(self._pump(hub))

    async def _pump(self, hub: _Hub) -> None:
        loop = asyncio.get_running_loop()
        try:
            while hub.subscribers:
                # coalesce commits: one read, and one write per subscriber, per flush interval (longer
                # with more subscribers, so the writes a second stay bounded)
                interval = max(self._flush_s, FLUSH_PER_SUBSCRIBER_S * len(hub.subscribers))
                wait = hub.last_read + interval - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                hub.dirty = False
                hub.last_read = time.monotonic()
                try:
                    target = await self._target(hub)
                    batch: LogLines = await loop.run_in_executor(
                        self._reads, self._read.lines_after, target, hub.cursor, min(READ_LIMIT, self._buffer_events)
                    )
                except IotmanError as exc:  # the endpoint was deleted or changed path
                    for subscriber in hub.subscribers:
                        subscriber.close(f"endpoint_gone: {exc.message}")
                    return
                except Exception:
                    log.exception("live stream read failed for /data/%s/%s", hub.workspace.slug, hub.path)
                    await asyncio.sleep(self._poll_s)
                    continue
                if batch.lines:
                    chunk = LiveChunk(batch.lines)
                    for subscriber in hub.subscribers:
                        subscriber.offer(chunk)
                    self._metrics.live_events.inc(len(batch.lines) * len(hub.subscribers))
                if batch.last_seq is not None:
                    hub.cursor = max(hub.cursor, batch.last_seq)
                if batch.full:
                    hub.last_read = 0.0  # more is waiting: read on at once
                elif not hub.dirty:
                    break
        finally:
            hub.pumping = False
            if not hub.subscribers:
                self._hubs.pop((hub.workspace.id, hub.path), None)

    async def _target(self, hub: _Hub) -> ReadTarget:
        target = self._registry.cached_read_target(hub.workspace, hub.path)
        if target is None:
            loop = asyncio.get_running_loop()
            target = await loop.run_in_executor(self._reads, self._registry.read_target, hub.workspace, hub.path)
        return target

    async def _hub(self, target: ReadTarget, path: str) -> _Hub:
        key = (target.workspace.id, path)
        hub = self._hubs.get(key)
        if hub is None:
            loop = asyncio.get_running_loop()
            cursor = await loop.run_in_executor(self._reads, self._last_seq, target.workspace.id)
            hub = self._hubs.get(key)  # another subscriber may have made it meanwhile
            if hub is None:
                hub = self._hubs[key] = _Hub(target.workspace, path, cursor)
        return hub

    # a subscriber -------------------------------------------------------------------
    async def subscribe(
        self,
        target: ReadTarget,
        path: str,
        after_seq: int | None,
        allowed: Callable[[], Awaitable[bool]] | None = None,
    ) -> AsyncGenerator[LiveChunk | Dropped | Started, None]:
        """``Started``, the matches of ``target`` after ``after_seq`` (None: from now on), then
        live ones. ``allowed`` is asked again every ``recheck_s`` while the stream is open.

        Ends with a ``Dropped`` notice when the client is too slow, may no longer read, or the
        endpoint goes."""
        hub = await self._hub(target, path)
        subscriber = _Subscriber(self._buffer_events)
        hub.subscribers.add(subscriber)
        self._metrics.live_subscribers.inc()
        sent = hub.cursor if after_seq is None else after_seq
        from_log = after_seq is not None
        checked = time.monotonic()
        try:
            yield Started(sent)
            while True:
                live_since_log = not from_log
                if from_log:
                    subscriber.reset()
                    cursor = [sent]
                    async for chunk in self._log_pages(target, cursor):
                        yield chunk
                    sent, from_log = cursor[0], False
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(subscriber.ready.wait(), self._recheck_s)
                if allowed is not None and time.monotonic() - checked >= self._recheck_s:
                    checked = time.monotonic()
                    if not await allowed():
                        yield Dropped("unauthorized", _MESSAGES["unauthorized"], sent)
                        return
                if not subscriber.ready.is_set():
                    continue
                ended = self._ended(subscriber, live_since_log, sent)
                if ended is not None:
                    yield ended
                    return
                if subscriber.overflowed:
                    from_log = True  # it fell behind while catching up: the log has the rest
                    continue
                for chunk in subscriber.take():
                    rest = chunk.after(sent)
                    if rest is not None:
                        yield rest
                        sent = rest.last_seq
        finally:
            hub.subscribers.discard(subscriber)
            self._metrics.live_subscribers.dec()
            if not hub.subscribers and not hub.pumping:
                self._hubs.pop((hub.workspace.id, hub.path), None)

    async def _log_pages(self, target: ReadTarget, cursor: list[int]) -> AsyncGenerator[LiveChunk, None]:
        """The target's matches after ``cursor[0]`` from the log, a page at a time, moving the cursor."""
        loop = asyncio.get_running_loop()
        limit = min(READ_LIMIT, self._buffer_events)
        while True:
            batch = await loop.run_in_executor(self._reads, self._read.lines_after, target, cursor[0], limit)
            if batch.lines:
                yield LiveChunk(batch.lines)
            if batch.last_seq is not None:
                cursor[0] = max(cursor[0], batch.last_seq)
            if not batch.full:
                return

    def _ended(self, subscriber: _Subscriber, live_since_log: bool, sent: int) -> Dropped | None:
        """Why the stream ends now (closed by the hub or the server, or too slow), if it does."""
        if subscriber.closed is not None:
            reason, _, message = subscriber.closed.partition(": ")
            return Dropped(reason, message or _MESSAGES.get(reason, reason), sent)
        if subscriber.overflowed and live_since_log:
            self._metrics.live_dropped.inc()
            return Dropped("slow_consumer", _MESSAGES["slow_consumer"], sent)
        return None


_MESSAGES = {
    "unauthorized": "the token may no longer read this endpoint (expired, revoked, or the endpoint's auth changed)",
    "slow_consumer": "the client read slower than events arrived; reconnect with Last-Event-ID to resume from the log",
    "server_stopping": "the server is shutting down; reconnect with Last-Event-ID to resume",
}
