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

import orjson

from iotman.errors import DefinitionInvalid
from iotman.process.jsonpath_query import MISSING, Query, caret_excerpt, compile_query
from iotman.storage.ports import RenderSpec

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


@dataclass(frozen=True, slots=True)
class Lit:
    value: Any


@dataclass(frozen=True, slots=True)
class Q:
    query: Query | None  # None: the whole variable
    variable: str | None  # None: the payload
    strict: bool
    text: str


@dataclass(frozen=True, slots=True)
class Obj:
    members: tuple[tuple[str, bool, Node], ...]  # (key, optional, value)


@dataclass(frozen=True, slots=True)
class Arr:
    items: tuple[tuple[Node, bool], ...]  # (value, spread)


Node = Lit | Q | Obj | Arr
Render = Callable[..., Any]


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
    render_row: Render
    """``(payload, seq, id, source, received_at, metadata, metadata_text, tags, tags_text) -> value``:
    ``received_at`` is RFC 3339 text or microseconds; metadata and tags are dicts, or None
    to be parsed from their texts only if the constructor uses them."""
    fields: tuple[Field, ...]
    spec: RenderSpec | None = None
    """How the store can render this constructor itself (None: only the Python renderer can)."""

    def render(self, event: EventView) -> Any:
        return self.render_row(
            event.payload,
            event.seq,
            event.id,
            event.source,
            event.received_at,
            event._metadata,
            event.metadata_text,
            event._tags,
            event.tags_text,
        )


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
    def parse(self) -> Node:
        self.skip()
        if self.peek() not in ("{", "["):
            raise self.error("a constructor is an object {…} or an array […]")
        node = self.value(top=True)
        self.skip()
        if self.pos != len(self.text):
            raise self.error("unexpected text after the constructor")
        return node[0]

    def value(self, top: bool = False) -> tuple[Node, bool]:
        """A node and whether it spreads inside arrays (non-singular queries)."""
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
                return Lit(literal), False
        if char == "@":
            raise self.error("a constructor query starts with $ (the payload), not @")
        raise self.error("expected an object, array, JSON literal or a query starting with $")

    def _ident_continues(self, index: int) -> bool:
        return index < len(self.text) and self.text[index] in _IDENT

    def literal(self) -> Node:
        import json

        decoder = json.JSONDecoder()
        try:
            value, end = decoder.raw_decode(self.text, self.pos)
        except json.JSONDecodeError as exc:
            raise self.error(f"bad JSON literal: {exc.msg}", exc.pos) from None
        self.pos = end
        return Lit(value)

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

    def obj(self, top: bool) -> Node:
        self.expect("{")
        members: list[tuple[str, bool, Node]] = []
        seen: set[str] = set()
        self.skip()
        if self.peek() == "}":
            self.pos += 1
            return Obj(())
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
            node, _ = self.value()
            if top and len(self.fields) == before + 1:
                found = self.fields.pop()
                self.fields.append(Field(name, found.query, found.variable))
            else:
                del self.fields[before:]
            members.append((name, optional, node))
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
        return Obj(tuple(members))

    def array(self) -> Node:
        self.expect("[")
        items: list[tuple[Node, bool]] = []
        self.skip()
        if self.peek() == "]":
            self.pos += 1
            return Arr(())
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
        return Arr(tuple(items))

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

    def query(self, strict: bool) -> tuple[Node, bool]:
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
        return Q(query, variable, strict, text), not (query is None or query.singular)


