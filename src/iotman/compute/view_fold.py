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
_CACHE_BYTES = 32 * 1024 * 1024


@dataclass
class ViewStatus:
    """Counters shown with the view (GET .../views/{name}); kept in memory since start."""

    folded: int = 0
    skipped: int = 0
    failures: int = 0
    last_error: dict[str, Any] | None = None
    broken: str | None = None  # why the stored definition does not compile (then it folds nothing)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def fail(self, event: StoredEvent, stage: str, exc: Exception) -> None:
        if isinstance(exc, JsonataFailure):
            code = "jsonata_limit_exceeded" if isinstance(exc, JsonataLimitExceeded) else "jsonata_failed"
            jsonata_code: str | None = exc.code
            message = exc.message
        else:  # not a JSONata error (a value the store cannot hold, an engine bug): still only this view's
            code, jsonata_code, message = "view_failed", None, f"{type(exc).__name__}: {exc}"
        with self._lock:
            self.failures += 1
            self.last_error = {
                "stage": stage,
                "code": code,
                "jsonata_code": jsonata_code,
                "message": message[:1000],
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
            "broken": self.broken,
        }


class _EnvelopeCache:
    """Envelopes of the events being folded, shared by the views of a batch.

    Keyed by the event object itself (held, and checked with ``is``), so an entry can
    only ever serve the very event it was built from: never another workspace's event
    with the same id, nor a test tool's sample. Bounded by the bytes of the texts it
    holds; when full it starts over (a batch's events are all that is needed).
    """

    __slots__ = ("_bytes", "_entries", "_limit", "_lock")

    def __init__(self, limit_bytes: int) -> None:
        self._entries: dict[int, tuple[StoredEvent, Any]] = {}
        self._bytes = 0
        self._limit = limit_bytes
        self._lock = threading.Lock()

    def get(self, event: StoredEvent) -> Any:
        found = self._entries.get(id(event))
        return found[1] if found is not None and found[0] is event else None

    def put(self, event: StoredEvent, value: Any, size: int) -> None:
        with self._lock:
            if self._bytes + size > self._limit:
                self._entries.clear()
                self._bytes = 0
            self._entries[id(event)] = (event, value)
            self._bytes += size


_TEXTS = _EnvelopeCache(_CACHE_BYTES)
_VALUES = _EnvelopeCache(_CACHE_BYTES)


def envelope_text(event: StoredEvent) -> str:
    """``{payload, metadata, received_at, tags, source, id, seq}`` as JSON text (built once an event)."""
    found: str | None = _TEXTS.get(event)
    if found is not None:
        return found
    text = (
        f'{{"payload":{event.payload},"metadata":{event.metadata},'
        f'"received_at":"{format_us(event.received_at_us)}","tags":{event.tags or "{}"},'
        f'"source":{_json_string(event.source)},"id":"{event.id}","seq":{event.seq}}}'
    )
    _TEXTS.put(event, text, len(text))
    return text


def envelope_value(event: StoredEvent) -> dict[str, Any]:
    """The envelope as Python values (parsed once an event, like ``envelope_text``)."""
    found: dict[str, Any] | None = _VALUES.get(event)
    if found is not None:
        return found
    value = {
        "payload": json_values.loads(event.payload),
        "metadata": json_values.loads(event.metadata),
        "received_at": format_us(event.received_at_us),
        "tags": json_values.loads(event.tags) if event.tags else {},
        "source": event.source,
        "id": event.id,
        "seq": event.seq,
    }
    # parsed values take several times their text: count them so
    _VALUES.put(event, value, 4 * (len(event.payload) + len(event.metadata) + len(event.tags or "")))
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
    """A key value as row-key text, exactly as ``key_text`` gives it for the engine's JSON."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return _checked_key(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        if value.is_integer() and abs(value) < 1e21:  # JSONata prints whole numbers without a fraction
            return str(int(value))
        return _checked_key(json_values.dumps(value))
    if isinstance(value, int):
        return _checked_key(str(value))
    return None


def _checked_key(key: str) -> str | None:
    # a NUL would be cut off by SQLite's JSON functions (two keys would share a row)
    return key if 0 < len(key) <= _MAX_KEY_CHARS and "\x00" not in key else None


def key_text(result: str | None) -> str | None:
    """A key result as row-key text: strings as themselves, numbers and booleans as JSON."""
    if result is None or not result or result[0] in "{[n":  # undefined, object, array, null
        return None
    if result[0] == '"':
        key: str = json_values.loads(result)
    else:
        key = result
    return _checked_key(key)


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
        try:
            return self._key_of(event)
        except Exception as exc:  # noqa: BLE001 - never into the append: counted on the view
            self.status.fail(event, "key", exc)
            return None

    def _key_of(self, event: StoredEvent) -> str | None:
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
        try:
            return self._fold(prev, events)
        except Exception as exc:  # noqa: BLE001 - never into the append: the row stays, counted
            self.status.fail(events[-1], "reducer", exc)
            return FoldOutcome(None, events[-1].seq)

    def _fold(self, prev: str | None, events: list[StoredEvent]) -> FoldOutcome:
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
