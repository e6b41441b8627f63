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
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

import orjson

from iotman.compute import json_values
from iotman.compute.jsonata_engine import (
    CompiledJsonata,
    EvalLimits,
    JsonataEngine,
    JsonataFailure,
    JsonataLimitExceeded,
)
from iotman.core.clock import format_us
from iotman.core.view import BUILT_IN_REDUCERS, ViewDefinition
from iotman.storage.ports import FoldBatch, FoldGroup, FoldOutcome, StoredEvent

__all__ = [
    "CompiledView",
    "ViewStatus",
    "batch_reducer_text",
    "compile_batch_reducer",
    "envelope_texts",
    "envelope_value",
]

_MAX_KEY_CHARS = 512


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


def _envelope_text(event: StoredEvent) -> str:
    return (
        f'{{"payload":{event.payload},"metadata":{event.metadata},'
        f'"received_at":"{format_us(event.received_at_us)}","tags":{event.tags or "{}"},'
        f'"source":{_json_string(event.source)},"id":"{event.id}","seq":{event.seq}}}'
    )


def envelope_texts(batch: FoldBatch) -> list[str]:
    """``{payload, metadata, received_at, tags, source, id, seq}`` of each event as JSON text,
    built around the stored texts once a batch (its views share them)."""
    found: list[str] | None = batch.shared.get("envelope_texts")
    if found is None:
        found = batch.shared["envelope_texts"] = [_envelope_text(event) for event in batch.events]
    return found


def envelope_value(batch: FoldBatch, position: int) -> dict[str, Any]:
    """The envelope of one event as Python values (parsed once a batch, when a view needs it)."""
    values: dict[int, dict[str, Any]] = batch.shared.setdefault("envelope_values", {})
    found = values.get(position)
    if found is None:
        event = batch.events[position]
        found = values[position] = {
            "payload": json_values.loads(event.payload),
            "metadata": json_values.loads(event.metadata),
            "received_at": format_us(event.received_at_us),
            "tags": json_values.loads(event.tags) if event.tags else {},
            "source": event.source,
            "id": event.id,
            "seq": event.seq,
        }
    return found


def _root_values(batch: FoldBatch, root: str) -> list[Any]:
    """One envelope field (``payload``, ``tags``…) of every event of the batch, parsed once a batch."""
    name = "root:" + root
    found: list[Any] | None = batch.shared.get(name)
    if found is None:
        events = batch.events
        if root == "payload":
            given = batch.payload_values
            if given is not None and len(given) == len(events):
                found = given  # the values the texts were serialised from: nothing to parse
            else:
                found = [json_values.loads(event.payload) for event in events]
        elif root == "metadata":
            found = [json_values.loads(event.metadata) for event in events]
        elif root == "tags":
            found = [json_values.loads(event.tags) if event.tags else {} for event in events]
        elif root == "received_at":
            found = [format_us(event.received_at_us) for event in events]
        else:  # source, id, seq
            found = [getattr(event, root) for event in events]
        batch.shared[name] = found
    return found


# The reducer folded over every key of a batch in one evaluation: the engine runs the
# loop (with the GIL released) instead of Python calling it once an event. The reducer
# sees exactly the input it sees alone ({prev, event} as its context); an undefined
# result (or a function, which JSON cannot hold) leaves the running value as it was.
# Where the wrapping could change what the reducer gives, the batch form is not used:
# statically, the root ($$), parent steps (%), $eval (which reaches both), the wrapper's
# own names, `[]` (keep-array, undone by the wrapper's path step) and array constructors
# as path steps (`.[ ]`, whose marked arrays JSON would flatten between events); at run
# time, a result that is an array stops the evaluation ($error), and the batch is folded
# one event at a time (an array carried inside the engine keeps markers that a JSON
# round trip between two single evaluations drops).
_BATCH_REDUCER = (
    "$map(g, function($__iotman_g) {{ $reduce($__iotman_g.e, function($__iotman_a, $__iotman_e) {{ ("
    ' $__iotman_r := {{"prev": $__iotman_a.v, "event": $__iotman_e}}.(\n{reducer}\n);'
    ' $type($__iotman_r) = "array" ? $error("__iotman_array_result") :'
    ' ($exists($__iotman_r) and $type($__iotman_r) != "function")'
    ' ? {{"v": $__iotman_r, "c": $__iotman_e.seq}} : $__iotman_a'
    ' ) }}, {{"v": $__iotman_g.p}}) }})'
)
# Depth the wrapper adds before the reducer runs: measured 5 to 7 (jlens counts depth in
# steps the reducer's own recursion does not match one for one), so 4 keeps a batch never
# deeper-reaching than one event alone; a reducer near the cap folds one event at a time.
_BATCH_DEPTH = 4
_UNBATCHABLE = re.compile(r"\$\$|%|\$eval\b|__iotman|\[\s*\]|\.\s*\[")