class _Generator:
    """Writes a constructor out as one Python function (the read hot path).

    Only parsed names, indexes and JSON literals appear in the source, as ``repr``
    literals; queries the generator cannot inline are called through the namespace.
    """

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.namespace: dict[str, Any] = {"MISSING": MISSING, "_Strict": StrictMissing}
        self.count = 0
        self.uses_tags = self.uses_meta = self.uses_time = False

    def temp(self) -> str:
        self.count += 1
        return f"t{self.count}"

    def constant(self, value: Any) -> str:
        name = f"_c{len(self.namespace)}"
        self.namespace[name] = value
        return name

    def doc(self, variable: str | None) -> str:
        """The expression of what a query reads."""
        if variable is None:
            return "payload"
        if variable == "tags":
            self.uses_tags = True
            return "tags"
        if variable == "received_at":
            self.uses_time = True
            return "ra"
        if variable in ("seq", "source"):
            return variable
        if variable == "id":
            return "id_"
        self.uses_meta = True
        return f"meta.get({variable!r})"

    def emit(self, node: Node, indent: str) -> str:
        out = self.temp()
        add = self.lines.append
        if isinstance(node, Lit):
            value = node.value
            add(
                f"{indent}{out} = {value!r}"
                if isinstance(value, (str, int, float, bool, type(None)))
                else f"{indent}{out} = {self.constant(value)}"
            )
        elif isinstance(node, Obj):
            add(f"{indent}{out} = {{}}")
            for key, optional, child in node.members:
                value = self.emit(child, indent)
                if optional:
                    add(f"{indent}if {value} is not None: {out}[{key!r}] = {value}")
                else:
                    add(f"{indent}{out}[{key!r}] = {value}")
        elif isinstance(node, Arr):
            add(f"{indent}{out} = []")
            for child, spread in node.items:
                value = self.emit(child, indent)
                add(f"{indent}{out}.{'extend' if spread else 'append'}({value})")
        else:
            doc = self.doc(node.variable)
            query = node.query
            if query is None:
                add(f"{indent}{out} = {doc}")
            elif query.steps is None:
                add(f"{indent}{out} = {self.constant(query)}.find({doc})")
            else:
                add(f"{indent}{out} = {doc}")
                for step in query.steps:
                    if isinstance(step, str):
                        add(f"{indent}{out} = {out}.get({step!r}, MISSING) if type({out}) is dict else MISSING")
                    else:
                        bound = -step - 1 if step < 0 else step
                        guard = f"type({out}) is list and {bound} < len({out})"
                        add(f"{indent}{out} = {out}[{step!r}] if {guard} else MISSING")
                if node.strict:
                    message = self.constant(f"strict {node.text} selected nothing")
                    add(f"{indent}if {out} is MISSING: raise _Strict({message})")
                else:
                    add(f"{indent}if {out} is MISSING: {out} = None")
        return out

    def build(self, root: Node) -> Render:
        body_lines = self.lines
        result = self.emit(root, "    ")
        head = ["def render(payload, seq, id_, source, received_at, meta, meta_text, tags, tags_text):"]
        if self.uses_tags:
            head.append("    if tags is None: tags = _loads(tags_text) if tags_text else {}")
        if self.uses_meta:
            head.append("    if meta is None: meta = _loads(meta_text) if meta_text else {}")
        if self.uses_time:
            head.append("    ra = received_at if type(received_at) is str else _format_time(received_at)")
        self.namespace["_loads"] = _loads
        self.namespace["_format_time"] = _format_time
        code = compile("\n".join([*head, *body_lines, f"    return {result}"]), "<constructor>", "exec")
        exec(code, self.namespace)  # noqa: S102 - generated from parsed literals only (see class doc)
        render: Render = self.namespace["render"]
        return render


def _loads(text: str) -> Any:
    import orjson

    return orjson.loads(text)


class _TimeText:
    """RFC 3339 text of a received_at in microseconds; strftime once per second."""

    def __init__(self) -> None:
        # one tuple, replaced whole, so threads never see a second with another's prefix
        self.cached: tuple[int, str] = (-1, "")

    def __call__(self, us: int) -> str:
        second, micros = divmod(us, 1_000_000)
        cached = self.cached
        if cached[0] != second:
            from datetime import UTC, datetime

            cached = (second, datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S"))
            self.cached = cached
        return f"{cached[1]}.{micros:06d}Z"


_format_time = _TimeText()


_COLUMN_VARIABLES = frozenset({"seq", "id", "source", "received_at"})


def render_spec(node: Node) -> RenderSpec | None:
    """The store-side rendering of a constructor, when it has one.

    Constructors with non-singular queries, ``strict`` or optional members (``key?:``)
    keep the Python renderer: their results depend on logic a JSON SQL expression
    does not express.
    """
    if isinstance(node, Lit):
        return ("literal", orjson.dumps(node.value).decode())
    if isinstance(node, Obj):
        members = []
        for key, optional, child in node.members:
            spec = None if optional else render_spec(child)
            if spec is None:
                return None
            members.append((key, spec))
        return ("object", tuple(members))
    if isinstance(node, Arr):
        items = []
        for child, spread in node.items:
            spec = None if spread else render_spec(child)
            if spec is None:
                return None
            items.append(spec)
        return ("array", tuple(items))
    if node.strict or (node.query is not None and node.query.steps is None):
        return None
    steps = node.query.steps if node.query is not None and node.query.steps is not None else ()
    if any(isinstance(step, str) and ('"' in step or "\\" in step) for step in steps):
        return None
    if node.variable is None:
        return ("payload", steps)
    if node.variable in _COLUMN_VARIABLES:
        return None if steps else ("column", node.variable)
    if node.variable == "tags":
        return ("tags", steps)
    return ("metadata", node.variable, steps)


def generate(root: Node) -> Render:
    return _Generator().build(root)


def compile_constructor(text: str) -> Constructor:
    if not isinstance(text, str) or not text.strip():
        raise DefinitionInvalid("constructor is empty", code="invalid_constructor", field="constructor")
    parser = _Parser(text)
    root = parser.parse()
    return Constructor(text, generate(root), tuple(f for f in parser.fields if f.name), render_spec(root))
