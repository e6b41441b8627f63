"""A view compiled for folding (SPEC §4.1): keys, built-in and JSONata reducers, status.

``CompiledView`` is the ``ViewFold`` the store calls inside the append transaction.
Inputs are built as JSON text around the stored texts (payload, metadata, tags, the
current row), so nothing is parsed into Python objects on the way; the engine reads
only what the expression needs. Nothing here raises into the append: a key that is
null, missing or not a scalar skips the event (counted), a failing reducer leaves
the row as it was (counted, with the last error and the event's id).
"""

from __future__ import annotations

import functools
import math
import re
import threading
from dataclasses import dataclass, field
from typing import Any

import orjson

from iotman.compute import json_values
from iotman.compute.jsonata_engine import CompiledJsonata, EvalLimits, JsonataFailure, JsonataLimitExceeded
from iotman.core.clock import format_us
from iotman.core.view import BUILT_IN_REDUCERS, ViewDefinition
from iotman.storage.ports import FoldOutcome, StoredEvent

__all__ = ["CompiledView", "ViewStatus", "envelope_text"]

_MAX_KEY_CHARS = 512
_ENVELOPES_KEPT = 50_000
_ENVELOPES: dict[tuple[str, int], str] = {}
_PARSED: dict[tuple[str, int], dict[str, Any]] = {}


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
    """``{payload, metadata, received_at, tags, source, id, seq}`` as JSON text.

    Every view of a batch asks for it, for its key and its reducer: the texts of the
    latest events are kept (keyed by id and seq; events without an id, the test
    tool's samples, are not kept).
    """
    cache_key = (event.id, event.seq)
    if event.id:
        found = _ENVELOPES.get(cache_key)
        if found is not None:
            return found
    text = (
        f'{{"payload":{event.payload},"metadata":{event.metadata},'
        f'"received_at":"{format_us(event.received_at_us)}","tags":{event.tags or "{}"},'
        f'"source":{_json_string(event.source)},"id":"{event.id}","seq":{event.seq}}}'
    )
    if event.id:
        if len(_ENVELOPES) >= _ENVELOPES_KEPT:
            _ENVELOPES.clear()
        _ENVELOPES[cache_key] = text
    return text


def envelope_value(event: StoredEvent) -> dict[str, Any]:
    """The envelope as Python values (parsed once per event, kept like ``envelope_text``)."""
    cache_key = (event.id, event.seq)
    if event.id:
        found = _PARSED.get(cache_key)
        if found is not None:
            return found
    value = {
        "payload": orjson.loads(event.payload),
        "metadata": orjson.loads(event.metadata),
        "received_at": format_us(event.received_at_us),
        "tags": orjson.loads(event.tags) if event.tags else {},
        "source": event.source,
        "id": event.id,
        "seq": event.seq,
    }
    if event.id:
        if len(_PARSED) >= _ENVELOPES_KEPT:
            _PARSED.clear()
        _PARSED[cache_key] = value
    return value


_PLAIN_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_ROOTS = frozenset({"payload", "metadata", "received_at", "tags", "source", "id", "seq"})


def plain_path(text: str) -> tuple[str, ...] | None:
    """The steps of a key that is a plain field path from the envelope (``payload.device_id``)."""
    stripped = text.strip()
    if not _PLAIN_PATH.fullmatch(stripped):
        return None
    steps = tuple(stripped.split("."))
    return steps if steps[0] in _ROOTS else None


_FALLBACK = object()


def walk_plain(value: Any, steps: tuple[str, ...]) -> Any:
    """The value at ``steps`` through objects only; ``_FALLBACK`` where JSONata would map over an array."""
    for step in steps:
        if isinstance(value, dict):
            value = value.get(step)
            if value is None:
                return None
        else:
            return _FALLBACK if isinstance(value, list) else None
    return _FALLBACK if isinstance(value, list) else value


@functools.lru_cache(maxsize=1024)
def _json_string(text: str) -> str:
    return orjson.dumps(text).decode()


def scalar_key(value: Any) -> str | None:
    """A key value as row-key text, as ``key_text`` gives for its JSON."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value if 0 < len(value) <= _MAX_KEY_CHARS else None
    if isinstance(value, int | float) and not (isinstance(value, float) and not math.isfinite(value)):
        return key_text(orjson.dumps(value).decode())
    return None


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
        self._key_steps = plain_path(definition.key)
        # set once a reducer hits a limit: from then on it runs with the GIL handed to other threads
        self._slow = False

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
        found: str | None = None
        value = _FALLBACK if self._key_steps is None else walk_plain(envelope_value(event), self._key_steps)
        if value is _FALLBACK:
            try:
                found = key_text(self._key.evaluate_json(envelope_text(event), None, self._limits))
            except JsonataFailure as exc:
                self.status.fail(event, "key", exc)
                return None
        else:
            found = scalar_key(value)
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
        """Each event over the running value; the row is written once, after the last."""
        assert self._reducer is not None
        text = prev if prev is not None else self._initial(events[0])
        value: Any = None if text is None else json_values.loads(text)
        changed_at: int | None = None
        for event in events:
            try:
                if self._slow:
                    step = self._reducer.evaluate_json(self._input_text(value, event), None, self._limits)
                    found, result = step is not None, None if step is None else json_values.loads(step)
                else:
                    found, result = self._quick(value, event)
            except JsonataLimitExceeded as exc:
                self._slow = True  # a long evaluation must not hold the GIL: hand it over from now on
                self.status.fail(event, "reducer", exc)
                continue
            except JsonataFailure as exc:
                self.status.fail(event, "reducer", exc)
                continue
            if found:
                value, changed_at = result, event.seq
        if changed_at is None:
            return FoldOutcome(None, last_seq(events))
        return FoldOutcome(json_values.dumps(value), changed_at)

    def _quick(self, value: Any, event: StoredEvent) -> tuple[bool, Any]:
        """(has a value, the value): the GIL-holding path, with null told from undefined when needed."""
        assert self._reducer is not None
        result = self._reducer.evaluate_quick({"prev": value, "event": envelope_value(event)}, self._limits)
        if result is not None:
            return True, result
        # null or undefined: the JSON path tells them apart (rare: reducers return state)
        return self._reducer.evaluate_json(self._input_text(value, event), None, self._limits) is not None, None

    @staticmethod
    def _input_text(value: Any, event: StoredEvent) -> str:
        return f'{{"prev":{json_values.dumps(value)},"event":{envelope_text(event)}}}'

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