def compile_batch_reducer(engine: JsonataEngine, reducer: str) -> CompiledJsonata | None:
    """The batch form of a reducer, for the engine that gains from it: jlens runs the whole
    loop natively with the GIL released; a Python engine would only add the wrapping."""
    text = batch_reducer_text(reducer)
    if text is None or engine.name != "jlens":
        return None
    try:
        return engine.compile(text)
    except JsonataFailure:
        return None


Read = Any  # what an expression reads of a value: True (all of it) or {field: Read}


def _event_read(reducer: CompiledJsonata | None) -> Read:
    """What the reducer reads of ``event`` (True: all of it, or when the engine cannot tell)."""
    reads = getattr(reducer, "reads", None)
    found = reads() if callable(reads) else True
    if not isinstance(found, dict):
        return True
    event = found.get("event", {})  # absent: the reducer reads no field of the event
    return event if isinstance(event, dict) or event is True else True


def _trim(value: Any, read: Read) -> Any:
    """``value`` cut down to ``read``: the fields it lists (of a list, of each item), all of it for True."""
    if read is True:
        return value
    if isinstance(value, dict):
        return {name: _trim(value[name], inner) for name, inner in read.items() if name in value}
    if isinstance(value, list):
        return [_trim(item, read) for item in value]
    return value


def batch_reducer_text(reducer: str) -> str | None:
    """The reducer wrapped to fold a whole batch in one evaluation, or None where it must run alone."""
    if _UNBATCHABLE.search(reducer):
        return None
    return _BATCH_REDUCER.format(reducer=reducer)


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


_EXACT = 2**53  # whole numbers up to here are the same as a double and as text


