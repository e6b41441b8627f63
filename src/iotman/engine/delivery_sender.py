"""The delivery sender (SPEC §5.2, §5.3): pushes the outbox's pending deliveries to webhooks and
MQTT brokers, at least once.

Claimed rows are held with a lease (a crashed server's rows are tried again when it
expires). Each target is a lane with its own concurrency limit and circuit breaker:
after ``BREAKER_FAILURES`` failures in a row the lane stops sending for a cool-down
(doubling up to ``BREAKER_MAX_S``, or the longest backoff if shorter) and its
deliveries wait without spending attempts; then one delivery probes the receiver. So
a dead receiver never holds up the others, and an outage of minutes dead-letters
nothing. Outcomes are written in batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from iotman.compute.json_values import loads
from iotman.core.clock import Clock
from iotman.core.webhook import MQTT_PUSH_TARGET, WEBHOOK_TARGET, MqttPushDefinition, TopicTemplate, WebhookDefinition
from iotman.core.workspace import Workspace
from iotman.engine.definition_kinds import MQTT_PUSH, WEBHOOK
from iotman.engine.read_service import render_event
from iotman.engine.registry import Registry
from iotman.errors import IotmanError
from iotman.export.mqtt_delivery import MqttPublisher
from iotman.export.push_outcome import AttemptOutcome, backoff_s
from iotman.export.webhook_delivery import WebhookClient
from iotman.metrics import Metrics
from iotman.storage.ports import Delivery, DeliveryResult, Store

__all__ = ["DeliverySender", "SenderOptions"]

log = logging.getLogger("iotman.deliveries")
CLAIM_LIMIT = 1000
BREAKER_FAILURES = 5
BREAKER_BASE_S = 1.0
BREAKER_MAX_S = 60.0
FLUSH_S = 0.02
FLUSH_MAX = 500
IDLE_S = 0.25
MQTT_LANE_LIMIT = 32
TARGETS_TTL_S = 2.0
LEASE_MARGIN = 0.5
"""A claimed delivery is started only while its longest attempt (or, at least, this share of
the lease) still ends within the lease; later it is left for the next claim."""
MQTT_ATTEMPT_S = 15.0
CLAIM_EVERY_S = 0.005


@dataclass(frozen=True, slots=True)
class SenderOptions:
    lease_s: float
    backoff_base_s: float
    backoff_max_s: float


@dataclass(slots=True)
class _Work:
    """A claimed delivery, ready to push: what to send, or why it cannot be sent."""

    delivery: Delivery
    max_attempts: int
    body: bytes = b""
    msg_id: str = ""
    webhook: WebhookDefinition | None = None
    push: MqttPushDefinition | None = None
    topic: str = ""
    problem: str | None = None  # dead at once (the event is gone, the output cannot render it, ...)
    expires: float = 0.0  # monotonic time after which the claim may have lapsed: not sent
    started: bool = False


@dataclass(eq=False, slots=True)
class _Lane:
    limit: int
    claimed: int = 0
    semaphore: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(1))
    failures: int = 0
    open_until: float = 0.0
    cooldown: float = BREAKER_BASE_S
    probing: bool = False
    probe_done: asyncio.Event = field(default_factory=asyncio.Event)

    def resize(self, limit: int) -> None:
        if limit != self.limit:
            self.limit = limit
            self.semaphore = asyncio.Semaphore(limit)

    @property
    def tripped(self) -> bool:
        return self.failures >= BREAKER_FAILURES

    def room(self, now: float) -> int:
        """How many more deliveries to claim for this lane (none while its breaker holds it)."""
        if self.tripped and (now < self.open_until or self.probing):
            return 0
        return 2 * self.limit - self.claimed


class DeliverySender:
    def __init__(
        self,
        store: Store,
        registry: Registry,
        clock: Clock,
        executor: Executor,
        metrics: Metrics,
        options: SenderOptions,
    ) -> None:
        self._store = store
        self._registry = registry
        self._clock = clock
        self._executor = executor
        self._metrics = metrics
        self._options = options
        self._lanes: dict[tuple[int, str], _Lane] = {}
        self._results: list[DeliveryResult] = []
        self._flushed = asyncio.Event()
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._inflight: set[asyncio.Task[None]] = set()
        self._webhooks = WebhookClient()
        self._mqtt = MqttPublisher()
        self._workspaces: dict[int, Workspace] = {}
        self._target_list: list[tuple[int, str, int]] = []
        self._targets_read = -TARGETS_TTL_S
        self._targets_generation = 0
        self._targets_seen = -1
        self._queued: dict[asyncio.Task[None], _Work] = {}

    # lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._tasks = [
            asyncio.create_task(self._claim_loop(), name="iotman-deliveries"),
            asyncio.create_task(self._flush_loop(), name="iotman-delivery-results"),
        ]

    async def stop(self) -> None:
        for work in self._queued.values():
            if not work.started:  # a task cancelled before its first step runs none of its code
                d = work.delivery
                self._finish(DeliveryResult(d.id, d.lease_until_us, "pending", False, self._at(0)))
        for task in self._tasks:
            task.cancel()
        for task in list(self._inflight):
            task.cancel()
        for task in [*self._tasks, *self._inflight]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        with contextlib.suppress(Exception):
            await self._flush()  # what finished is recorded; the rest is tried again after the lease
        await self._webhooks.close()
        await self._mqtt.close()

    def wake(self) -> None:
        """From any thread: new deliveries may be due."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake.set)

    # claiming -----------------------------------------------------------------------
    async def _claim_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            try:
                targets = await loop.run_in_executor(self._executor, self._targets)
                now = time.monotonic()
                wanted: list[tuple[int, str, int]] = []
                for ws_id, target, limit in targets:
                    lane = self._lanes.get((ws_id, target))
                    room = 2 * limit if lane is None else lane.room(now)
                    if room > 0:
                        wanted.append((ws_id, target, room))
                rows: list[Delivery] = []
                claimed_at = time.monotonic()  # the lease starts no earlier than this
                if wanted:
                    rows = await loop.run_in_executor(
                        self._executor,
                        self._store.claim_deliveries,
                        self._clock.now_us(),
                        int(self._options.lease_s * 1_000_000),
                        wanted,
                    )
                works = await loop.run_in_executor(self._executor, self._prepare, rows) if rows else []
            except Exception:
                log.exception("claiming deliveries failed; trying again in %s s", IDLE_S)
                works = []
            lease_s = self._options.lease_s
            for work in works:
                # an attempt must end within the lease, or the row may be claimed (and sent) again meanwhile
                longest = work.webhook.timeout_ms / 1000 if work.webhook is not None else MQTT_ATTEMPT_S
                work.expires = claimed_at + max(lease_s - longest, lease_s * LEASE_MARGIN)
                self._start(work)
            if not works:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=IDLE_S)
            await asyncio.sleep(CLAIM_EVERY_S)  # wake-ups within it share one claim

    def _targets(self) -> list[tuple[int, str, int]]:
        """(workspace id, target, concurrency limit) of every webhook and MQTT push; read again
        every ``TARGETS_TTL_S`` (a store thread)."""
        now = time.monotonic()
        if now - self._targets_read < TARGETS_TTL_S and self._targets_generation == self._targets_seen:
            return self._target_list
        generation = self._targets_generation
        found: list[tuple[int, str, int]] = []
        for ws in self._store.list_workspaces():
            self._workspaces[ws.id] = ws
            for record in self._store.list_definitions(ws.id, WEBHOOK.kind):
                found.append((ws.id, WEBHOOK_TARGET + record.name, int(record.body.get("max_concurrency") or 16)))
            for record in self._store.list_definitions(ws.id, MQTT_PUSH.kind):
                found.append((ws.id, MQTT_PUSH_TARGET + record.name, MQTT_LANE_LIMIT))
        self._target_list, self._targets_read, self._targets_seen = found, now, generation
        return found

    def forget_targets(self) -> None:
        """Definitions changed (any thread): read the targets again on the next claim."""
        self._targets_generation += 1

    def _lane(self, delivery: Delivery, limit: int) -> _Lane:
        key = (delivery.workspace_id, delivery.target)
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane(limit, semaphore=asyncio.Semaphore(limit))
        else:
            lane.resize(limit)
        return lane

    def _start(self, work: _Work) -> None:
        limit = work.webhook.max_concurrency if work.webhook is not None else MQTT_LANE_LIMIT
        lane = self._lane(work.delivery, limit)
        lane.claimed += 1
        task = asyncio.create_task(self._deliver(lane, work))
        self._inflight.add(task)
        self._queued[task] = work
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._queued.pop(task, None)

    # preparing (in a store thread) ----------------------------------------------------
    def _prepare(self, rows: list[Delivery]) -> list[_Work]:
        groups: dict[tuple[int, str], list[Delivery]] = {}
        for row in rows:
            groups.setdefault((row.workspace_id, row.target), []).append(row)
        works: list[_Work] = []
        gone: list[DeliveryResult] = []
        for (ws_id, target), group in groups.items():
            try:
                works.extend(self._prepare_group(ws_id, target, group))
            except _TargetGone:
                gone.extend(
                    DeliveryResult(d.id, d.lease_until_us, "dead", error="the target was deleted") for d in group
                )
                self._store.delete_deliveries(ws_id, target)
            except Exception:  # a definition that no longer loads: keep the rows, try later
                log.exception("preparing deliveries of %s failed", target)
                retry = self._clock.now_us() + int(self._options.backoff_max_s * 1_000_000)
                gone.extend(
                    DeliveryResult(d.id, d.lease_until_us, "pending", attempted=False, next_attempt_us=retry)
                    for d in group
                )
        if gone:
            self._store.finish_deliveries(gone, self._clock.now_us())
        return works

    def _workspace(self, ws_id: int) -> Workspace:
        ws = self._workspaces.get(ws_id)
        if ws is None:
            for found in self._store.list_workspaces():
                self._workspaces[found.id] = found
            ws = self._workspaces.get(ws_id)
            if ws is None:
                raise _TargetGone
        return ws

    def _prepare_group(self, ws_id: int, target: str, group: list[Delivery]) -> list[_Work]:
        ws = self._workspace(ws_id)
        kind, prefix = (WEBHOOK, WEBHOOK_TARGET) if target.startswith(WEBHOOK_TARGET) else (MQTT_PUSH, MQTT_PUSH_TARGET)
        record = self._store.get_definition(ws_id, kind.kind, target[len(prefix) :])
        if record is None:
            raise _TargetGone
        webhook = WebhookDefinition.model_validate(record.body) if kind is WEBHOOK else None
        push = MqttPushDefinition.model_validate(record.body) if kind is MQTT_PUSH else None
        definition: Any = webhook or push
        try:
            output = self._registry.pushed_output(ws, record.body)
        except IotmanError as exc:
            return [_Work(d, definition.max_attempts, problem=exc.message) for d in group]
        topic = TopicTemplate(push.topic) if push is not None else None
        events = {e.seq: e for e in self._store.events_at(ws_id, [d.seq for d in group])}
        works: list[_Work] = []
        for delivery in group:
            work = _Work(delivery, definition.max_attempts, webhook=webhook, push=push)
            event = events.get(delivery.seq)
            if event is None:
                work.problem = f"event {delivery.seq} is no longer in the log"
            else:
                work.msg_id = event.id
                try:
                    work.body = render_event(output, event).encode()
                    if topic is not None:
                        fields = {"source": event.source, "seq": event.seq, "id": event.id}
                        fields["tags"] = loads(event.tags) if event.tags else {}
                        fields["payload"] = loads(event.payload)
                        work.topic = topic.render(fields)
                except ValueError as exc:
                    work.problem = str(exc)
            works.append(work)
        return works

    # pushing --------------------------------------------------------------------------
    async def _deliver(self, lane: _Lane, work: _Work) -> None:
        work.started = True
        probe = False
        recorded = False
        delivery = work.delivery
        try:
            async with lane.semaphore:
                while lane.probing:  # one delivery probes a tripped receiver; the others await its outcome
                    await lane.probe_done.wait()
                now = time.monotonic()
                if now > work.expires:
                    return  # its lease may have lapsed: the next claim takes it (no double send from here)
                if lane.tripped:
                    if now < lane.open_until:
                        wait_s = lane.open_until - now
                        release = DeliveryResult(
                            delivery.id, delivery.lease_until_us, "pending", False, self._at(wait_s)
                        )
                        self._finish(release)
                        recorded = True
                        return
                    lane.probing = probe = True
                    lane.probe_done = asyncio.Event()
                try:
                    outcome = await self._attempt(work)
                except Exception as exc:  # a bug or an input the driver refuses: dead, never stuck
                    log.exception("delivery %s to %s failed unexpectedly", delivery.id, delivery.target)
                    outcome = AttemptOutcome(False, retryable=False, error=f"{type(exc).__name__}: {exc}"[:500])
                self._record(lane, work, outcome, probe)
                recorded = True
        except asyncio.CancelledError:
            if not recorded:  # stopping: back to the outbox now, not after the lease
                self._finish(DeliveryResult(delivery.id, delivery.lease_until_us, "pending", False, self._at(0)))
            raise
        finally:
            if probe and lane.probing:  # the probe itself failed to finish: let the others go
                lane.probing = False
                lane.probe_done.set()
            lane.claimed -= 1
            self._wake.set()

    async def _attempt(self, work: _Work) -> AttemptOutcome:
        if work.problem is not None:
            return AttemptOutcome(False, retryable=False, error=work.problem)
        if work.webhook is not None:
            hook = work.webhook
            assert hook.secret is not None  # stored definitions always have one
            return await self._webhooks.post(
                hook.url,
                work.body,
                msg_id=work.msg_id,
                secret=hook.secret,
                headers={**hook.headers, "iotman-webhook": hook.name},
                timeout_s=hook.timeout_ms / 1000,
            )
        assert work.push is not None
        return await self._mqtt.publish(work.push.broker, work.topic, work.body, work.push.qos, work.push.retain)

    def _record(self, lane: _Lane, work: _Work, outcome: AttemptOutcome, probe: bool) -> None:
        delivery = work.delivery
        kind = "webhook" if work.webhook is not None else "mqtt_push"
        if probe:
            lane.probing = False
            lane.probe_done.set()
        if outcome.ok:
            lane.failures = 0
            lane.cooldown = BREAKER_BASE_S
            self._metrics.delivery_attempts.labels(kind, "delivered").inc()
            self._finish(
                DeliveryResult(
                    delivery.id, delivery.lease_until_us, "delivered", True, None, outcome.status, outcome.latency_us
                )
            )
            return
        attempts = delivery.attempts + 1
        if work.problem is None and outcome.retryable:
            lane.failures += 1
            if lane.tripped:
                lane.open_until = time.monotonic() + lane.cooldown
                if probe:  # never paused longer than the longest backoff
                    lane.cooldown = min(BREAKER_MAX_S, self._options.backoff_max_s, lane.cooldown * 2)
        if outcome.retryable and attempts < work.max_attempts:
            wait_s = backoff_s(attempts, self._options.backoff_base_s, self._options.backoff_max_s)
            if outcome.retry_after_s is not None:
                wait_s = max(wait_s, min(outcome.retry_after_s, self._options.backoff_max_s))
            state, next_us = "pending", self._at(wait_s)
            self._metrics.delivery_attempts.labels(kind, "retried").inc()
        else:
            state, next_us = "dead", None
            self._metrics.delivery_attempts.labels(kind, "dead").inc()
        self._finish(
            DeliveryResult(
                delivery.id,
                delivery.lease_until_us,
                state,
                True,
                next_us,
                outcome.status,
                outcome.latency_us,
                outcome.error,
            )
        )

    def _at(self, wait_s: float) -> int:
        return self._clock.now_us() + int(wait_s * 1_000_000)

    # recording outcomes -------------------------------------------------------------------
    def _finish(self, result: DeliveryResult) -> None:
        self._results.append(result)
        if len(self._results) >= FLUSH_MAX:
            self._flushed.set()

    async def _flush_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._flushed.wait(), timeout=FLUSH_S)
            self._flushed.clear()
            try:
                await self._flush()
            except Exception:
                log.exception("recording delivery outcomes failed; trying again")
                await asyncio.sleep(IDLE_S)

    async def _flush(self) -> None:
        if not self._results:
            return
        results, self._results = self._results, []
        try:
            await asyncio.get_running_loop().run_in_executor(
                self._executor, self._store.finish_deliveries, results, self._clock.now_us()
            )
        except BaseException:
            self._results[:0] = results  # kept for the next flush
            raise

    def lane_status(self, workspace_id: int, target: str) -> dict[str, Any]:
        """This process's view of a target: in flight, failures in a row, the circuit breaker."""
        lane = self._lanes.get((workspace_id, target))
        if lane is None:
            return {"in_flight": 0, "consecutive_failures": 0, "circuit": "closed"}
        circuit = ("open" if time.monotonic() < lane.open_until else "half-open") if lane.tripped else "closed"
        return {"in_flight": lane.claimed, "consecutive_failures": lane.failures, "circuit": circuit}


class _TargetGone(Exception):
    """The workspace or definition of a delivery no longer exists."""
