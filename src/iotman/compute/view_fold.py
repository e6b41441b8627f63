"""A view compiled for folding (SPEC §4.1): keys, built-in and JSONata reducers, status.

``CompiledView`` is the ``ViewFold`` the store calls inside the append transaction.
Inputs are built as JSON text around the stored texts (payload, metadata, tags, the
current row), so nothing is parsed into Python objects on the way; the engine reads
only what the expression needs. Nothing here raises into the append: a key that is
null, missing or not a scalar skips the event (counted), a failing reducer leaves
the row as it was (counted, with the last error and the event's id).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import orjson

from iotman.compute.jsonata_engine import CompiledJsonata, EvalLimits, JsonataFailure, JsonataLimitExceeded
from iotman.core.clock import format_us
from iotman.core.view import BUILT_IN_REDUCERS, ViewDefinition
from iotman.storage.ports import FoldOutcome, StoredEvent

__all__ = ["CompiledView", "ViewStatus", "envelope_text"]

_MAX_KEY_CHARS = 512


@dataclass
class ViewStatus:
    """Counters shown with the view (GET .../views/{name}); kept in memory since start."""

    folded: int = 0
    skipped: int = 0
    failures: int = 0
    last_error: dict[str, Any] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def fail(self, event: StoredEvent, stage: str, exc: JsonataFailure) -> None:
        with self._lock:
            self.failures += 1
            self.last_error = {
                "stage": stage,
                "code": "jsonata_limit_exceeded" if isinstance(exc, JsonataLimitExceeded) else "jsonata_failed",
                "jsonata_code": exc.code,
                "message": exc.message,
                "event_id": event.id,
                "seq": event.seq,
                "at": format_us(event.received_at_us),
            }

    def to_json(self) -> dict[str, Any]:
        return {
            "folded": self.folded,
            "skipped": self.skipped,
            "failures": self.failures,
            "last_error": self.last_error,
        }


def envelope_text(event: StoredEvent) -> str:
    """``{payload, metadata, received_at, tags, source, id, seq}`` as JSON text."""
    return (
        f'{{"payload":{event.payload},"metadata":{event.metadata},'
        f'"received_at":"{format_us(event.received_at_us)}","tags":{event.tags or "{}"},'
        f'"source":{orjson.dumps(event.source).decode()},"id":"{event.id}","seq":{event.seq}}}'
    )


def key_text(result: str | None) -> str | None:
    """A key result as row-key text: strings as themselves, numbers and booleans as JSON."""
    if result is None or not result or result[0] in "{[n":  # undefined, object, array, null
        return None
    if result[0] == '"':
        key: str = orjson.loads(result)
    else:
        key = result
    return key if 0 < len(key) <= _MAX_KEY_CHARS else None


class CompiledView:
    def __init__(
        self,
        definition: ViewDefinition,
        key: CompiledJsonata,
        reducer: CompiledJsonata | None,
        init: CompiledJsonata | None,
        limits: EvalLimits,
        status: ViewStatus,
    ) -> None:
        self.definition = definition
        self._name = definition.name
        self.sources = None if definition.sources is None else frozenset(definition.sources)
        self._key = key
        self._reducer = reducer
        self._init = init
        self._builtin = definition.reducer if definition.reducer in BUILT_IN_REDUCERS else None
        self._limits = limits
        self.status = status

    @property
    def name(self) -> str:
        return self._name

    def renamed(self, name: str, status: ViewStatus) -> CompiledView:
        """The same view folding into the rows of ``name`` and counting into ``status`` (rebuilds)."""
        copy = CompiledView(self.definition, self._key, self._reducer, self._init, self._limits, status)
        copy._name = name
        return copy

    def applies_to(self, source: str) -> bool:
        return self.sources is None or source in self.sources

    def key(self, event: StoredEvent) -> str | None:
        try:
            result = self._key.evaluate_json(envelope_text(event), None, self._limits)
        except JsonataFailure as exc:
            self.status.fail(event, "key", exc)
            return None
        found = key_text(result)
        if found is None:
            self.status.skipped += 1
        return found

    def fold(self, prev: str | None, events: list[StoredEvent]) -> FoldOutcome:
        self.status.folded += len(events)
        last = events[-1]
        if self._builtin == "last":
            return FoldOutcome(last.payload, last.seq)
        if self._builtin == "first":
            return FoldOutcome(None if prev is not None else events[0].payload, events[0].seq)
        if self._builtin == "count":
            count = int(prev) if prev is not None and prev.isdigit() else 0
            return FoldOutcome(str(count + len(events)), last.seq)
        return self._reduce(prev, events)

    def _reduce(self, prev: str | None, events: list[StoredEvent]) -> FoldOutcome:
        assert self._reducer is not None
        value = prev
        if value is None:
            value = self._initial(events[0])
        changed_at: int | None = None
        for event in events:
            text = f'{{"prev":{value if value is not None else "null"},"event":{envelope_text(event)}}}'
            try:
                result = self._reducer.evaluate_json(text, None, self._limits)
            except JsonataFailure as exc:
                self.status.fail(event, "reducer", exc)
                continue
            if result is not None:
                value = result
                changed_at = event.seq
        if changed_at is None:
            return FoldOutcome(None, last_seq(events))
        return FoldOutcome(value, changed_at)

    def _initial(self, event: StoredEvent) -> str | None:
        if self._init is None:
            return None
        try:
            return self._init.evaluate_json(None, None, self._limits)
        except JsonataFailure as exc:
            self.status.fail(event, "init", exc)
            return None


def last_seq(events: list[StoredEvent]) -> int:
    return events[-1].seq