def engine_numbers(value: Any) -> Any:
    """Numbers parsed from the engine's JSON text as the engine gives them as Python values:
    JSONata numbers are doubles, and jlens gives a whole one under 1e21 as the ``int`` of
    its exact value (``1795428000123456768``), where its JSON text has the shortest digits
    (``1795428000123456800``, or ``3e+19`` read back as a float). So a row's text is the same
    whichever way its value was computed."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(float(value)) if abs(value) > _EXACT else value
    if isinstance(value, float):
        return int(value) if value.is_integer() and abs(value) < 1e21 else value
    if isinstance(value, list):
        return [engine_numbers(item) for item in value]
    if isinstance(value, dict):
        return {name: engine_numbers(item) for name, item in value.items()}
    return value


def _number_text(value: float) -> str:
    """A number as JSONata writes it (JavaScript's shortest form): ``18446744073709552000``,
    ``0.000001``, ``1e-7``, ``1e+21``."""
    if value == 0:
        return "0"
    shortest = repr(value)  # the shortest digits that read back as this double
    if 1e-6 <= abs(value) < 1e21:
        text = format(Decimal(shortest), "f")
        return text.rstrip("0").rstrip(".") if "." in text else text
    mantissa, _, exponent = shortest.partition("e")
    return f"{mantissa}e{'+' if int(exponent) > 0 else '-'}{abs(int(exponent))}"


def scalar_key(value: Any) -> str | None:
    """A key value as row-key text, exactly as ``key_text`` gives it for the engine's JSON."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return _checked_key(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return _checked_key(_number_text(value))  # as the key expression through the engine gives it
    if isinstance(value, int):
        # a JSONata number is a double: past 2**53 an integer is the nearest one, as the engine reads it
        return _checked_key(str(value) if abs(value) <= _EXACT else _number_text(float(value)))
    return None


def _checked_key(key: str) -> str | None:
    # a NUL would be cut off by SQLite's JSON functions (two keys would share a row); a lone
    # surrogate is not text the store can hold
    if not 0 < len(key) <= _MAX_KEY_CHARS or "\x00" in key:
        return None
    return key if json_values.encodable(key) else None


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
        batch_reducer: CompiledJsonata | None = None,
    ) -> None:
        self.definition = definition
        self._name = definition.name
        self.sources = None if definition.sources is None else frozenset(definition.sources)
        self._key = key
        self._reducer = reducer
        self._init = init
        self._batch_reducer = batch_reducer
        self._builtin = definition.reducer if definition.reducer in BUILT_IN_REDUCERS else None
        self._limits = limits
        self.status = status
        self._key_steps = plain_path(definition.key)
        self._event_read = _event_read(reducer)
        self._batching = True  # off for good once a batch hits a limit or the reducer gives an array
        # set once a reducer hits a limit: from then on it runs with the GIL handed to other threads
        self._slow = False

    @property
    def name(self) -> str:
        return self._name

    def renamed(self, name: str, status: ViewStatus) -> CompiledView:
        """The same view folding into the rows of ``name`` and counting into ``status`` (rebuilds)."""
        copy = CompiledView(
            self.definition, self._key, self._reducer, self._init, self._limits, status, self._batch_reducer
        )
        copy._name = name
        return copy

    def applies_to(self, source: str) -> bool:
        return self.sources is None or source in self.sources

    # keys ------------------------------------------------------------------------------
    def keys(self, batch: FoldBatch) -> list[str | None]:
        if self._key_steps is None:
            return [self._engine_key(batch, position) for position in range(len(batch.events))]
        rest = self._key_steps[1:]
        step = rest[0] if len(rest) == 1 else None
        found: list[str | None] = []
        for position, root in enumerate(_root_values(batch, self._key_steps[0])):
            # the common key, one field holding a short string (payload.device_id), without calls
            if step is not None and type(root) is dict:
                value = root.get(step)
                if type(value) is str and 0 < len(value) <= _MAX_KEY_CHARS and value.isascii() and "\x00" not in value:
                    found.append(value)
                    continue
            found.append(self._plain_key(batch, position, root, rest))
        return found

    def _plain_key(self, batch: FoldBatch, position: int, root: Any, rest: tuple[str, ...]) -> str | None:
        try:
            value = walk_plain(root, rest)
            if value is _FALLBACK:
                return self._engine_key(batch, position)
            key = scalar_key(value)
        except Exception as exc:  # noqa: BLE001 - never into the append: counted on the view
            self.status.fail(batch.events[position], "key", exc)
            return None
        if key is None:
            self.status.skipped += 1
        return key

    def _engine_key(self, batch: FoldBatch, position: int) -> str | None:
        try:
            key = key_text(self._key.evaluate_json(envelope_texts(batch)[position], None, self._limits))
        except Exception as exc:  # noqa: BLE001 - as above
            self.status.fail(batch.events[position], "key", exc)
            return None
        if key is None:
            self.status.skipped += 1
        return key

    # folds -----------------------------------------------------------------------------
    def fold(self, batch: FoldBatch, groups: list[FoldGroup]) -> list[FoldOutcome]:
        self.status.folded += sum(len(group.events) for group in groups)
        events = batch.events
        if self._builtin == "last":
            return [FoldOutcome(events[g.events[-1]].payload, events[g.events[-1]].seq) for g in groups]
        if self._builtin == "first":
            return [
                FoldOutcome(None if g.prev is not None else events[g.events[0]].payload, events[g.events[0]].seq)
                for g in groups
            ]
        if self._builtin == "count":
            return [
                FoldOutcome(
                    str((int(g.prev) if g.prev is not None and g.prev.isdigit() else 0) + len(g.events)),
                    events[g.events[-1]].seq,
                )
                for g in groups
            ]
        starts = [g.prev if g.prev is not None else self._initial(events[g.events[0]]) for g in groups]
        if self._batch_reducer is not None and self._batching and not self._slow:
            try:
                return self._reduce_batch(batch, groups, starts)
            except JsonataLimitExceeded:
                # a batch that hits a limit would pay for it every time before folding one by one
                self._batching = False
            except JsonataFailure as exc:
                if "__iotman_array_result" in exc.message:
                    self._batching = False  # this reducer gives arrays: the batch form cannot carry them
            except Exception:  # noqa: BLE001, S110 - one event failed: fold one by one to tell which
                pass
        return [self._reduce_group(batch, group, start) for group, start in zip(groups, starts, strict=True)]

    def _reduce_batch(self, batch: FoldBatch, groups: list[FoldGroup], starts: list[str | None]) -> list[FoldOutcome]:
        """Every key of the batch in one evaluation; raises if any event fails (then one by one)."""
        assert self._batch_reducer is not None
        envelopes = self._batch_envelopes(batch)
        document = {
            "g": [
                {"p": None if start is None else orjson.Fragment(start), "e": [envelopes[i] for i in group.events]}
                for group, start in zip(groups, starts, strict=True)
            ]
        }
        # the caps of one evaluation, for the whole batch: if the batch stays within them, so
        # does each event alone (the time, the steps and the depth it takes are at most the
        # batch's); one that does not folds one event at a time, which finds the event
        limits = self._limits
        capped = replace(limits, max_depth=None if limits.max_depth is None else limits.max_depth + _BATCH_DEPTH)
        result = self._batch_reducer.evaluate_json(orjson.dumps(document).decode(), None, capped)
        found = engine_numbers(json_values.loads(result)) if result is not None else None
        if isinstance(found, dict):
            found = [found]  # one key: the engine gives the one item, not an array of it
        if not isinstance(found, list) or len(found) != len(groups):
            raise ValueError("the batch fold did not give one value a key")
        outcomes = []
        for group, item in zip(groups, found, strict=True):
            changed_at = item.get("c")
            if changed_at is None:
                outcomes.append(FoldOutcome(None, batch.events[group.events[-1]].seq))
            else:
                outcomes.append(FoldOutcome(json_values.dumps(item.get("v")), changed_at))
        return outcomes

    def _batch_envelopes(self, batch: FoldBatch) -> list[Any]:
        """Each event's envelope cut down to what the reducer reads (and ``seq``, which the
        wrapper reads): the engine copies the envelope into the reducer's context on every
        step, so a smaller one is a faster step. The whole text where it reads the event whole."""
        read = self._event_read
        if read is True:
            return [orjson.Fragment(text) for text in envelope_texts(batch)]
        events = batch.events
        columns: list[tuple[str, list[Any], Read]] = []
        for root, root_read in read.items():
            if root in ("payload", "metadata", "tags", "received_at", "source", "id"):
                columns.append((root, _root_values(batch, root), root_read))
        return [
            {"seq": event.seq, **{root: _trim(values[i], root_read) for root, values, root_read in columns}}
            for i, event in enumerate(events)
        ]

    def _reduce_group(self, batch: FoldBatch, group: FoldGroup, start: str | None) -> FoldOutcome:
        """Each event of one key over the running value, one evaluation an event."""
        try:
            return self._reduce_events(batch, group, start)
        except Exception as exc:  # noqa: BLE001 - never into the append: the row stays, counted
            self.status.fail(batch.events[group.events[-1]], "reducer", exc)
            return FoldOutcome(None, batch.events[group.events[-1]].seq)

    def _reduce_events(self, batch: FoldBatch, group: FoldGroup, start: str | None) -> FoldOutcome:
        assert self._reducer is not None
        value: Any = None if start is None else json_values.loads(start)
        changed_at: int | None = None
        for position in group.events:
            event = batch.events[position]
            try:
                if self._slow:
                    step = self._reducer.evaluate_json(self._input_text(batch, value, position), None, self._limits)
                    found = step is not None
                    result = None if step is None else engine_numbers(json_values.loads(step))
                else:
                    found, result = self._quick(batch, value, position)
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
            return FoldOutcome(None, batch.events[group.events[-1]].seq)
        return FoldOutcome(json_values.dumps(value), changed_at)

    def _quick(self, batch: FoldBatch, value: Any, position: int) -> tuple[bool, Any]:
        """(has a value, the value): the GIL-holding path, with null told from undefined when needed."""
        assert self._reducer is not None
        result = self._reducer.evaluate_quick({"prev": value, "event": envelope_value(batch, position)}, self._limits)
        if result is not None:
            return True, result
        # null or undefined: the JSON path tells them apart (rare: reducers return state)
        text = self._input_text(batch, value, position)
        return self._reducer.evaluate_json(text, None, self._limits) is not None, None

    @staticmethod
    def _input_text(batch: FoldBatch, value: Any, position: int) -> str:
        return f'{{"prev":{json_values.dumps(value)},"event":{envelope_texts(batch)[position]}}}'

    def _initial(self, event: StoredEvent) -> str | None:
        if self._init is None:
            return None
        try:
            return self._init.evaluate_json(None, None, self._limits)
        except JsonataFailure as exc:
            self.status.fail(event, "init", exc)
            return None
