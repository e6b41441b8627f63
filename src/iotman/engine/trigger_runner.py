"""Triggers (SPEC §4.3): each matching event of a source fires a function, after the append commits.

Every trigger keeps a cursor in the store (the last ``seq`` of its source it has dealt
with). The runner reads the events after it, in log order, evaluates the condition on
each, and fires the function for a match in a transaction of its own that also writes the
reply (to ``reply_to``) and moves the cursor: the firing, its reply and the cursor commit
together, so after a crash every matched event still fires (at least once: a firing whose
external effect, an email or an upload, went out just before the crash runs again; replies
carry the event id). Ingest never waits for a trigger. A ``$fail``/``$require`` stop is a
reply with ``ok: false``; any other error (the condition, the function, a refused call)
marks the trigger failing, and it stays at that event until the trigger or its function
is saved again.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from concurrent.futures import Executor
from typing import Any

from iotman.compute.json_values import loads
from iotman.core.clock import Clock, format_us
from iotman.core.trigger import TriggerDefinition
from iotman.core.workspace import Workspace
from iotman.engine.admin_service import TRIGGER_STATE
from iotman.engine.background import BackgroundLoop
from iotman.engine.definition_kinds import TRIGGER
from iotman.engine.function_service import FunctionService
from iotman.storage.ports import EventQuery, Store, StoredEvent

__all__ = ["TriggerRunner", "envelope_of"]

log = logging.getLogger("iotman.triggers")
CHUNK = 200
PER_TRANSACTION = 32
TRIGGERS_TTL_S = 1.0


def envelope_of(event: StoredEvent) -> dict[str, Any]:
    return {
        "payload": loads(event.payload),
        "metadata": loads(event.metadata),
        "received_at": format_us(event.received_at_us),
        "tags": loads(event.tags) if event.tags else {},
        "source": event.source,
        "id": event.id,
        "seq": event.seq,
    }


class TriggerRunner(BackgroundLoop):
    name = "iotman-triggers"

    def __init__(self, store: Store, functions: FunctionService, clock: Clock, executor: Executor) -> None:
        super().__init__()
        self._store = store
        self._functions = functions
        self._clock = clock
        self._executor = executor
        self._cached: list[tuple[Workspace, TriggerDefinition]] = []
        self._read_at = -TRIGGERS_TTL_S
        self._generation = 0
        self._seen = -1

    async def tick(self) -> bool:
        return bool(await asyncio.get_running_loop().run_in_executor(self._executor, self.run_once))

    def run_once(self) -> int:
        """Deal with what is waiting, up to a chunk per trigger; the number of events looked at."""
        seen = 0
        for ws, trigger in self._triggers():
            seen += self._run_trigger(ws, trigger)
        return seen

    def _triggers(self) -> list[tuple[Workspace, TriggerDefinition]]:
        """Every workspace's triggers, read again at most every ``TRIGGERS_TTL_S`` (or when told):
        the runner is woken by every commit, and most commits have no trigger to fire."""
        now = time.monotonic()
        if now - self._read_at >= TRIGGERS_TTL_S or self._generation != self._seen:
            generation = self._generation  # a change while reading is read again next round
            self._cached = [
                (ws, TriggerDefinition.model_validate(record.body))
                for ws in self._store.list_workspaces()
                for record in self._store.list_definitions(ws.id, TRIGGER.kind)
            ]
            self._read_at, self._seen = now, generation
        return self._cached

    def forget_triggers(self) -> None:
        """Triggers were saved or deleted (any thread): read them again on the next round."""
        self._generation += 1

    def _run_trigger(self, ws: Workspace, trigger: TriggerDefinition) -> int:
        state = self._store.get_setting(ws.id, TRIGGER_STATE + trigger.name)
        if state is None or state.get("failing") is not None:
            return 0
        query = EventQuery(ws.id, sources=(trigger.source,), after_seq=state["seq"], limit=CHUNK, descending=False)
        events = self._store.read_events(query)
        for first in range(0, len(events), PER_TRANSACTION):
            part = events[first : first + PER_TRANSACTION]
            # one write transaction for a run of firings, each in a savepoint of its own: a stop
            # still undoes only its own function, and the writer is held for one run at most
            kept = self._store.transaction(functools.partial(self._fire_run, ws, trigger, part))
            if self._functions.on_committed is not None:
                self._functions.on_committed(ws.id)  # replies and the functions' appends are in
            if not kept:
                break  # failing: it stays at the event that failed
        return len(events)

    def _fire_run(self, ws: Workspace, trigger: TriggerDefinition, events: list[StoredEvent]) -> bool:
        unfired: int | None = None
        for event in events:
            envelope = envelope_of(event)
            matched, error = self._functions.condition(ws, trigger, envelope)
            if error is None and not matched:
                unfired = event.seq
                continue
            if not self._functions.fire(ws, trigger, event, envelope, error, self._clock.now_us()):
                return False
            unfired = None
        if unfired is not None:
            self._functions.advance(ws, trigger, unfired, self._clock.now_us())
        return True
