"""The output constructor language (SPEC §3.2).

An object or array literal whose leaves are JSONPath queries over the payload,
metadata variables (``$received_at``, ``$tags.device_id``, …) or JSON literals:

    {ts: $received_at, v: $.value, dev: $tags.device_id, hot?: $.alarms[?@.level > 2]}

- A singular query (names and indexes only, decided from its parse) gives its value,
  or ``null`` when it selects nothing; ``strict $.x`` makes "nothing" an error for
  that event (the event is left out of the read and counted on the output).
- Any other query gives an array (``[]`` when empty); inside an array literal its
  nodes are spliced in.
- ``key?: …`` drops the member when its value is null.
- Duplicate keys and unknown ``$names`` are refused when the output is saved, with the
  position of the problem.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from iotman.errors import DefinitionInvalid
from iotman.process.jsonpath_query import MISSING, Query, caret_excerpt, compile_query

__all__ = [
    "VARIABLES",
    "Constructor",
    "EventView",
    "Field",
    "StrictMissing",
    "compile_constructor",
]

VARIABLES = frozenset(
    {"received_at", "source_ip", "auth_method", "oauth2_client_id", "ingest_context", "id", "seq", "source", "tags"}
)
_IDENT_START = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
_IDENT = _IDENT_START | frozenset("0123456789")
_CLOSERS = {"[": "]", "(": ")"}


class StrictMissing(Exception):
    """A ``strict`` query selected nothing: the event cannot be rendered."""


class EventView:
    """What a constructor sees of one event; metadata and tags are parsed only when used."""

    __slots__ = ("_metadata", "_tags", "id", "metadata_text", "payload", "received_at", "seq", "source", "tags_text")

    def __init__(
        self,
        payload: Any,
        *,
        seq: int = 0,
        id: str = "",
        source: str = "",
        received_at: str = "",
        metadata_text: str | None = None,
        tags_text: str | None = None,
        metadata: dict[str, Any] | None = None,
        tags: dict[str, Any] | None = None,
    ) -> None:
        self.payload = payload
        self.seq = seq
        self.id = id
        self.source = source
        self.received_at = received_at
        self.metadata_text = metadata_text
        self.tags_text = tags_text
        self._metadata = metadata
        self._tags = tags

    def metadata(self) -> dict[str, Any]:
        if self._metadata is None:
            import orjson

            self._metadata = orjson.loads(self.metadata_text) if self.metadata_text else {}
            self._metadata.setdefault("received_at", self.received_at)
        return self._metadata

    def tags(self) -> dict[str, Any]:
        if self._tags is None:
            import orjson

            self._tags = orjson.loads(self.tags_text) if self.tags_text else {}
        return self._tags

    def variable(self, name: str) -> Any:
        if name == "received_at":
            return self.received_at
        if name == "seq":
            return self.seq
        if name == "id":
            return self.id
        if name == "source":
            return self.source
        if name == "tags":
            return self.tags()
        return self.metadata().get(name)


Evaluate = Callable[[EventView], Any]


@dataclass(frozen=True, slots=True)
class Field:
    """A top-level member of an object constructor (aggregation names these)."""

    name: str
    query: Query | None
    variable: str | None

    @property
    def payload_steps(self) -> tuple[str | int, ...] | None:
        """The steps of a singular payload query (aggregations run it in SQL), else None."""
        if self.variable is None and self.query is not None and self.query.steps is not None:
            return self.query.steps
        return None


@dataclass(frozen=True, slots=True)
class Constructor:
    text: str
    evaluate: Evaluate
    fields: tuple[Field, ...]

    def render(self, event: EventView) -> Any:
        return self.evaluate(event)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.fields: list[Field] = []

    # errors ----------------------------------------------------------------------------
    def error(self, message: str, position: int | None = None) -> DefinitionInvalid:
        at = self.pos if position is None else position
        excerpt = caret_excerpt(self.text, at)
        return DefinitionInvalid(
            f"constructor: {message} at position {at}\n{excerpt}",
            code="invalid_constructor",
            field="constructor",
            position=at,
            details={"excerpt": excerpt},
        )

    # scanning --------------------------------------------------------------------------
    def skip(self) -> None:
        text = self.text
        while self.pos < len(text) and text[self.pos] in " \t\r\n":
            self.pos += 1

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def expect(self, char: str) -> None:
        self.skip()
        if self.peek() != char:
            found = repr(self.peek()) if self.peek() else "the end"
            raise self.error(f"expected {char!r}, found {found}")
        self.pos += 1

    # grammar ---------------------------------------------------------------------------
    def parse(self) -> Evaluate:
        self.skip()
        if self.peek() not in ("{", "["):
            raise self.error("a constructor is an object {…} or an array […]")
        node = self.value(top=True)
        self.skip()
        if self.pos != len(self.text):
            raise self.error("unexpected text after the constructor")
        return node[0]

    def value(self, top: bool = False) -> tuple[Evaluate, bool]:
        """An evaluator and whether it spreads inside arrays (non-singular queries)."""
        self.skip()
        char = self.peek()
        if char == "{":
            return self.obj(top), False
        if char == "[":
            return self.array(), False
        if char in ('"', "-") or char.isdigit():
            return self.literal(), False
        if self.text.startswith("strict", self.pos) and not self._ident_continues(self.pos + 6):
            self.pos += 6
            self.skip()
            if self.peek() != "$":
                raise self.error("strict must be followed by a query ($…)")
            return self.query(strict=True)
        if char == "$":
            return self.query(strict=False)
        for word, literal in (("true", True), ("false", False), ("null", None)):
            if self.text.startswith(word, self.pos) and not self._ident_continues(self.pos + len(word)):
                self.pos += len(word)
                return (lambda event, v=literal: v), False
        if char == "@":
            raise self.error("a constructor query starts with $ (the payload), not @")
        raise self.error("expected an object, array, JSON literal or a query starting with $")

    def _ident_continues(self, index: int) -> bool:
        return index < len(self.text) and self.text[index] in _IDENT

    def literal(self) -> Evaluate:
        import json

        decoder = json.JSONDecoder()
        try:
            value, end = decoder.raw_decode(self.text, self.pos)
        except json.JSONDecodeError as exc:
            raise self.error(f"bad JSON literal: {exc.msg}", exc.pos) from None
        self.pos = end
        return lambda event: value

    def key(self) -> str:
        self.skip()
        char = self.peek()
        if char == '"':
            import json

            try:
                name, end = json.JSONDecoder().raw_decode(self.text, self.pos)
            except json.JSONDecodeError as exc:
                raise self.error(f"bad key: {exc.msg}", exc.pos) from None
            if not isinstance(name, str):
                raise self.error("a key is a name or a string")
            self.pos = end
            return name
        if char not in _IDENT_START:
            raise self.error("expected a member name")
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] in _IDENT:
            self.pos += 1
        return self.text[start : self.pos]

    def obj(self, top: bool) -> Evaluate:
        self.expect("{")
        members: list[tuple[str, bool, Evaluate]] = []
        seen: set[str] = set()
        self.skip()
        if self.peek() == "}":
            self.pos += 1
            return lambda event: {}
        while True:
            key_at = self.pos
            name = self.key()
            if name in seen:
                raise self.error(f"duplicate key {name!r}", key_at)
            seen.add(name)
            self.skip()
            optional = False
            if self.peek() == "?":
                optional = True
                self.pos += 1
            self.expect(":")
            before = len(self.fields)
            evaluate, _ = self.value()
            if top and len(self.fields) == before + 1:
                found = self.fields.pop()
                self.fields.append(Field(name, found.query, found.variable))
            else:
                del self.fields[before:]
            members.append((name, optional, evaluate))
            self.skip()
            if self.peek() == ",":
                self.pos += 1
                self.skip()
                if self.peek() == "}":
                    self.pos += 1
                    break
                continue
            self.expect("}")
            break
        frozen = tuple(members)

        def build(event: EventView) -> dict[str, Any]:
            out: dict[str, Any] = {}
            for name, optional, evaluate in frozen:
                value = evaluate(event)
                if optional and value is None:
                    continue
                out[name] = value
            return out

        return build

    def array(self) -> Evaluate:
        self.expect("[")
        items: list[tuple[Evaluate, bool]] = []
        self.skip()
        if self.peek() == "]":
            self.pos += 1
            return lambda event: []
        while True:
            before = len(self.fields)
            items.append(self.value())
            del self.fields[before:]
            self.skip()
            if self.peek() == ",":
                self.pos += 1
                self.skip()
                if self.peek() == "]":
                    self.pos += 1
                    break
                continue
            self.expect("]")
            break
        frozen = tuple(items)

        def build(event: EventView) -> list[Any]:
            out: list[Any] = []
            for evaluate, spread in frozen:
                value = evaluate(event)
                if spread:
                    out.extend(value)
                else:
                    out.append(value)
            return out

        return build

    def _query_end(self, start: int) -> int:
        """Where a query ends: a , } or ] outside brackets, parentheses and strings."""
        text = self.text
        stack: list[str] = []
        i = start
        quote = ""
        while i < len(text):
            char = text[i]
            if quote:
                if char == "\\":
                    i += 2
                    continue
                if char == quote:
                    quote = ""
            elif char in ("'", '"'):
                quote = char
            elif char in _CLOSERS:
                stack.append(_CLOSERS[char])
            elif stack and char == stack[-1]:
                stack.pop()
            elif not stack and char in ",}]":
                break
            i += 1
        if quote:
            raise self.error("unterminated string in query", start)
        return i

    def query(self, strict: bool) -> tuple[Evaluate, bool]:
        start = self.pos
        end = self._query_end(start)
        text = self.text[start:end].rstrip()
        self.pos = start + len(text)
        variable: str | None = None
        if len(text) > 1 and text[1] in _IDENT_START:
            name_end = 1
            while name_end < len(text) and text[name_end] in _IDENT:
                name_end += 1
            variable = text[1:name_end]
            if variable not in VARIABLES:
                raise self.error(
                    f"unknown variable ${variable}; known: {', '.join('$' + v for v in sorted(VARIABLES))}", start
                )
            rest = text[name_end:]
            offset = start + name_end - 1
            query = compile_query("$" + rest, "constructor", offset=offset, whole=self.text) if rest else None
        else:
            query = compile_query(text, "constructor", offset=start, whole=self.text)
        self.fields.append(Field("", query, variable))
        return _evaluator(query, variable, strict, text), not (query is None or query.singular)


def _evaluator(query: Query | None, variable: str | None, strict: bool, text: str) -> Evaluate:
    if variable is not None:
        name = variable
        if query is None:
            return lambda event: event.variable(name)
        source: Callable[[EventView], Any] = lambda event: event.variable(name)  # noqa: E731
    else:
        source = lambda event: event.payload  # noqa: E731
    assert query is not None
    if query.steps is None:
        return lambda event: query.find(source(event))
    steps_query = query

    def singular(event: EventView) -> Any:
        value = steps_query.first(source(event))
        if value is MISSING:
            if strict:
                raise StrictMissing(f"strict {text} selected nothing")
            return None
        return value

    return singular


def compile_constructor(text: str) -> Constructor:
    if not isinstance(text, str) or not text.strip():
        raise DefinitionInvalid("constructor is empty", code="invalid_constructor", field="constructor")
    parser = _Parser(text)
    evaluate = parser.parse()
    return Constructor(text, evaluate, tuple(f for f in parser.fields if f.name))
